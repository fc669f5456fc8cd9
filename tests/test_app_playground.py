"""The scheduler playground page, driven through Streamlit's AppTest.

Every family renders; the lambda box takes ``0.5 ** epoch`` and turns away hostile input with a
message under it while the page keeps working; torch's rejections read as plain words; the
optimizer-state panel shows the article's 0.05 -> 0.025; and the lr trajectories the page draws
equal those of the same torch schedulers driven by hand on a bare optimizer.
"""

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
import streamlit as st
import torch
from streamlit.testing.v1 import AppTest
from torch.optim import lr_scheduler

import bnlr
from bnlr.families import FAMILIES
from ui import runner

PAGE = str(Path(__file__).resolve().parents[1] / "app_pages" / "scheduler_playground.py")
STEPS = 14  # batches per epoch: ceil(700 / 50)


def app(epochs: int = 3, **state) -> AppTest:
    """Returns the page after its first run, with a small setting (one depth, few epochs)."""
    st.cache_data.clear()
    runner.clear_cache()
    at = AppTest.from_file(PAGE, default_timeout=300)
    for key, value in {"epochs": epochs, "depths": [3], **state}.items():
        at.session_state[key] = value
    return at.run()


def charts(at: AppTest) -> list[tuple[dict, "pd.DataFrame"]]:  # noqa: F821
    """Returns (Vega-Lite spec, data) of every chart on the page."""
    out = []
    for el in at.get("vega_lite_chart"):
        spec = json.loads(el.proto.spec)
        data = pa.ipc.open_stream(el.proto.datasets[0].data.data).read_pandas()
        out.append((spec, data))
    return out


def chart(at: AppTest, field: str, per_batch: bool) -> "pd.DataFrame":  # noqa: F821
    for spec, data in charts(at):
        enc = spec.get("encoding", {})
        if (
            enc.get("y", {}).get("field") == field
            and (spec["mark"]["interpolate"] == "linear") == per_batch
        ):
            return data
    raise AssertionError(f"no {field} chart (per_batch={per_batch}) on the page")


def errors(at: AppTest) -> list[str]:
    """The page's errors, without the escapes that keep user input from rendering as Markdown."""
    return [e.value.replace("\\", "") for e in at.error]


def ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def bare_lrs(make, epochs: int, every: str = "epoch", steps: int = STEPS) -> list[float]:
    """The lr at every optimizer step of a torch scheduler on a bare SGD at lr 0.05, by hand."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.05)
    sched = make(opt)
    out = []
    for _ in range(epochs):
        for _ in range(steps):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            if every == "batch":
                sched.step()
        if every == "epoch":
            sched.step()
    return out


def test_each_family_renders_with_its_formula():
    at = app(epochs=8, nslots=1)
    ok(at)
    for family in FAMILIES:
        at.selectbox(key="s1").set_value(family).run()
        ok(at)
        assert any(FAMILIES[family].formula in el.value for el in at.latex), family
        assert len(charts(at)) >= 2, family  # lr per epoch and the loss panels
        if family != "constant":
            assert family in set(chart(at, "lr", per_batch=False)["schedule"].str.split(":").str[0])


HOSTILE = {
    "__import__('os')": "only calls to",
    "().__class__": "attribute access",
    "epoch.real": "attribute access",
    "9**9**9": "not finite",
    "[1]*10**9": "List is not allowed",
    "1" * 300: "at most 200",
    "1/0": "division by zero",
    "-1": "negative factor",
    "nan": "unknown name 'nan'",
    "epoch +": "syntax error at column",
    "lambda: 1": "Lambda is not allowed",
    "open('/etc/passwd')": "only calls to",
    "exp(1000 * epoch)": "not finite at epoch 1",
    "": "empty",
}


def test_lambda_box_accepts_a_factor_and_rejects_hostile_input():
    at = app()
    ok(at)
    box = at.text_input(key="s3_lambda")
    assert box.value == "0.5 ** epoch"
    n_charts = len(charts(at))
    for text, why in HOSTILE.items():
        at.text_input(key="s3_lambda").set_value(text).run()
        assert not at.exception, text
        messages = errors(at)
        assert len(messages) == 1 and why in messages[0], (text, messages)
        # the rest of the page still works: charts drawn, the column falls back to its last good
        # lambda
        assert len(charts(at)) == n_charts, text
        assert "lambda:0.5 ** epoch" in set(chart(at, "lr", per_batch=False)["schedule"]), text
    at.text_input(key="s3_lambda").set_value("1 / (1 + epoch)").run()
    ok(at)
    lrs = chart(at, "lr", per_batch=False)
    got = lrs[lrs["schedule"] == "lambda:1 / (1 + epoch)"].sort_values("epoch")["lr"].tolist()
    assert got == pytest.approx([0.05 / (1 + e) for e in range(3)], rel=1e-15)


@pytest.mark.parametrize(
    "family, key, value, why",
    [
        ("cyclic", "base_lr", 0.1, "CyclicLR needs base_lr ≤ max_lr"),
        ("cosine_restarts", "T_0", 0, "T_0=0 is out of range; must be ≥ 1"),
        ("warmup_cosine", "warmup", 8, "warmup=8 must be shorter than the run (8 epoch steps)"),
        ("onecycle", "pct_start", 1.5, "pct_start=1.5 is out of range"),
    ],
)
def test_torch_rejections_in_plain_words(family, key, value, why):
    at = app(epochs=8, nslots=1)
    at.selectbox(key="s1").set_value(family).run()
    ok(at)
    at.number_input(key=f"s1_{family}_{key}").set_value(value).run()
    assert not at.exception
    messages = errors(at)
    assert len(messages) == 1 and why in messages[0], messages
    assert "Traceback" not in messages[0]


def test_state_panel_shows_the_article_example():
    at = app()
    at.button(key="preset_lambda").click().run()
    ok(at)
    assert at.number_input(key="lr0").value == 0.05
    assert at.selectbox(key="state_sched").value == "lambda:0.5 ** epoch"
    assert not any(c.language == "python" for c in at.code)  # drawn once its expander is opened
    at.session_state["state_open"] = True
    at.run()
    table = at.dataframe[0].value.set_index("after scheduler.step() #")
    assert table.loc[0, "param_groups[0]['lr']"] == 0.05 and table.loc[0, "initial_lr"] == 0.05
    assert table.loc[1, "param_groups[0]['lr']"] == 0.025
    assert table.loc[2, "param_groups[0]['lr']"] == 0.0125
    before = at.code[0].value
    assert "'initial_lr': 0.05" in before and "'lr': 0.05" in before
    assert any("**0.025**" in md.value for md in at.markdown)


def test_lr_trajectories_equal_torch_schedulers_on_a_bare_optimizer():
    E = 12
    at = app(epochs=E)
    at.button(key="preset_cyclic").click().run()  # onecycle, cyclic triangular, cyclic triangular2
    ok(at)
    per_batch = chart(at, "lr", per_batch=True)
    want = {
        "onecycle": bare_lrs(
            lambda o: lr_scheduler.OneCycleLR(o, max_lr=0.05, total_steps=E * STEPS), E, "batch"
        ),
        "cyclic": bare_lrs(
            lambda o: lr_scheduler.CyclicLR(o, base_lr=0.005, max_lr=0.05, step_size_up=4 * STEPS),
            E,
            "batch",
        ),
        "cyclic:mode=triangular2": bare_lrs(
            lambda o: lr_scheduler.CyclicLR(
                o, base_lr=0.005, max_lr=0.05, step_size_up=4 * STEPS, mode="triangular2"
            ),
            E,
            "batch",
        ),
    }
    for spec, lrs in want.items():
        got = per_batch[per_batch["schedule"] == spec].sort_values("step")["lr"].tolist()
        assert got == lrs, spec
    # OneCycleLR cycles SGD's momentum from 0.95 down to 0.85 at the peak and back
    mom = chart(at, "momentum", per_batch=True)
    one = mom[mom["schedule"] == "onecycle"].sort_values("step")["momentum"]
    assert one.iloc[0] == pytest.approx(0.95) and one.min() == pytest.approx(0.85, abs=1e-3)

    at.button(key="preset_warmup_cosine").click().run()
    ok(at)
    per_epoch = chart(at, "lr", per_batch=False)
    want = {
        "warmup_cosine": bare_lrs(
            lambda o: lr_scheduler.SequentialLR(
                o,
                [
                    lr_scheduler.LinearLR(o, start_factor=1 / 3, total_iters=5),
                    lr_scheduler.CosineAnnealingLR(o, T_max=E - 5),
                ],
                milestones=[5],
            ),
            E,
        ),
        "cosine": bare_lrs(lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=E), E),
        "cosine_restarts:T_0=4,T_mult=2": bare_lrs(
            lambda o: lr_scheduler.CosineAnnealingWarmRestarts(o, T_0=4, T_mult=2), E
        ),
        "constant": [0.05] * (E * STEPS),
    }
    for spec, lrs in want.items():
        got = per_epoch[per_epoch["schedule"] == spec].sort_values("epoch")["lr"].tolist()
        assert got == lrs[::STEPS], spec


def test_plateau_lines_follow_each_runs_own_loss():
    E = 20
    at = app(epochs=E)
    at.button(key="preset_performance").click().run()
    ok(at)
    per_epoch = chart(at, "lr", per_batch=False)
    spec = next(
        s
        for s in per_epoch["schedule"].unique()
        if s.startswith("plateau")
        and "monitor" not in s
        and bnlr.parse_schedule(s).get("patience") == 2
    )
    assert bnlr.parse_schedule(spec).get("factor") == 0.5
    # the page's own runs (same grid, same order: the colour legend's), so the losses are the very
    # same
    order = next(
        sp for sp, _ in charts(at) if sp.get("encoding", {}).get("y", {}).get("field") == "lr"
    )
    schedules = tuple(order["encoding"]["color"]["scale"]["domain"])
    hist = bnlr.train(bnlr.Grid(depths=(3,), lrs=(0.05,), epochs=E, schedules=schedules)).history
    hist = hist[hist["schedule"] == spec]
    lines = per_epoch[per_epoch["schedule"] == spec]
    assert set(lines["arch"]) == set(hist["arch"])  # one line per model (BN and no BN)
    for arch, part in hist[hist["split"] == "train"].groupby("arch"):
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.05)
        sched = lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=2)
        want = []
        for loss in part.sort_values("epoch")["loss"]:
            want.append(opt.param_groups[0]["lr"])
            sched.step(loss)
        got = lines[lines["arch"] == arch].sort_values("epoch")["lr"].tolist()
        assert got == want, arch
    assert lines["lr"].min() < 0.05  # the scenario really lowers the lr


def test_the_code_on_the_page_gives_the_losses_on_the_page():
    at = app(epochs=3)
    ok(at)
    assert not any(c.value.startswith('"""Trains') for c in at.code)  # drawn once opened
    at.session_state["script_open"] = True
    at.run()
    script = next(c.value for c in at.code if c.value.startswith('"""Trains'))
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=300
    )
    rows = [line.split(",") for line in out.stdout.strip().splitlines()[1:]]
    # the page's runs: the default columns and the baseline, on the default models
    runs = bnlr.Grid(
        depths=(3,),
        lrs=(0.05,),
        epochs=3,
        schedules=("constant", "step:gamma=0.5", "onecycle", "lambda:0.5 ** epoch"),
    ).experiment.runs
    shown = next(d for s, d in charts(at) if "facet" in s).set_index(
        ["model", "schedule", "epoch"]
    )["loss"]
    model = at.selectbox(key="code_model").value
    assert {runs[int(r[0])].model.label for r in rows} == {model}
    assert len({r[0] for r in rows}) == 4 and len(rows) == 4 * 3
    for run, epoch, train, _ in rows:
        cfg = runs[int(run)]
        # the page trains float32 with the batched engine; the script is the reference loop
        assert float(train) == pytest.approx(
            shown[(cfg.model.label, cfg.schedule, int(epoch))], rel=1e-5
        )


def test_a_preset_lands_in_the_url_and_the_url_restores_it():
    at = app(epochs=8)
    at.button(key="preset_piecewise").click().run()
    ok(at)
    url = dict(at.query_params)
    assert url["s1_multistep_milestones"] == "20" and url["s3_multistep_milestones"] == "10|25"

    def schedules(page: AppTest) -> list[str]:
        return next(
            sp for sp, _ in charts(page) if sp.get("encoding", {}).get("y", {}).get("field") == "lr"
        )["encoding"]["color"]["scale"]["domain"]

    st.cache_data.clear()
    runner.clear_cache()
    fresh = AppTest.from_file(PAGE, default_timeout=300)
    for key, value in url.items():
        fresh.query_params[key] = value
    fresh.run()
    ok(fresh)
    assert (
        schedules(fresh)
        == schedules(at)
        == [
            "constant",
            "multistep:milestones=20,gamma=0.01",
            "step:gamma=0.5",
            "multistep:milestones=10|25,gamma=0.3",
        ]
    )
