"""The fused kernel of the batched engine (bnlr/fused/) and the switch to its torch path.

The kernel's agreement with the reference engine (every BN placement, activation, optimizer and
schedule family, in float64 to 1e-9) is tested in tests/test_engines.py, which uses the kernel
wherever it applies; here: its elementwise functions, the torch path against the reference where
the kernel does not apply, the switch, the lanes that pad a group, and the layout round trip.
"""

import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

import bnlr
from bnlr import Experiment, ModelConfig, OptimizerConfig, RunConfig, batched, fused

pytestmark = pytest.mark.skipif(not fused.AVAILABLE, reason="llvmlite is not installed")


def ulps(got: np.ndarray, want: np.ndarray, dtype) -> float:
    """Largest error in units of the last place of the dtype."""
    spacing = np.spacing(np.abs(want).astype(dtype)).astype(np.float64)
    return float(np.max(np.abs(got.astype(np.float64) - want) / spacing))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tanh_and_sigmoid_are_accurate_to_a_few_ulp(dtype):
    x = np.concatenate([np.linspace(-30, 30, 200_001), np.geomspace(1e-30, 30, 20_001)])
    x = np.concatenate([x, -x]).astype(dtype)
    x64 = x.astype(np.float64)  # NumPy's float64 functions as the independent answer
    # float32 tanh is a rational function evaluated in float32: up to 5 ulp where tanh nears ±1
    # (relative error 3e-7), the price of half the instructions of the exp-based one; 6.1 ulp on
    # a CPU without FMA (``bash bench/as_cpu.sh baseline``: its multiply-adds round twice)
    tanh_ulps = 7 if dtype == np.float32 else 4
    t = fused.elementwise("tanh", x)
    assert ulps(t, np.tanh(x64), dtype) <= tanh_ulps
    assert np.abs(t).max() <= 1  # never beyond tanh's range, not even by an ulp
    assert ulps(fused.elementwise("sigmoid", x), 1 / (1 + np.exp(-x64)), dtype) <= 4


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tanh_and_sigmoid_keep_nan_and_saturate_at_infinity(dtype):
    x = np.array([np.nan, np.inf, -np.inf, 0.0, 1e4, -1e4], dtype=dtype)
    t, s = fused.elementwise("tanh", x), fused.elementwise("sigmoid", x)
    assert np.isnan(t[0]) and np.isnan(s[0])
    np.testing.assert_array_equal(t[1:], [1, -1, 0, 1, -1])
    np.testing.assert_array_equal(s[[1, 3, 4]], [1, 0.5, 1])
    assert 0 <= s[2] < 1e-30 and 0 <= s[5] < 1e-30


def history(exp: Experiment, kernel: str, monkeypatch) -> pd.DataFrame:
    monkeypatch.setenv("BNLR_KERNEL", kernel)
    return bnlr.train(exp, "batched").history


def relative(a: pd.DataFrame, b: pd.DataFrame) -> float:
    return float((np.abs(a["loss"] - b["loss"]) / np.abs(a["loss"])).max())


@pytest.mark.parametrize(
    "opt",
    [
        OptimizerConfig("sgd", momentum=0.9, nesterov=True, weight_decay=1e-3),
        OptimizerConfig("adamw"),
    ],
)
def test_the_torch_path_matches_the_reference_too(opt, monkeypatch):
    # The path every network takes where the kernel does not apply (BNLR_KERNEL=torch, no
    # llvmlite, or a network beyond fused.MAX_UNITS / MAX_PARAMETERS).
    runs = [
        RunConfig(ModelConfig((4, 3), act, bn), 0.002, seed=5, optimizer=opt, schedule="onecycle")
        for bn in ("none", "pre", "post")
        for act in ("tanh", "leaky_relu")
    ]
    exp = Experiment(tuple(runs), epochs=5, dtype="float64")
    ref = bnlr.train(exp, "reference").history
    calm = ~ref.run.isin(ref.run[ref.bn == "pre"]) if opt.name != "sgd" else slice(None)
    # (Adam turns the rounding noise of the bias before a "pre" BN into steps: see test_engines)
    assert relative(ref[calm], history(exp, "torch", monkeypatch)[calm]) <= 1e-9
    assert relative(ref[calm], history(exp, "fused", monkeypatch)[calm]) <= 1e-9


def test_a_network_beyond_the_kernel_takes_the_torch_path(monkeypatch):
    wide = ModelConfig((fused.MAX_UNITS + 1,), "tanh", "pre")
    assert not fused.supported(wide.widths, 5, wide.bn)
    assert fused.supported((4, 4, 4, 4), 5, "post")
    made = []
    real = fused.FusedGroup
    monkeypatch.setattr(fused, "FusedGroup", lambda *a, **k: made.append(1) or real(*a, **k))
    exp = Experiment((RunConfig(wide, 0.003),), epochs=3, dtype="float64")
    assert fused.path(wide, 5, "sgd", "float64") == "torch"
    fast = history(exp, "auto", monkeypatch)
    assert made == []
    assert relative(bnlr.train(exp, "reference").history, fast) <= 1e-9


def test_float32_is_computed_in_float32(monkeypatch):
    exp = Experiment(
        (RunConfig(ModelConfig((4,), "tanh", "pre"), 0.01),), epochs=3, dtype="float32"
    )
    made = []
    real = fused.FusedGroup
    monkeypatch.setattr(fused, "FusedGroup", lambda *a, **k: made.append(real(*a, **k)) or made[-1])
    a = history(exp, "fused", monkeypatch)
    assert made and made[0].params.dtype == np.float32 and made[0].running_stats.dtype == np.float32
    b = history(exp, "torch", monkeypatch)
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-4)


def test_the_switch_picks_the_path(monkeypatch):
    exp = Experiment((RunConfig(ModelConfig((3,)), 0.01),), epochs=1, dtype="float64")
    calls = []
    real = fused.FusedGroup
    monkeypatch.setattr(fused, "FusedGroup", lambda *a, **k: calls.append(1) or real(*a, **k))
    history(exp, "torch", monkeypatch)
    assert calls == []
    history(exp, "auto", monkeypatch)
    history(exp, "fused", monkeypatch)
    assert calls == [1, 1]
    monkeypatch.setenv("BNLR_KERNEL", "gpu")
    with pytest.raises(ValueError, match="BNLR_KERNEL"):
        bnlr.train(exp, "batched")


def test_without_llvmlite_the_torch_path_runs(monkeypatch):
    monkeypatch.setattr(fused.shape, "AVAILABLE", False)
    monkeypatch.setattr(fused, "FusedGroup", None)  # would fail if called
    monkeypatch.delenv("BNLR_KERNEL", raising=False)
    exp = Experiment((RunConfig(ModelConfig((3,)), 0.01),), epochs=2, dtype="float64")
    assert len(bnlr.train(exp, "batched").history) == 4
    monkeypatch.setenv("BNLR_KERNEL", "fused")
    with pytest.raises(RuntimeError, match="llvmlite"):
        bnlr.train(exp, "batched")


def test_a_run_is_the_same_bits_in_any_lane(monkeypatch):
    # Lanes are padded to a multiple of fused.LANES; a run's numbers must not depend on its
    # lane, on the group's size, or on a diverging run beside it.
    model = ModelConfig((4, 4), "tanh", "pre")
    lanes = fused.LANES["float32"]
    wild = RunConfig(model, 10.0, seed=3)  # (the largest lr accepted: it diverges)
    calm = [RunConfig(model, lr, seed=s) for s in (1, 2) for lr in (0.01, 0.003)]
    many = [wild] + [RunConfig(model, 0.001 * k, seed=9) for k in range(1, 2 * lanes)]
    alone = history(Experiment(tuple(calm), epochs=6), "fused", monkeypatch)
    crowd = history(Experiment(tuple(many[:7] + calm + many[7:]), epochs=6), "fused", monkeypatch)
    for i in range(len(calm)):
        np.testing.assert_array_equal(
            crowd[crowd.run == 7 + i].loss.to_numpy(), alone[alone.run == i].loss.to_numpy()
        )
    assert crowd[crowd.run == 0].diverged.any()


def test_group_state_layout_round_trips():
    runs = tuple(RunConfig(ModelConfig((4, 3), "tanh", "post"), 0.01, seed=s) for s in (1, 2, 3))
    exp = Experiment(runs, epochs=1, dtype="float64")
    data = bnlr.data.make_data(exp.data, torch.float64)
    g = batched._Group(exp, list(exp.runs), data)
    shape = fused.shape_of(g.model, 5, g.opt_cfg, "float64", momentum=False)
    k = fused.FusedGroup(
        fused.kernel(shape),
        shape,
        params=g._blocks(g.theta),
        running_mean=g.running_mean,
        running_var=g.running_var,
        data=data,
        orders=g.orders,
        order_of=g.order_of,
        optimizer=g.opt_cfg,
        bn_momentum=g.model.bn_momentum,
        batch_size=exp.batch_size,
    )
    L = fused.LANES["float64"]
    lanes = k.params.reshape(k.nblk, -1, L)  # (block, row, lane)
    assert k.nblk == 1 and lanes.shape[1] == k.shape.n_params
    layers = g.theta_views[0]
    for l, wb in enumerate(layers):  # lane r of Linear l's rows is run r's [W | b], row-major
        first = k.shape.w(l, 0, 0)
        n = wb.shape[1] * wb.shape[2]
        np.testing.assert_array_equal(lanes[0, first : first + n, :3].T, wb.reshape(3, -1).numpy())
    assert (lanes[0, :, 3:] == 0).all()  # idle lanes
    before = g.theta.clone()
    k.write_back()
    torch.testing.assert_close(g.theta, before, rtol=0, atol=0)


def test_in_the_background_a_new_shape_takes_the_torch_path_until_compiled(monkeypatch):
    # The app's policy: no request waits for a compile; the kernel is ready for the next one.
    # (A kernel in the on-disk cache is loaded at once: see
    # test_in_the_background_a_cached_kernel_is_used_at_once.)
    compiler = fused.Compiler(background=True, max_pending=1)  # as a new process's
    monkeypatch.setattr(fused, "COMPILER", compiler)
    monkeypatch.delenv("BNLR_KERNEL", raising=False)
    monkeypatch.setenv("BNLR_KERNEL_CACHE", "off")  # as a process whose cache is empty
    model = ModelConfig((3, 2), "sigmoid", "post")
    exp = Experiment((RunConfig(model, 0.01),), epochs=2, dtype="float64")
    made = []
    real = fused.FusedGroup
    monkeypatch.setattr(fused, "FusedGroup", lambda *a, **k: made.append(1) or real(*a, **k))
    assert fused.path(model, 5, "sgd", "float64") == "torch"
    first = bnlr.train(exp, "batched").history
    assert made == []  # the torch path, while the kernel compiles
    other = Experiment((RunConfig(replace(model, activation="relu"), 0.01),), epochs=1)
    bnlr.train(other, "batched")  # a second new shape while one waits: not queued (max_pending)
    assert fused.wait_for_compiles()
    assert fused.path(model, 5, "sgd", "float64") == "fused"
    assert fused.path(other.runs[0].model, 5, "sgd", "float32") == "torch"
    second = bnlr.train(exp, "batched").history
    assert made == [1]
    assert relative(first, second) <= 1e-12


TRAIN_AND_PRINT = """
import sys, subprocess
import bnlr
from bnlr import Experiment, ModelConfig, RunConfig, fused
if sys.argv[1] == "no-compiler":  # a compile would fail: the kernel must come from the cache
    fused.llc.emit = subprocess.run = None
exp = Experiment((RunConfig(ModelConfig((3, 2), "tanh", "pre"), 0.05),), epochs=3)
print(fused.path(exp.runs[0].model, 5, "sgd", "float32"))
print(bnlr.train(exp, "batched").history["loss"].tolist())
print(sorted(fused.jit._loaded))
"""


def run_in_new_process(mode: str, cache) -> list[str]:
    env = {**os.environ, "BNLR_KERNEL_CACHE": str(cache), "BNLR_KERNEL": "fused"}
    done = subprocess.run(
        [sys.executable, "-c", TRAIN_AND_PRINT, mode],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.splitlines()


def test_a_kernel_compiled_in_one_process_is_loaded_by_the_next_from_the_cache(tmp_path):
    first = run_in_new_process("compile", tmp_path)
    files = list(tmp_path.glob("*.o"))
    assert first[0] == "compile" and len(files) == 1
    second = run_in_new_process("no-compiler", tmp_path)  # emit and subprocess.run are gone
    assert second[0] == "compile" and second[1:] == first[1:]  # the same losses, bit for bit
    assert list(tmp_path.glob("*.o")) == files


def test_the_kernel_cache_can_be_switched_off_and_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setenv("BNLR_KERNEL_CACHE", "off")
    assert fused.cache_dir() is None
    monkeypatch.setenv("BNLR_KERNEL_CACHE", str(tmp_path))
    assert fused.cache_dir() == str(tmp_path)
    for k in range(5):
        (tmp_path / f"{k}.o").write_bytes(b"x")
        os.utime(tmp_path / f"{k}.o", (k, k))
    monkeypatch.setattr(fused.jit, "CACHE_FILES", 3)
    fused.jit.prune(str(tmp_path))
    assert sorted(p.name for p in tmp_path.glob("*.o")) == ["2.o", "3.o", "4.o"]  # the newest


def test_in_the_background_a_cached_kernel_is_used_at_once(monkeypatch, tmp_path):
    monkeypatch.setenv("BNLR_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setenv("BNLR_KERNEL", "fused")
    model = ModelConfig((2, 3), "tanh", "post")
    exp = Experiment((RunConfig(model, 0.01),), epochs=1)
    bnlr.train(exp, "batched")  # compiled (not in the background): now in the cache
    # as a new process whose background compiler never runs
    compiler = fused.Compiler(background=True, idle=lambda: False)
    monkeypatch.setattr(fused, "COMPILER", compiler)
    assert fused.path(model, 5, "sgd", "float32") == "fused"
    made = []
    real = fused.FusedGroup
    monkeypatch.setattr(fused, "FusedGroup", lambda *a, **k: made.append(1) or real(*a, **k))
    bnlr.train(exp, "batched")
    assert made == [1] and not compiler.pending


VECTOR_ADD = """define void @"add"(<8 x double>* %a, <8 x double>* %b) {
  %x = load <8 x double>, <8 x double>* %a
  %y = load <8 x double>, <8 x double>* %b
  %s = fadd <8 x double> %x, %y
  store <8 x double> %s, <8 x double>* %a
  ret void
}
"""


def test_the_compiler_process_compiles_for_the_cpu_its_parent_names(monkeypatch, tmp_path):
    # An emulator (qemu-user) runs the parent on another CPU than the child compiler process
    # sees: the child must compile for the parent's CPU, the one the cache key names.
    monkeypatch.setenv("BNLR_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setattr(fused.llc, "target", lambda: ("x86-64", ""))  # an SSE2-only parent
    got = fused.jit._object_code(lambda: VECTOR_ADD, "sse2-parent")
    assert got == fused.llc.emit(VECTOR_ADD, "x86-64", "")
    assert got != fused.llc.emit(VECTOR_ADD, "skylake-avx512", "")  # the target mattered
