"""A results cache bounded in entries and in bytes, least recently used first out, thread-safe."""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Hashable

import pandas as pd

import bnlr

MISSING = object()  # what ``get`` returns for a key it does not hold


def nbytes(value) -> int:
    """Returns the bytes ``value`` holds: a DataFrame's (deep), an Arrow table's or array's, bytes'
    and strings' length, summed through results, tuples, lists, dicts and dataclasses; 1 KB for
    anything else."""
    if isinstance(value, pd.DataFrame):
        return int(value.memory_usage(deep=True).sum())
    if isinstance(getattr(value, "nbytes", None), int):  # Arrow tables, NumPy arrays
        return value.nbytes
    if isinstance(value, (bytes, str)):
        return len(value)
    if isinstance(value, bnlr.Result):
        fields = ("history", "steps", "runs", "parameters")
        return sum(nbytes(getattr(value, f)) for f in fields if getattr(value, f) is not None)
    if isinstance(value, (tuple, list)):
        return sum(nbytes(v) for v in value)
    if isinstance(value, dict):
        return sum(nbytes(v) for v in value.values())
    if dataclasses.is_dataclass(value):  # e.g. bnlr.why.WhyReport: its tables
        return sum(nbytes(getattr(value, f.name)) for f in dataclasses.fields(value))
    return 1024


class ResultCache:
    """At most ``entries`` values and ``max_bytes`` bytes (``nbytes``); a value bigger than the
    whole bound is not kept.

    >>> cache = ResultCache(entries=2, max_bytes=10_000)
    >>> for k in "abc":
    ...     cache.put(k, k)
    >>> cache.get("a") is MISSING, cache.get("c")
    (True, 'c')
    """

    def __init__(self, entries: int, max_bytes: int):
        self.entries, self.max_bytes = entries, max_bytes
        self._lock = threading.RLock()
        self._items: OrderedDict[Hashable, tuple[object, int]] = OrderedDict()

    def get(self, key: Hashable):
        """Returns the value for ``key`` (now the most recently used), or ``MISSING``."""
        with self._lock:
            if key not in self._items:
                return MISSING
            self._items.move_to_end(key)
            return self._items[key][0]

    def put(self, key: Hashable, value) -> None:
        """Keeps ``value``, dropping the least recently used until both bounds hold."""
        size = nbytes(value)
        if size > self.max_bytes:
            return
        with self._lock:
            self._items[key] = (value, size)
            self._items.move_to_end(key)
            while len(self._items) > self.entries or self.bytes() > self.max_bytes:
                self._items.popitem(last=False)

    def drop(self, key: Hashable) -> None:
        """Forgets ``key`` (nothing if it is not kept)."""
        with self._lock:
            self._items.pop(key, None)

    def bytes(self) -> int:
        """Returns the bytes held now."""
        with self._lock:
            return sum(size for _, size in self._items.values())

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)
