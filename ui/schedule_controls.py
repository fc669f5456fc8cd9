"""Controls of the scheduler playground: one column per schedule, each family's keys as widgets.

Every key of a family in ``bnlr.families.FAMILIES`` becomes a widget named as torch names it, with
torch's default and its line of help; titles, formulas and choices come from there too. The widgets'
values become a schedule spec string (``step:step_size=10,gamma=0.5``), checked by ``bnlr`` itself:
a bad value or a combination torch rejects is shown under the column in plain words, and the column
keeps its last good schedule. Every widget is bound to the URL. Presets fill the columns with the
article's families.
"""

from __future__ import annotations

import contextlib
import math
import re

import streamlit as st
from streamlit.errors import StreamlitAPIException

import bnlr
from bnlr.families import FAMILIES, Key
from bnlr.safe_expr import ACCEPTED
from bnlr.schedules import check_schedule, parse_schedule
from ui import urlcheck

BIND = {"bind": "query-params"}
MAX_SLOTS = 4
SHOWN = 4  # arguments shown in a column (the registry's first ones); the rest fold away

DEFAULT_SLOTS = ("step:step_size=10,gamma=0.5", "onecycle", "lambda:0.5 ** epoch")

# name: (button label, specs of the columns, initial lr or None to keep it)
PRESETS = {
    "power": ("Power", ("power:s=1,c=1", "power:s=10,c=1", "power:s=10,c=2"), None),
    "exponential": (
        "Exponential",
        ("exponential:s=10", "exponential:s=20", "exponential:s=40"),
        None,
    ),
    "piecewise": (
        "Piecewise constant",
        (
            "multistep:milestones=20,gamma=0.01",
            "step:step_size=10,gamma=0.5",
            "multistep:milestones=10|25,gamma=0.3",
        ),
        None,
    ),
    "performance": (
        "Performance",
        (
            "plateau:patience=2,factor=0.5",
            "plateau:patience=2,factor=0.5,monitor=test",
            "plateau:patience=5,factor=0.1",
        ),
        None,
    ),
    "cyclic": (
        "Cyclic & 1cycle",
        ("onecycle", "cyclic:mode=triangular", "cyclic:mode=triangular2"),
        None,
    ),
    "warmup_cosine": (
        "Warmup + cosine",
        ("warmup_cosine:warmup=5", "cosine", "cosine_restarts:T_0=4,T_mult=2"),
        None,
    ),
    "lambda": (
        "Article's LambdaLR",
        ("lambda:0.5 ** epoch", "lambda:1 / (1 + epoch)", "exponential:gamma=0.5"),
        0.05,
    ),
}


def widget_key(slot: int, family: str, key: str) -> str:
    return f"s{slot}_{family}_{key}"


def _state_values(slot: int, spec: str) -> tuple[dict, dict]:
    """Returns the session-state entries that make column ``slot`` show ``spec``, and the subset of
    them that differ from the widgets' defaults (what the URL needs)."""
    parsed = parse_schedule(spec)
    out = {f"s{slot}": parsed.name}
    if parsed.name == "lambda":
        out[f"s{slot}_lambda"] = parsed.expression
        return out, out
    explicit = dict(out)
    for key, spec_key in FAMILIES[parsed.name].keys.items():
        value = parsed.get(key)
        out[widget_key(slot, parsed.name, key)] = (
            "|".join(map(str, value)) if spec_key.kind == "ints" else value
        )
        if value != spec_key.default:
            explicit[widget_key(slot, parsed.name, key)] = out[widget_key(slot, parsed.name, key)]
    out[f"s{slot}_{parsed.name}_every"] = parsed.every
    if parsed.every != ("batch" if parsed.family.per_batch else "epoch"):
        explicit[f"s{slot}_{parsed.name}_every"] = parsed.every
    return out, explicit


def apply_preset(name: str) -> None:
    """Fills the columns with a preset (an on_click callback: runs before the widgets are drawn)."""
    _, specs, lr = PRESETS[name]
    values = {"nslots": len(specs)} | ({"lr0": lr} if lr is not None else {})
    url = dict(values)
    for slot, spec in enumerate(specs, 1):
        state, explicit = _state_values(slot, spec)
        values |= state
        url |= explicit
    st.session_state.update(values)
    # Streamlit puts a bound widget's value in the URL when code sets it on a widget that already
    # exists; the preset's new widgets (another family's arguments) get their URL entry here.
    for key, value in url.items():
        # a key bound to a widget on screen raises: Streamlit syncs that one itself
        with contextlib.suppress(StreamlitAPIException):
            st.query_params[key] = _url_value(key, value)


def _url_value(key: str, value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if re.fullmatch(r"s\d+", key):
        return FAMILIES[value].title
    return repr(value) if isinstance(value, float) else str(value)


PRESETS_PER_ROW = 4  # seven in one row cut their labels ("Piecewise co…")


def preset_buttons() -> None:
    """Draws one button per preset, in rows of ``PRESETS_PER_ROW``."""
    items = list(PRESETS.items())
    for start in range(0, len(items), PRESETS_PER_ROW):
        cols = st.columns(PRESETS_PER_ROW)
        for col, (name, (label, specs, _)) in zip(cols, items[start : start + PRESETS_PER_ROW]):
            col.button(
                label,
                key=f"preset_{name}",
                on_click=apply_preset,
                args=(name,),
                use_container_width=True,
                help="Fills the columns with " + ", ".join(f"`{s}`" for s in specs),
            )


def initial_lr() -> float:
    value = float(
        st.number_input(
            "Initial lr (the optimizer's lr)",
            min_value=1e-6,
            max_value=10.0,
            step=0.01,
            format="%g",
            key="lr0",
            **_first("lr0", value=0.05),
            **BIND,
            help="Every run starts from this lr; the constant baseline keeps it. For CyclicLR "
            "and OneCycleLR it is max_lr unless you set max_lr.",
        )
    )
    urlcheck.number("lr0", value, 1e-6, 10.0, integer=False)
    return value


def slot_count() -> int:
    value = int(
        st.number_input(
            "Schedules to compare", 1, MAX_SLOTS, key="nslots", **_first("nslots", value=3), **BIND
        )
    )
    urlcheck.number("nslots", value, 1, MAX_SLOTS, integer=True)
    return value


def _first(key: str, **initial) -> dict:
    """Returns the widget's initial-value argument unless session state (preset, URL) holds it.

    Streamlit warns when both set a widget's value.
    """
    return {} if key in st.session_state else initial


def _number(label: str, key: str, kind: str, default):
    return st.number_input(
        label,
        step=1 if kind == "int" else None,
        format="%d" if kind == "int" else "%g",
        key=key,
        placeholder="default (see below)" if default is None else None,
        **_first(key, value=default),
        **BIND,
    )


def _param_widget(slot: int, family: str, key: str, spec: Key, initial):
    kind = spec.kind
    wkey = widget_key(slot, family, key)
    label = f"`{key}`"
    if kind in ("float", "int"):
        value = _number(label, wkey, kind, initial)
    elif kind == "ints":
        value = st.text_input(
            label, key=wkey, **_first(wkey, value="|".join(map(str, initial))), **BIND
        )
    elif kind == "bool":
        value = st.checkbox(label, key=wkey, **_first(wkey, value=initial), **BIND)
    else:
        value = st.selectbox(
            label, spec.choices, key=wkey, **_first(wkey, index=spec.choices.index(initial)), **BIND
        )
    st.caption(spec.help)
    return value


def _fmt(kind: str, value) -> str:
    if kind == "ints":
        return "|".join(p.strip() for p in str(value).replace(",", "|").split("|") if p.strip())
    if kind == "float":
        return repr(float(value)) if math.isfinite(value) else str(value)
    return str(value).lower() if kind == "bool" else str(value)


def slot_spec(slot: int, default: str) -> str:
    """Draws one column's controls; returns the schedule spec they describe (not yet checked)."""
    families = list(FAMILIES)
    default = parse_schedule(default)
    family = st.selectbox(
        f"Schedule {slot}",
        families,
        format_func=lambda name: FAMILIES[name].title,
        key=f"s{slot}",
        **_first(f"s{slot}", index=families.index(default.name)),
        **BIND,
    )
    st.caption(
        f"`torch.optim.lr_scheduler.{FAMILIES[family].torch}`"
        if family != "constant"
        else "no scheduler"
    )
    if family == "lambda":
        expr = st.text_input(
            "`lr_lambda = lambda epoch:`",
            key=f"s{slot}_lambda",
            max_chars=400,
            **_first(f"s{slot}_lambda", value=default.expression or "0.5 ** epoch"),
            **BIND,
            help=(
                f"A factor in `epoch`: LambdaLR sets lr = factor × initial_lr. "
                f"Accepted: {ACCEPTED}."
            ),
        )
        st.caption(
            "returns a **factor** of the initial lr, not an lr: `0.5 ** epoch` halves it each epoch"
        )
        return "lambda:" + expr
    parts = []
    keys = list(FAMILIES[family].keys.items())
    more = st.expander("more arguments") if len(keys) > SHOWN else None
    for i, (key, spec) in enumerate(keys):
        initial = default.get(key) if default.name == family else spec.default
        if i < SHOWN or more is None:
            value = _param_widget(slot, family, key, spec, initial)
        else:
            with more:
                value = _param_widget(slot, family, key, spec, initial)
        kind, default_value = spec.kind, spec.default
        if value is None or value == "":
            continue
        if (
            kind == "ints"
            and default_value is not None
            and _fmt(kind, value) == "|".join(map(str, default_value))
        ):
            continue
        if kind != "ints" and value == default_value:
            continue
        parts.append(f"{key}={_fmt(kind, value)}")
    if family != "constant":
        natural = "batch" if FAMILIES[family].per_batch else "epoch"
        if FAMILIES[family].epoch_only:
            st.caption("steps once per **epoch**, on that epoch's loss: `scheduler.step(loss)`")
        else:
            every = st.segmented_control(
                "step the scheduler every",
                ["epoch", "batch"],
                required=True,
                key=f"s{slot}_{family}_every",
                **_first(
                    f"s{slot}_{family}_every",
                    default=default.every if default.name == family else natural,
                ),
                **BIND,
            )
            if every != natural:
                parts.append(f"every={every}")
    return family + (":" + ",".join(parts) if parts else "")


def plain(text: str) -> str:
    """Returns ``text`` with Markdown and LaTeX characters escaped: a message quotes user input."""
    return "".join("\\" + c if c in "\\`*_{}[]<>()#+-.!|$~" else c for c in text)


def checked_spec(
    slot: int,
    spec: str,
    lr: float,
    epochs: int,
    steps_per_epoch: int,
    optimizer: bnlr.OptimizerConfig,
) -> str | None:
    """Returns ``spec`` if bnlr and torch accept it for this run, else the column's last good spec
    (or None), after showing why under the column."""
    key = f"good_s{slot}"
    try:
        check_schedule(spec, lr, epochs, steps_per_epoch, optimizer)
        st.session_state[key] = spec
        return spec
    except ValueError as err:
        st.error(plain(str(err)), icon="⚠️")
        good = st.session_state.get(key)
        if good is not None:
            try:
                check_schedule(good, lr, epochs, steps_per_epoch, optimizer)
            except ValueError:
                good = None
        st.caption(
            f"Showing the last valid schedule of this column: `{good}`."
            if good
            else "This column is left out until it is fixed."
        )
        return good


def notes(
    spec: str, optimizer: bnlr.OptimizerConfig, epochs: int, steps_per_epoch: int
) -> list[str]:
    """Returns what PyTorch does here that a user may not expect (pitfalls), for one schedule."""
    p = parse_schedule(spec)
    out = []
    if p.name == "lambda":
        out.append(
            "`LambdaLR` multiplies the **initial** lr by what your lambda returns: return a factor "
            "(`0.5 ** epoch`), not an lr (`0.05 * 0.5 ** epoch` would give 0.0025 at epoch 0)."
        )
    if p.name == "plateau":
        out.append(
            "`ReduceLROnPlateau.step(loss)` needs the metric; the page feeds each run its own "
            f"**{p.get('monitor')}** loss once per epoch, so every run gets its own lr curve."
        )
    if p.name == "onecycle":
        n = epochs * steps_per_epoch if p.every == "batch" else epochs
        out.append(
            f"`OneCycleLR(total_steps={n})` = {epochs} epochs"
            + (f" × {steps_per_epoch} batches" if p.every == "batch" else "")
            + ": one more `scheduler.step()` and torch raises *Tried to step … times*; "
            "the page computes it so it cannot overrun."
        )
    if p.cycles_momentum:
        if optimizer.name == "sgd" and optimizer.momentum == 0:
            out.append(
                f"`cycle_momentum=True` with plain SGD: PyTorch **turns momentum on** and cycles "
                f"it between {p.get('base_momentum')} and {p.get('max_momentum')} "
                "(see the momentum chart). Untick `cycle_momentum` for plain SGD."
            )
        elif optimizer.name != "sgd":
            out.append(
                "`cycle_momentum=True` with Adam: PyTorch cycles **beta1** (`betas[0]`) between "
                f"{p.get('base_momentum')} and {p.get('max_momentum')}, as it would SGD's momentum."
            )
    if p.every != ("batch" if p.family.per_batch else "epoch"):
        out.append(
            f"Stepped once per **{p.every}**: its step counts "
            f"({'batches' if p.every == 'batch' else 'epochs'}) "
            "change meaning accordingly."
        )
    return out
