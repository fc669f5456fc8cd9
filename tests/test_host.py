"""Usable CPUs (bnlr.host) from the affinity mask and the cgroup quota, on cgroup trees built
here; ``python -m bnlr info`` under taskset; the cost calibration's arithmetic."""

import os
import shutil
import subprocess
import sys

import pytest

from bnlr import cost, host


def test_cgroup_v2_cpu_max_is_read_as_cpus():
    assert host.parse_cpu_max("200000 100000") == 2.0
    assert host.parse_cpu_max("7800 100000") == pytest.approx(0.078)
    assert host.parse_cpu_max("max 100000") is None


def test_cgroup_v1_cfs_quota_is_read_as_cpus():
    assert host.parse_cfs("150000", "100000") == 1.5
    assert host.parse_cfs("-1", "100000") is None


def test_the_smallest_quota_on_a_v2_path_binds(tmp_path):
    (tmp_path / "app" / "worker").mkdir(parents=True)
    (tmp_path / "cpu.max").write_text("max 100000\n")
    (tmp_path / "app" / "cpu.max").write_text("50000 100000\n")  # the parent: half a CPU
    (tmp_path / "app" / "worker" / "cpu.max").write_text("200000 100000\n")
    assert host.cgroup_quota(tmp_path, "0::/app/worker\n") == 0.5


def test_a_v1_cpu_controller_quota_is_found(tmp_path):
    d = tmp_path / "cpu,cpuacct" / "docker" / "abc"
    d.mkdir(parents=True)
    (d / "cpu.cfs_quota_us").write_text("78000\n")
    (d / "cpu.cfs_period_us").write_text("100000\n")
    lines = "4:memory:/docker/abc\n2:cpu,cpuacct:/docker/abc\n"
    assert host.cgroup_quota(tmp_path, lines) == pytest.approx(0.78)


def test_no_quota_anywhere_is_none(tmp_path):
    assert host.cgroup_quota(tmp_path, "0::/\n") is None


def test_a_fractional_quota_still_gives_one_usable_cpu(monkeypatch):
    monkeypatch.delenv("BNLR_CPUS", raising=False)
    monkeypatch.setattr(host, "cgroup_quota", lambda: 0.078)
    cpus = host.usable_cpus()
    assert cpus.usable == 1 and cpus.quota == 0.078
    assert "quota 0.078" in cpus.describe()


def test_the_quota_caps_the_affinity(monkeypatch):
    monkeypatch.delenv("BNLR_CPUS", raising=False)
    monkeypatch.setattr(host, "cgroup_quota", lambda: 1.5)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)))
    assert host.usable_cpus().usable == 2  # 1.5 CPUs of quota keep two threads busy part-time


@pytest.mark.skipif(not shutil.which("taskset"), reason="taskset not installed")
def test_info_under_taskset_reports_one_cpu():
    out = subprocess.run(
        ["taskset", "-c", "0", sys.executable, "-m", "bnlr", "info"],
        capture_output=True,
        text=True,
        check=True,
        env={k: v for k, v in os.environ.items() if k != "BNLR_CPUS"},
    ).stdout
    lines = dict(line.split(": ", 1) for line in out.splitlines())
    assert lines["cpus"].startswith("1 (affinity 1,"), out
    for item in ("versions", "kernel path", "kernel cache", "calibration"):
        assert item in lines, out


def test_calibration_scales_every_estimate_by_the_measured_ratio(monkeypatch):
    import bnlr

    monkeypatch.setattr(cost, "SPEED", 1.0)
    experiment = bnlr.Grid(epochs=3).experiment
    before = cost.estimate(experiment, 20)
    found = cost.calibrate()
    try:
        assert found.speed == pytest.approx(
            min(max(found.measured_s / found.predicted_s, 0.5), 20.0)
        )
        assert cost.estimate(experiment, 20) == pytest.approx(found.speed * before)
    finally:
        monkeypatch.setattr(cost, "SPEED", 1.0)
