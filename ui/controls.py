"""Widgets shared by both LR pages: training controls (they retrain), display controls (they don't).

Every widget is bound to the URL (``bind="query-params"``, its key is the parameter name), so a
link reproduces what the sender saw. A bad value raises ``ValueError`` in ``bnlr``; it is shown
as one message under the control and the page keeps drawing its last good result
(``st.session_state``). Training goes through ``ui.runner.run`` (cached, capped).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import pandas as pd
import streamlit as st

import bnlr
from bnlr import article, codegen, cost, metrics
from bnlr.config import ACTIVATIONS, LR_MAX, LR_MIN
from bnlr.optimizers import RULES
from ui import figures, runner, urlcheck
from ui.page import on_demand
from ui.style import BN_LABEL

# The article's setup (bnlr.article): the default of every training control, by widget key.
ARTICLE = {
    "depths": list(article.DEPTHS),
    "width": article.WIDTH,
    "act": [article.ACTIVATION],
    "bn": list(article.BNS),
    "bn_mom": article.BN_MOMENTUM,
    "epochs": article.EPOCHS,
    "batch": article.BATCH_SIZE,
    "opt": article.OPTIMIZER,
    "mom": 0.0,
    "seeds": 1,
    "n": article.N,
    "noise": article.NOISE,
    "degree": article.DEGREE,
}
BAND_LABEL = {"spread": "mean ± sd (log)", "minmax": "min–max"}
FINAL_LABEL = {"last": "last", "mean_last_k": "mean last k", "best": "best"}
DISPLAY_KEYS = ("split", "logy", "band", "final", "k", "present")  # drawn after the training
FIRST_SEED = article.SEED  # more seeds are 930, 931, ...
BIND = {"bind": "query-params"}


def reset_button(defaults: dict) -> None:
    """Draws the 'reset to the article's setup' button: every control back to ``defaults``."""

    def reset():
        for key, value in defaults.items():
            st.session_state[key] = value

    st.button("↺ Reset to the article's setup", on_click=reset, use_container_width=True)


def _error(message: str) -> None:
    st.error(message, icon="⚠️")


def number(label: str, low, high, default, step=None, *, key: str, **kwargs):
    """A number input bound to the URL; a link's value it refuses gets a notice (ui.urlcheck)."""
    value = st.number_input(label, low, high, default, step, key=key, **BIND, **kwargs)
    urlcheck.number(key, value, low, high, isinstance(low, int) and isinstance(high, int))
    return value


def lr_list(default: str) -> tuple[float, ...] | None:
    """Returns the learning rates typed as a free list, or None after showing what is wrong."""
    text = st.text_input(
        "Learning rates",
        default,
        key="lrs",
        **BIND,
        help="A comma-separated list, e.g. 0.1, 0.03, 0.01, 0.005 (one chart panel each).",
    )
    try:
        return parse_lrs(text)
    except ValueError as e:
        _error(str(e))
        return None


def parse_lrs(text: str) -> tuple[float, ...]:
    """Returns the lrs in ``text`` ("0.1, 3e-2 …"), raising ValueError naming a bad entry.

    >>> parse_lrs("0.1, 3e-2")
    (0.1, 0.03)
    """
    parts = [p.strip() for p in text.replace(";", ",").split(",") if p.strip()]
    if not parts:
        raise ValueError(
            "the learning-rate list is empty; type at least one number > 0, e.g. 0.1, 0.01"
        )
    lrs = []
    for p in parts:
        try:
            lr = float(p)
        except ValueError:
            raise ValueError(
                f"learning rate {p!r} is not a number; type numbers > 0 separated by commas"
            ) from None
        if not LR_MIN <= lr <= LR_MAX:
            raise ValueError(
                f"learning rate {p} is out of range: type numbers from {LR_MIN:g} to {LR_MAX:g}"
            )
        lrs.append(lr)
    if len(set(lrs)) != len(lrs):
        raise ValueError(f"learning rate list {text!r} repeats a value; give each lr once")
    if len(lrs) > 12:
        raise ValueError(
            f"{len(lrs)} learning rates: at most 12 panels fit one page "
            "(use the LR learning curve page for a sweep)"
        )
    return tuple(lrs)


def lr_range(low: str, high: str, count: int) -> tuple[float, ...] | None:
    """Returns a log grid of lrs from three controls (low, high, count), or None (error shown)."""
    c1, c2 = st.columns(2)
    lo = c1.text_input("Lowest lr", low, key="lr_lo", **BIND)
    hi = c2.text_input("Highest lr", high, key="lr_hi", **BIND)
    n = number("Learning rates in the grid", 2, 64, count, key="lr_n")
    try:
        try:
            lo_f, hi_f = float(lo), float(hi)
        except ValueError:
            raise ValueError(
                f"lr range {lo!r} … {hi!r}: type two numbers, e.g. 1e-4 and 1"
            ) from None
        return bnlr.log_grid(lo_f, hi_f, int(n))
    except ValueError as e:
        _error(str(e))
        return None


def architecture(depths_default: list[int] | None = None) -> dict | None:
    """Draws the network controls; returns Grid kwargs, or None after showing what is missing.
    ``depths_default``: the page's own default depths (the article's otherwise)."""
    depths = st.multiselect(
        "Hidden layers (depth)",
        list(range(1, 9)),
        depths_default or ARTICLE["depths"],
        key="depths",
        **BIND,
    )
    urlcheck.choices("depths", depths, range(1, 9))
    width = number("Units per hidden layer", 1, 64, ARTICLE["width"], key="width")
    acts = st.multiselect("Activation", list(ACTIVATIONS), ARTICLE["act"], key="act", **BIND)
    urlcheck.choices("act", acts, ACTIVATIONS)
    bns = st.pills(
        "BatchNorm placement",
        list(BN_LABEL),
        selection_mode="multi",
        default=ARTICLE["bn"],
        format_func=BN_LABEL.get,
        key="bn",
        **BIND,
        help="pre = Linear → BN → activation; post = Linear → activation → BN",
    )
    urlcheck.choices("bn", [BN_LABEL[b] for b in bns or ()], BN_LABEL.values())
    mom = number("BN momentum", 0.0, 1.0, ARTICLE["bn_mom"], 0.05, key="bn_mom")
    missing = [
        name
        for name, v in (("a depth", depths), ("an activation", acts), ("a BN placement", bns))
        if not v
    ]
    if missing:
        _error("Pick at least " + " and ".join(missing) + ".")
        return None
    return {
        "depths": tuple(sorted(depths)),
        "width": int(width),
        "activations": tuple(acts),
        "bns": tuple(b for b in BN_LABEL if b in bns),
        "bn_momentum": float(mom),
    }


def training(seeds_default: int = 1) -> dict:
    """Draws the optimizer, epochs, batch, seeds and data controls; returns Grid kwargs."""
    epochs = number("Epochs", 1, 2000, ARTICLE["epochs"], key="epochs")
    batch = number("Batch size", 1, 20000, ARTICLE["batch"], key="batch")
    opt = st.selectbox(
        "Optimizer",
        list(RULES),
        0,
        key="opt",
        **BIND,
        format_func=lambda name: RULES[name].torch_class,
    )
    urlcheck.choice("opt", RULES[opt].torch_class, [r.torch_class for r in RULES.values()])
    mom = number("SGD momentum", 0.0, 0.99, ARTICLE["mom"], 0.1, key="mom", disabled=opt != "sgd")
    seeds = number(
        "Seeds (929, 930, …)",
        1,
        10,
        seeds_default,
        key="seeds",
        help="Each seed draws new initial weights and batch order; the band spans them.",
    )
    with st.expander("Data: y = (X ** degree) @ w + noise"):
        n = number("Samples (70 % train)", 20, 20000, ARTICLE["n"], 100, key="n")
        noise = number("Noise std", 0.0, 10.0, ARTICLE["noise"], 0.01, key="noise", format="%.3f")
        degree = number("Degree", 1, 6, ARTICLE["degree"], key="degree")
    return {
        "epochs": int(epochs),
        "batch_size": int(batch),
        "optimizer": bnlr.OptimizerConfig(opt, momentum=float(mom) if opt == "sgd" else 0.0),
        "seeds": tuple(range(FIRST_SEED, FIRST_SEED + int(seeds))),
        "data": bnlr.DataConfig(n=int(n), noise=float(noise), degree=int(degree)),
    }


def grid(*, factor: float = 1.0, **kwargs) -> bnlr.Grid | None:
    """Returns the controls' Grid, or None after showing bnlr's message (or the work cap's)."""
    if any(v is None for v in kwargs.values()):
        return None
    arch = kwargs.pop("arch")
    try:
        # before bnlr.Grid steps every schedule over the run
        runner.precheck(factor=factor, **arch, **kwargs)
        g = bnlr.Grid(**arch, **kwargs)
        runner.check_cost(g.experiment, factor=factor)
        return g
    except ValueError as e:
        _error(str(e))
        return None


def cost_note(
    g: bnlr.Grid | None,
    range_test_batches: int = 0,
    replication: bool = False,
    factor: float = 1.0,
    seconds: float | None = None,
) -> None:
    """States the per-request cost cap and this setting's estimate (``bnlr.cost``; ``seconds``
    when the page estimates its own)."""
    used = ""
    if g is not None:
        secs = (
            seconds
            if seconds is not None
            else runner.estimate(g.experiment, range_test_batches, factor)
        )
        used = f"this setting ≈ {secs:.1f} s"
        if replication:
            more = runner.replication_cost(g)
            fits = secs + more <= runner.COST_CAP_S
            used += f" + {more:.1f} s for the 20-seed replication" + ("" if fits else " (skipped)")
        used += " · "
    speed = (
        ""
        if cost.SPEED == 1.0
        else f" (this server measured at {cost.SPEED:.2f}× the costs' machine)"
    )
    st.caption(
        f"Cost cap per request: {used}limit {runner.COST_CAP_S:g} s of training, estimated on "
        f"this server{speed} before anything trains, and stopped if it runs past its time. At "
        f"most {runner.SLOTS} trainings run at once; others queue. So a public demo stays up."
    )


def last_good(page: str, g: bnlr.Grid | None, compute: Callable[[bnlr.Grid], object]):
    """Returns (grid, result) for ``g``, or the page's last good pair when ``g`` is invalid.

    A ValueError from ``compute`` is shown and also falls back. Stops the page when nothing
    valid ran yet in this session.
    """
    key = f"{page}:last_good"
    if g is not None:
        try:
            st.session_state[key] = (g, compute(g))
        except ValueError as e:
            _error(str(e))
            g = None
    if key not in st.session_state:
        st.info("Fix the setting marked in the sidebar to see the charts.")
        st.stop()
    if g is None:
        st.warning(
            "The settings in the sidebar are not valid: the charts below are from the last "
            "valid ones."
        )
    return st.session_state[key]


def display(finals: bool = False) -> dict:
    """Draws the display controls (they never retrain); returns split, log_y, band (+ final, k)."""
    # one row that wraps: each control as wide as its labels (fixed columns cut them, "Log lo…",
    # at a projector's 1280 px with presentation mode's larger text)
    row = st.container(horizontal=True, gap="medium", vertical_alignment="bottom")
    out = {
        "split": row.segmented_control(
            "Loss on", ["train", "test"], default="train", key="split", required=True, **BIND
        ),
        "log_y": row.toggle("Log loss axis", True, key="logy", **BIND),
        "band": row.segmented_control(
            "Band over seeds",
            ["spread", "minmax"],
            default="spread",
            key="band",
            required=True,
            format_func=BAND_LABEL.get,
            **BIND,
        ),
    }
    if finals:
        out["final"] = row.segmented_control(
            "Final loss",
            list(metrics.FINALS),
            default="last",
            key="final",
            required=True,
            **BIND,
            format_func=FINAL_LABEL.get,
        )
        out["k"] = row.number_input(
            "k",
            1,
            50,
            5,
            key="k",
            width=130,
            **BIND,
            help="epochs averaged by 'mean last k'",
            disabled=out["final"] != "mean_last_k",
        )
    urlcheck.choice("split", out["split"], ["train", "test"])
    urlcheck.flag("logy", out["log_y"])
    urlcheck.choice("band", BAND_LABEL[out["band"]], BAND_LABEL.values())
    if finals:
        urlcheck.choice("final", FINAL_LABEL[out["final"]], FINAL_LABEL.values())
        urlcheck.number("k", out["k"], 1, 50, True)
    urlcheck.finish()
    return out


def diverged_note(runs: pd.DataFrame) -> None:
    """Lists the runs that diverged (their curves stop there, marked ✕), or nothing."""
    note = figures.per(runs, _diverged_text)
    if note:
        st.caption(note)


def _diverged_text(runs: pd.DataFrame) -> str:
    bad = runs.dropna(subset=["diverged_epoch"])
    if not len(bad):
        return ""
    items = "; ".join(
        f"{arch}: lr {', '.join(f'{lr:.3g}' for lr in sorted(part['lr'].unique()))} "
        f"({len(part)} run{'s' * (len(part) > 1)}, "
        f"from epoch {int(part['diverged_epoch'].min())})"
        for arch, part in bad.groupby("arch", sort=False)
    )
    return (
        f"✕ Diverged (loss not finite; curves drawn up to there, left out of final loss): {items}."
    )


def download(df: pd.DataFrame, label: str, file_name: str) -> None:
    """A CSV download, written when clicked (deferred): a large table's CSV cost seconds on every
    run of the page (12.6 s of CPU for the playground at 10 seeds, measured), clicked or not."""
    st.download_button(
        f"⬇ {label} (CSV)", lambda: df.to_csv(index=False).encode(), file_name, "text/csv"
    )


_script = functools.lru_cache(maxsize=32)(codegen.script)  # (a page reruns with the same runs)


def code(experiment: bnlr.Experiment) -> None:
    """An expander with the plain PyTorch script that reproduces ``experiment`` (bnlr.codegen)."""
    box = on_demand("Plain PyTorch code for these runs", "code_open")
    if box is None:
        return
    with box:
        st.code(_script(experiment), language="python")
        st.caption(
            "Self-contained (torch only); prints run, epoch, train_loss, test_loss as CSV, "
            "the same numbers as bnlr's reference engine."
        )
