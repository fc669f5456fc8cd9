"""How many visitors' pages are built at once: the rest wait their turn, with their place shown.

A class opening one link at once starts thirty page scripts together. They share one Python
process (one interpreter lock), so running them all at once finishes none sooner; it only holds
thirty pages' tables and messages in memory together and makes the first visitor wait for the
last. ``ADMISSION`` lets ``LIMIT`` scripts build at a time, first come first served; the others
show "k visitors ahead of you" until their turn (navigation.py).

A page that waits for a training (``ui.runner.obtain``) steps aside while it waits (``aside``),
so visitors whose results are cached are not held up behind it; when its training is done it
takes the next free turn, ahead of visitors who have not had one yet.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Callable, Iterator

from bnlr import host

POLL_S = 0.2  # how often a waiting page redraws its place (and lets Streamlit stop it)
LIMIT = max(2, 2 * host.usable_cpus().usable)


class Admission:
    def __init__(self, limit: int = LIMIT):
        self.limit = limit
        self._cond = threading.Condition()
        self._building = 0  # scripts holding a turn, not aside
        self._waiting: deque = deque()  # tickets in arrival order
        self._returning = 0  # scripts back from aside, waiting to build again (they go first)
        self._mine = threading.local()  # whether this thread holds a turn

    @contextlib.contextmanager
    def turn(self, show: Callable[[int], None]) -> Iterator[None]:
        """Holds a turn for the block; until then calls ``show(ahead)`` every POLL_S (a
        Streamlit call, where a visitor who left is stopped)."""
        ticket = object()
        with self._cond:
            self._waiting.append(ticket)
        try:
            while True:
                with self._cond:
                    free = self._building < self.limit and not self._returning
                    if free and self._waiting[0] is ticket:
                        self._waiting.popleft()
                        self._building += 1
                        self._cond.notify_all()
                        break
                    ahead = self._waiting.index(ticket)
                show(ahead)  # outside the lock: it may raise (the visitor left)
                with self._cond:
                    self._cond.wait(POLL_S)
        except BaseException:
            with self._cond:
                if ticket in self._waiting:
                    self._waiting.remove(ticket)
                self._cond.notify_all()
            raise
        self._mine.holds = True
        try:
            yield
        finally:
            self._mine.holds = False
            with self._cond:
                self._building -= 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def aside(self) -> Iterator[None]:
        """For the block (a wait for a training), this thread's turn goes to the next visitor;
        afterwards it takes the next free turn, ahead of every visitor still waiting for one."""
        if not getattr(self._mine, "holds", False):  # no turn (or already aside): nothing to give
            yield
            return
        with self._cond:
            self._building -= 1
            self._cond.notify_all()
        self._mine.holds = False
        try:
            yield
        finally:
            self._mine.holds = True
            with self._cond:  # back ahead of every visitor still waiting for a first turn
                self._returning += 1
                while self._building >= self.limit:
                    self._cond.wait(POLL_S)
                self._returning -= 1
                self._building += 1

    def busy(self) -> bool:
        """True while a visitor's page is being built or waits for its turn (not while it
        waits aside for a training: the queue knows that one)."""
        with self._cond:
            return bool(self._building or self._waiting)

    def state(self) -> dict:
        with self._cond:
            return {"building": self._building, "waiting": len(self._waiting)}


ADMISSION = Admission()
