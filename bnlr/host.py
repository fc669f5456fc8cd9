"""The CPUs this process may use: its affinity mask, capped by its cgroup's CPU quota.

``os.cpu_count()`` is the host's count. A container on a shared host (Streamlit Community Cloud
gives 0.078–2 cores of a big machine) is limited by ``sched_getaffinity`` and by a CFS quota:
cgroup v2's ``cpu.max`` ("200000 100000": 2 CPUs) or v1's ``cpu.cfs_quota_us`` /
``cpu.cfs_period_us``. Slots, Hessian threads and torch threads all size themselves from
``usable_cpus()``; ``BNLR_CPUS`` overrides it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class Cpus:
    """How many CPUs this process may keep busy, and where the number came from."""

    usable: int  # at least 1
    affinity: int  # CPUs in the affinity mask
    quota: float | None  # the cgroup's CPU quota in CPUs (None: no quota)
    cpu_count: int  # os.cpu_count(): the host's
    override: bool = False  # set by BNLR_CPUS

    def describe(self) -> str:
        """One line: ``1 (affinity 1, quota none, os.cpu_count 2)``."""
        quota = "none" if self.quota is None else f"{self.quota:g}"
        source = "BNLR_CPUS, " if self.override else ""
        return (
            f"{self.usable} ({source}affinity {self.affinity}, quota {quota}, "
            f"os.cpu_count {self.cpu_count})"
        )


def parse_cpu_max(text: str) -> float | None:
    """Returns cgroup v2's ``cpu.max`` ("quota period", or "max period") in CPUs.

    >>> parse_cpu_max("200000 100000"), parse_cpu_max("max 100000"), parse_cpu_max("7800 100000")
    (2.0, None, 0.078)
    """
    parts = text.split()
    if not parts or parts[0] == "max":
        return None
    period = float(parts[1]) if len(parts) > 1 else 100_000.0
    return float(parts[0]) / period


def parse_cfs(quota_us: str, period_us: str) -> float | None:
    """Returns cgroup v1's ``cfs_quota_us`` / ``cfs_period_us`` in CPUs (-1: no quota).

    >>> parse_cfs("-1", "100000"), parse_cfs("150000", "100000")
    (None, 1.5)
    """
    quota = int(quota_us.strip())
    return None if quota <= 0 else quota / int(period_us.strip())


def cgroup_quota(root: Path = CGROUP, proc_cgroup: str | None = None) -> float | None:
    """Returns the CPU quota of this process's cgroup (v2, else v1) in CPUs, or None.

    Reads the process's own cgroup (``/proc/self/cgroup``) and, for v2, every ancestor up to the
    root: the smallest quota on the path is the one that binds.
    """
    try:
        lines = proc_cgroup if proc_cgroup is not None else Path("/proc/self/cgroup").read_text()
    except OSError:
        lines = ""
    found: list[float] = []
    for line in lines.splitlines():
        _, controllers, path = [*line.split(":", 2), "", ""][:3]
        rel = path.strip().lstrip("/")
        if controllers == "":  # v2: 0::/path
            where = root / rel
            for d in (where, *where.parents):
                if d == root.parent:
                    break
                with _quiet():
                    q = parse_cpu_max((d / "cpu.max").read_text())
                    if q is not None:
                        found.append(q)
        elif "cpu" in controllers.split(","):  # v1: 4:cpu,cpuacct:/path
            for base in (root / controllers, root / "cpu,cpuacct", root / "cpu"):
                with _quiet():
                    d = base / rel
                    q = parse_cfs(
                        (d / "cpu.cfs_quota_us").read_text(), (d / "cpu.cfs_period_us").read_text()
                    )
                    if q is not None:
                        found.append(q)
                    break
    if not found:  # a namespaced container sees its own cgroup at the root
        with _quiet():
            q = parse_cpu_max((root / "cpu.max").read_text())
            if q is not None:
                found.append(q)
    return min(found) if found else None


class _quiet:
    """Skips a cgroup file that is missing or unreadable."""

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        return kind is not None and issubclass(kind, (OSError, ValueError, IndexError))


def usable_cpus() -> Cpus:
    """Returns the CPUs this process may use: min(affinity, ceil(quota)), at least 1."""
    count = os.cpu_count() or 1
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        affinity = count
    quota = cgroup_quota()
    usable = affinity if quota is None else min(affinity, max(1, math.ceil(quota - 1e-9)))
    override = os.environ.get("BNLR_CPUS", "").strip()
    if override:
        return Cpus(max(1, int(override)), affinity, quota, count, override=True)
    return Cpus(max(1, usable), affinity, quota, count)
