"""The training queue (ui.jobs) and the results cache (ui.cache) as plain objects: built here,
no Streamlit, no module globals patched. Waits are bounded loops on state, not timings."""

import threading
import time

import pandas as pd

import bnlr
from ui.cache import MISSING, ResultCache, nbytes
from ui.jobs import JobQueue


def until(condition, tries: int = 3000) -> None:
    """Waits (bounded) until condition() holds; fails the test if it never does."""
    for _ in range(tries):
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError("condition never held")


def test_a_full_queue_reports_each_jobs_place():
    queue, release = JobQueue(slots=1), threading.Event()
    blocker = queue.enqueue("blocker", lambda cancel, progress: release.wait(60), "Blocker")
    second = queue.enqueue("second", lambda cancel, progress: 2, "Second")
    third = queue.enqueue("third", lambda cancel, progress: 3, "Third")
    assert queue.state() == {"running": ["Blocker"], "queued": ["Second", "Third"]}
    assert (queue.ahead(blocker), queue.ahead(second), queue.ahead(third)) == (0, 1, 2)
    release.set()
    until(lambda: third.done.is_set())
    assert (second.value, third.value) == (2, 3)
    assert queue.state() == {"running": [], "queued": []}


def test_sessions_asking_for_the_same_key_share_one_job():
    queue, release, calls = JobQueue(slots=2), threading.Event(), []
    first = queue.enqueue("k", lambda cancel, progress: calls.append(1) or release.wait(60))
    again = queue.enqueue("k", lambda cancel, progress: calls.append(2))
    assert first is again and first.waiters == 2
    release.set()
    until(first.done.is_set)
    assert calls == [1]


def test_a_job_nobody_waits_for_is_dropped_from_the_queue():
    queue, release, ran = JobQueue(slots=1), threading.Event(), []
    blocker = queue.enqueue("blocker", lambda cancel, progress: release.wait(60))
    queued = queue.enqueue("queued", lambda cancel, progress: ran.append(1))
    queue.leave(queued)  # its visitor left before it started
    release.set()
    queue.leave(blocker)
    until(lambda: blocker.done.is_set() and queued.done.is_set())
    assert ran == [] and isinstance(queued.error, bnlr.Cancelled)


def test_heavy_requests_leave_a_slot_for_light_ones():
    queue, release = JobQueue(slots=2, heavy_s=1.0), threading.Event()

    def wait(cancel, progress):
        release.wait(60)

    heavy = [queue.enqueue(("heavy", k), wait, f"heavy {k}", seconds=4.0) for k in range(3)]
    light = queue.enqueue("light", lambda cancel, progress: "drawn", "light", seconds=0.5)
    until(light.done.is_set)  # it took the free slot although three heavy ones came first
    assert light.value == "drawn"
    assert queue.state() == {"running": ["heavy 0"], "queued": ["heavy 1", "heavy 2"]}
    release.set()
    until(lambda: all(j.done.is_set() for j in heavy))


def test_on_one_cpu_a_light_request_still_runs_beside_a_heavy_one():
    from ui import runner

    queue, release = JobQueue(slots=runner.training_slots(1), heavy_s=1.0), threading.Event()
    heavy = queue.enqueue("heavy", lambda cancel, progress: release.wait(60), seconds=4.0)
    light = queue.enqueue("light", lambda cancel, progress: "drawn", seconds=0.5)
    until(light.done.is_set)
    assert light.value == "drawn" and not heavy.done.is_set()
    release.set()
    until(heavy.done.is_set)


def test_one_slot_still_runs_a_heavy_job():
    queue = JobQueue(slots=1)
    job = queue.enqueue("heavy", lambda cancel, progress: "ran", seconds=100.0)
    until(job.done.is_set)
    assert job.value == "ran"


def _epochs(steps: list, count: int = 10_000):
    """A job that trains ``count`` epochs, polling cancel() between them as bnlr.train does."""

    def job(cancel, progress):
        for epoch in range(count):
            if cancel():
                raise bnlr.Cancelled()
            steps.append(epoch)
            time.sleep(0.002)
        return "done"

    return job


def test_a_job_is_cancelled_once_its_last_session_leaves():
    queue, steps = JobQueue(slots=1, grace_s=0.0), []
    job = queue.enqueue("k", _epochs(steps))
    until(lambda: len(steps) >= 3)
    queue.leave(job)
    until(job.done.is_set)
    assert isinstance(job.error, bnlr.Cancelled) and len(steps) < 10_000
    assert not job.overran


def test_a_job_another_session_waits_for_runs_to_the_end():
    queue, steps = JobQueue(slots=1, grace_s=0.0), []
    shared = queue.enqueue("shared", _epochs(steps, 30), waiters=2)
    queue.leave(shared)  # one of the two sessions leaves
    until(shared.done.is_set)
    queue.leave(shared)
    assert shared.value == "done" and len(steps) == 30


def test_a_job_past_its_wall_budget_stops_at_its_next_epoch():
    queue, steps = JobQueue(slots=1, budget=lambda job: (60.0, 0.05)), []
    job = queue.enqueue("k", _epochs(steps))
    until(job.done.is_set)
    assert isinstance(job.error, bnlr.Cancelled) and job.overran
    assert 0 < len(steps) < 10_000


def test_a_job_past_its_cpu_budget_stops_at_its_next_epoch():
    def spin(cancel, progress):  # busy work: CPU time of this thread, polled per "epoch"
        for _ in range(100_000):
            if cancel():
                raise bnlr.Cancelled()
            sum(range(20_000))
        return "never stopped"

    queue = JobQueue(slots=1, budget=lambda job: (0.05, 600.0))
    job = queue.enqueue("k", spin)
    until(job.done.is_set)
    assert isinstance(job.error, bnlr.Cancelled) and job.overran


def test_sleeping_is_not_cpu_time():
    queue, steps = JobQueue(slots=1, budget=lambda job: (0.5, 600.0)), []
    job = queue.enqueue("k", _epochs(steps, 100))  # 100 × 2 ms asleep: little CPU
    until(job.done.is_set)
    assert job.value == "done" and not job.overran


def test_a_finished_job_is_stored_and_after_runs():
    stored, after = {}, []
    queue = JobQueue(slots=1, store=stored.__setitem__, after=lambda: after.append(1))
    job = queue.enqueue("k", lambda cancel, progress: 7)
    until(lambda: after)
    assert stored == {"k": 7} and job.value == 7
    failed = queue.enqueue("bad", lambda cancel, progress: 1 / 0)
    until(lambda: len(after) == 2)
    assert isinstance(failed.error, ZeroDivisionError) and "bad" not in stored


def test_the_cache_is_bounded_in_bytes():
    frame = pd.DataFrame({"x": range(125_000)})  # 1 MB
    size = nbytes(frame)
    cache = ResultCache(entries=24, max_bytes=3_000_000)
    for k in range(5):
        cache.put(("bytes", k), frame.copy())
    assert cache.bytes() == (3_000_000 // size) * size  # the newest that fit, no more
    assert cache.get(("bytes", 4)) is not MISSING and cache.get(("bytes", 0)) is MISSING


def test_the_cache_is_bounded_in_entries_and_keeps_the_most_recently_used():
    cache = ResultCache(entries=2, max_bytes=10**9)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # now the most recently used
    cache.put("c", 3)
    assert cache.get("b") is MISSING and cache.get("a") == 1 and len(cache) == 2


def test_a_value_bigger_than_the_cache_is_not_kept():
    cache = ResultCache(entries=2, max_bytes=100)
    cache.put("big", pd.DataFrame({"x": range(1000)}))
    assert cache.get("big") is MISSING and cache.bytes() == 0


def test_a_background_job_takes_no_slot_and_pauses_while_a_visitors_job_runs():
    queue, steps, release = JobQueue(slots=1), [], threading.Event()
    warm = queue.enqueue("warm", _epochs(steps, 200), "Warm-up", waiters=0, background=True)
    until(lambda: len(steps) >= 3)
    visitor = queue.enqueue("visit", lambda cancel, progress: release.wait(60) and "page")
    until(lambda: visitor.started)  # the one slot was free: the background job holds none
    paused_at = len(steps)
    time.sleep(0.1)
    assert len(steps) <= paused_at + 1  # the epoch under way, and no more while the page runs
    release.set()
    until(warm.done.is_set)
    assert warm.value == "done" and len(steps) == 200 and visitor.value == "page"


def test_a_background_job_pauses_while_a_visitors_page_is_built():
    queue, steps, building = JobQueue(slots=1), [], threading.Event()
    queue.pages = building.is_set  # (the server: ui.admission's ADMISSION.busy)
    warm = queue.enqueue("warm", _epochs(steps, 200), "Warm-up", waiters=0, background=True)
    until(lambda: len(steps) >= 3)
    building.set()
    paused_at = len(steps)
    time.sleep(0.1)
    assert len(steps) <= paused_at + 1  # the epoch under way, and no more while it builds
    building.clear()
    until(warm.done.is_set)
    assert warm.value == "done" and len(steps) == 200


def test_a_background_job_is_shared_with_a_visitor_and_not_cancelled_when_they_leave():
    queue, steps = JobQueue(slots=1, grace_s=0.0), []
    warm = queue.enqueue("claims", _epochs(steps, 100), waiters=0, background=True)
    again = queue.enqueue("claims", lambda cancel, progress: "another training")
    assert again is warm and warm.waiters == 1
    queue.leave(again)  # the visitor left
    until(warm.done.is_set)
    assert warm.value == "done" and len(steps) == 100
