"""The training queue: at most ``slots`` jobs at once, first come first served, shared and
cancelled when nobody waits. Plain threads, no Streamlit: ``ui.runner`` draws the waiting.

- **Slots.** Each job runs in a worker thread; later ones wait in a first-come queue. A heavy job
  (estimated over ``heavy_s``) takes at most ``slots − 1`` slots, so a light request (a default
  page) never waits behind a row of heavy links: it takes the slot left free.
- **Shared.** Sessions asking for the same key wait for the same job (``waiters`` counts them).
- **Cancelled when nobody waits.** A session that stops waiting calls ``leave``; with no waiter
  left for ``grace_s`` (so that a rerun of the same settings attaches again) the job's
  ``cancelled()`` turns True, which ``bnlr.train`` polls between epochs. A queued job nobody waits
  for never starts.
- **Bounded by the clock.** A capped job may run for ``budget(job)`` = (CPU seconds of its own
  thread, wall seconds): past either, ``cancelled()`` turns True as well and ``Job.overran``
  says why. CPU time is the work done whatever the load (the cost cap's own unit, so a test on a
  busy machine is not cut short); the wall clock is the backstop.
- **Background jobs** (the server's warm-up) take no slot and are never cancelled; their
  ``cancelled()`` instead waits while any other job runs or waits, so they never go ahead of a
  visitor's, and their thread runs at a lower OS priority.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

import bnlr

BACKGROUND_NICE = 10  # the OS priority of a background job's thread (0 is the default, 19 lowest)


@dataclass(eq=False)
class Job:
    """One training: who waits for it, where it is, and how it ended."""

    key: Hashable
    fn: Callable  # fn(cancel, progress) -> value
    label: str
    queue: JobQueue
    heavy: bool = False
    seconds: float = 0.0  # its estimated cost
    capped: bool = True  # the queue's budget applies (a fixed request, e.g. Home's, is not)
    background: bool = False  # no slot, never cancelled, pauses while other jobs run or wait
    began: float = 0.0  # the time.monotonic() it started
    deadline: float = float("inf")  # ... and the one it must end by
    cpu_budget: float = float("inf")  # CPU seconds its thread may use
    thread: int = 0  # its thread's ident, and that thread's CPU time when it started
    cpu_began: float = 0.0
    waiters: int = 0
    left_at: float = 0.0
    started: bool = False
    overran: bool = False  # stopped at its deadline
    progress: tuple[int, int] = (0, 1)
    value: object = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def cancelled(self) -> bool:
        """True once no session has waited for this job for ``grace_s``, or past its deadline
        (polled between epochs)."""
        if self.background:
            self.queue.wait_while_busy()
            return False
        now = time.monotonic()
        own = threading.get_ident() == self.thread  # (polled from the job's own thread)
        if now > self.deadline or (own and time.thread_time() - self.cpu_began > self.cpu_budget):
            self.overran = True
            return True
        with self.queue.lock:
            return self.waiters == 0 and now - self.left_at >= self.queue.grace_s

    def report(self, done: int, total: int) -> None:
        self.progress = (done, total)


class JobQueue:
    """Jobs by key: queued, running, and what happens when one ends.

    ``store(key, value)`` is called, holding ``lock``, when a job succeeds (the result cache);
    ``after()`` once a job has ended, outside the lock (e.g. to give memory back).
    ``budget(job)`` returns the (CPU, wall) seconds a starting capped job may run (None: no
    bound).

    >>> q = JobQueue(slots=1)
    >>> job = q.enqueue("k", lambda cancel, progress: 42)
    >>> job.done.wait(5) and job.value
    42
    """

    def __init__(
        self,
        slots: int,
        heavy_s: float = 1.0,
        grace_s: float = 0.5,
        store: Callable[[Hashable, object], None] | None = None,
        after: Callable[[], None] | None = None,
        budget: Callable[[Job], tuple[float, float] | None] | None = None,
    ):
        if slots < 1:
            raise ValueError(f"slots must be at least 1, got {slots}")
        self.slots, self.heavy_s, self.grace_s = slots, heavy_s, grace_s
        self.store, self.after, self.budget = store, after, budget
        self.lock = threading.RLock()
        self.jobs: dict[Hashable, Job] = {}  # not finished: queued or running
        self.queued: list[Job] = []  # first come, first served
        self.running: list[Job] = []
        self.background: list[Job] = []  # running in the background (no slot)
        self.last_end = 0.0  # when the last job ended (time.monotonic)

    def enqueue(
        self,
        key: Hashable,
        fn: Callable,
        label: str = "Training",
        waiters: int = 1,
        seconds: float = 0.0,
        capped: bool = True,
        background: bool = False,
    ) -> Job:
        """Returns the job for ``key`` with ``waiters`` more sessions waiting for it: the one
        already queued or running, or a new one at the end of the queue. ``fn(cancel,
        progress)`` runs in a worker thread. ``seconds``: its estimated cost (above heavy_s it
        is heavy); ``capped``: the queue's budget applies to it; ``background``: see the
        module's docstring (``waiters`` may then be 0)."""
        with self.lock:
            job = self.jobs.get(key)
            if job is None:
                heavy = seconds > self.heavy_s
                job = Job(key, fn, label, self, heavy=heavy, seconds=seconds, capped=capped)
                self.jobs[key] = job
                if background:
                    job.background = job.started = True
                    job.began = time.monotonic()
                    self.background.append(job)
                    self._start(job)
                else:
                    self.queued.append(job)
            job.waiters += waiters
            self._dispatch()
            return job

    def leave(self, job: Job) -> None:
        """One session stops waiting for ``job``."""
        with self.lock:
            job.waiters -= 1
            if job.waiters == 0:
                job.left_at = time.monotonic()
            self._dispatch()

    def ahead(self, job: Job) -> int:
        """Returns the jobs ahead of a queued one: the running ones and those queued before it."""
        with self.lock:
            return len(self.running) + self.queued.index(job) if job in self.queued else 0

    def state(self) -> dict:
        """Returns what runs and waits now: {"running": [labels], "queued": [labels]}."""
        with self.lock:
            return {
                "running": [j.label for j in self.running],
                "queued": [j.label for j in self.queued],
            }

    def busy(self) -> bool:
        """True while a job (not a background one) runs or waits, or ``pages()`` says a
        visitor's page is being built (the server sets it: ``ui.admission``)."""
        with self.lock:
            if self.running or self.queued:
                return True
        return self.pages()

    def pages(self) -> bool:
        """Whether a visitor's page is being built: none, unless the server says otherwise."""
        return False

    def wait_while_busy(self, poll_s: float = 0.05) -> None:
        """Returns once no job (but background ones) runs or waits."""
        while self.busy():
            time.sleep(poll_s)

    def idle(self, quiet_s: float) -> bool:
        """True when nothing runs or waits, and nothing ended in the last ``quiet_s``."""
        with self.lock:
            busy = self.running or self.queued
            return not busy and time.monotonic() - self.last_end > quiet_s

    def _dispatch(self) -> None:
        """Starts queued jobs, first come first served, while a slot is free (holding lock)."""
        for job in list(self.queued):
            if len(self.running) >= self.slots:
                return
            if job.waiters == 0:  # everybody left while it was queued: it never starts
                self.queued.remove(job)
                self.jobs.pop(job.key, None)
                job.error = bnlr.Cancelled()
                job.done.set()
                continue
            if job.heavy and sum(j.heavy for j in self.running) >= max(1, self.slots - 1):
                continue
            self.queued.remove(job)
            job.started, job.began = True, time.monotonic()
            bound = self.budget(job) if self.budget is not None and job.capped else None
            if bound is not None:
                job.cpu_budget, job.deadline = bound[0], time.monotonic() + bound[1]
            self.running.append(job)
            self._start(job)

    def _start(self, job: Job) -> None:
        threading.Thread(target=self._work, args=(job,), name="bnlr-job", daemon=True).start()

    def _work(self, job: Job) -> None:
        job.thread, job.cpu_began = threading.get_ident(), time.thread_time()
        if job.background:
            with contextlib.suppress(AttributeError, OSError):  # Linux: this thread only
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICE)
        value, error = None, None
        try:
            value = job.fn(job.cancelled, job.report)
        except BaseException as e:  # handed to the sessions waiting for it
            error = e
        with self.lock:
            (self.background if job.background else self.running).remove(job)
            self.last_end = time.monotonic()
            self.jobs.pop(job.key, None)
            if error is None and self.store is not None:
                self.store(job.key, value)
            job.value, job.error = value, error
            job.done.set()
            self._dispatch()
        if self.after is not None:
            self.after()
