"""Scheduler playground: the article's schedule families, their lr and loss, and the PyTorch."""

import pprint

import streamlit as st

from bnlr import analysis, codegen, cost, quiz
from bnlr.config import steps_per_epoch
from bnlr.evidence import sentence
from bnlr.safe_expr import parse_factor
from bnlr.schedules import parse_schedule
from ui import classroom, controls, figures, runner, theme, urlcheck
from ui import schedule_charts as sc
from ui import schedule_controls as scc
from ui.page import on_demand, open_page

INTRO = (
    "Each column is a `torch.optim.lr_scheduler` with torch's own argument names and defaults. "
    "Every schedule trains the models on the left **against a constant-lr baseline at the same "
    "initial lr** (grey), from the same initial weights and batch order. The article's five "
    "families (Géron, ch. 11) are one click away:"
)

FACTOR = cost.PAGE_FACTOR["schedules"]  # the page's own work beside its training
open_page("schedules", "Scheduler playground")  # its introduction folds with the schedules
with st.sidebar:
    controls.reset_button(controls.ARTICLE)
    lr = scc.initial_lr()
    arch = controls.architecture()
    training = controls.training()

# in presentation mode the schedules fold away: the first screen is for the lr chart
with classroom.folded("The schedules: presets, and each column's torch arguments"):
    st.markdown(INTRO)
    scc.preset_buttons()
    n_slots = scc.slot_count()
    S = steps_per_epoch(training["data"].n_train, training["batch_size"])
    # checking a schedule steps its torch scheduler over the whole run: capped before that
    try:
        if arch is not None:
            slots = tuple(f"slot {k}" for k in range(n_slots + 1))  # the baseline and each column
            runner.precheck(FACTOR, lrs=(lr,), schedules=slots, **arch, **training)
        affordable = True
    except ValueError as e:
        st.error(str(e), icon="⚠️")
        affordable = False
    specs = []
    for slot, col in enumerate(st.columns(n_slots), 1):
        with col, st.container(border=True):
            spec = scc.slot_spec(
                slot, scc.DEFAULT_SLOTS[slot - 1] if slot <= len(scc.DEFAULT_SLOTS) else "cosine"
            )
            if affordable:
                specs.append(
                    scc.checked_spec(slot, spec, lr, training["epochs"], S, training["optimizer"])
                )
schedules = tuple(dict.fromkeys([analysis.BASELINE, *filter(None, specs)]))

with st.sidebar:
    grid = (
        controls.grid(lrs=(lr,), arch=arch, schedules=schedules, factor=FACTOR, **training)
        if affordable
        else None
    )
    controls.cost_note(grid, factor=FACTOR)
urlcheck.finish((*controls.DISPLAY_KEYS, "lr_log", "state_sched", "state_steps", "code_model"))
grid, result = controls.last_good(
    "schedules", grid, lambda g: runner.run(g.experiment, factor=FACTOR, steps=True)
)
E, S, lr0, order = grid.epochs, grid.experiment.steps_per_epoch, grid.lrs[0], list(grid.schedules)
report = figures.shared("schedules", result, (), lambda: analysis.schedule_report(result, grid))
asked = classroom.ask("schedules", schedules=order)
presenting = theme.presenting()

# ---------------------------------------------------------------- learning rate
st.subheader("The learning rate")
chart_area, display_area = classroom.chart_first()
log_lr = display_area.toggle("Log lr axis", False, key="lr_log", bind="query-params")
lrs = report.lrs
cycling = [s for s in order if parse_schedule(s).cycles_momentum]
what = "beta1 (Adam's betas[0])" if grid.optimizer.name != "sgd" else "SGD momentum"


def lr_specs():  # once per result and display, shared by every session (ui.figures)
    per_epoch = sc.lr_chart(
        analysis.per_epoch(lrs, S), order, log_lr, height=200 if presenting else 260
    )
    specs = {"epoch": figures.spec(classroom.stretched(per_epoch) if presenting else per_epoch)}
    if (lrs["every"] == "batch").any():
        specs["batch"] = figures.spec(sc.lr_chart(lrs, order, log_lr, per_batch=True))
    if cycling:
        momentum = lrs[lrs["schedule"].isin(cycling)]
        specs["momentum"] = figures.spec(
            sc.lr_chart(momentum, order, per_batch=True, field="momentum", title=what, height=180)
        )
    return specs


lr_specs = figures.shared("schedules:lr", result, (log_lr, presenting), lr_specs)
with chart_area:
    figures.draw(lr_specs["epoch"], stretch=presenting)
st.caption(
    "The lr each epoch starts with (`optimizer.param_groups[0]['lr']` at its first batch), from "
    "the real torch scheduler on a bare optimizer. ReduceLROnPlateau's lr depends on each run's "
    "loss: one line per run (dash = BatchNorm; hover a line for its model)."
)
if "batch" in lr_specs:
    figures.draw(lr_specs["batch"])
    st.caption(
        f"Per batch: {S} optimizer steps per epoch; schedules stepped per batch change the lr "
        "at every step."
    )
if "momentum" in lr_specs:
    figures.draw(lr_specs["momentum"])
    st.caption(f"CyclicLR and OneCycleLR with `cycle_momentum=True` move {what} against the lr.")

# ---------------------------------------------------------------- loss
st.subheader("The loss they buy")
show = controls.display()


def loss_figures(show):  # once per result and display, shared by every session (ui.figures)
    bands = analysis.schedule_loss(result.history, show["split"], show["band"])
    layout = theme.facet(bands["arch"].nunique(), columns=2, width=340)
    verdicts = analysis.schedule_verdicts(result.history, show["split"])
    return figures.spec(sc.loss_chart(bands, order, show["log_y"], **layout)), verdicts


loss_spec, (table, pooled) = figures.for_display("schedules:loss", result, show, loss_figures)
figures.draw(loss_spec)
if asked:
    classroom.reveal(asked, quiz.best_schedule(result.history, asked.guess, show["split"]))
st.caption(
    f"{show['split'].capitalize()} MSE after each epoch (eval mode), one panel per model; "
    f"grey = constant lr {lr0:g}."
    + (f" Band: {analysis.BANDS[show['band']]}." if len(grid.seeds) > 1 else "")
)
controls.diverged_note(result.runs)

st.markdown("**Against the constant lr, seed by seed** (same initial weights and batch order):")
for schedule, verdict in pooled.items():
    st.markdown(
        f"`{schedule}`: "
        + sentence(verdict, "ends **{word}** than a constant lr (mean over the models)", "lower")
    )
if len(grid.seeds) > 1 and len(table):
    number = st.column_config.NumberColumn
    figures.dataframe(
        table,
        lambda t: t.drop(columns=["effect", "low", "high"]),
        hide_index=True,
        column_config={
            "ratio": number("final loss ratio (schedule / constant)", format="%.3g"),
            "ratio_low": number("90 % low", format="%.3g"),
            "ratio_high": number("90 % high", format="%.3g"),
        },
    )
st.caption(
    "Per seed: log10 final loss with the constant lr minus with the schedule (> 0: the schedule "
    "ends lower). The ratio is the geometric mean of final loss with the schedule over final loss "
    "with the constant lr; interval: 90 % over seeds (Student t)."
)

# ---------------------------------------------------------------- formulas and pitfalls
st.subheader("The formulas, and what PyTorch does")
for spec in order:
    family = parse_schedule(spec).family
    with st.container(border=True):
        st.markdown(
            f"**{family.title}** · `{spec}`" + (f" — {family.geron}" if family.geron else "")
        )
        st.latex(family.formula)
        for note in scc.notes(spec, grid.optimizer, E, S):
            st.caption("⚠️ " + note)

# ---------------------------------------------------------------- the optimizer's state
st.subheader("What the optimizer sees")
st.markdown(
    "A scheduler only writes `lr` into `optimizer.param_groups`; on creation it also saves "
    "`initial_lr` there. `LambdaLR` computes **new_lr = lr_lambda(epoch) × initial_lr** at every "
    "`scheduler.step()`. Below: `optimizer.state_dict()` for a schedule on screen, before "
    "training and after each `optimizer.step(); scheduler.step()`."
)
c1, c2 = st.columns(2)
shown = [s for s in order if s != analysis.BASELINE] or order
pick = c1.selectbox("Schedule", shown, key="state_sched", bind="query-params")
k = c2.number_input("scheduler.step() calls", 1, 50, 3, key="state_steps", bind="query-params")
states = codegen.optimizer_states(pick, lr0, E, S, grid.optimizer, steps=int(k))
if box := on_demand(f"optimizer.state_dict() for {pick}, step by step", "state_open"):
    left, right = box.columns(2)
    left.code(
        "# optimizer.state_dict()['param_groups'] before training\n"
        + pprint.pformat(states[0]["param_group"], sort_dicts=False, width=60),
        language="python",
    )
    right.code(
        f"# after optimizer.step(); scheduler.step() (#{states[-1]['step']})\n"
        + pprint.pformat(states[-1]["param_group"], sort_dicts=False, width=60),
        language="python",
    )
    table = codegen.state_table(states)
    figures.dataframe(
        table,
        where=box,
        hide_index=True,
        column_config={c: st.column_config.NumberColumn(format="%.6g") for c in table.columns[1:]},
    )
p = parse_schedule(pick)
if p.name == "lambda" and len(states) > 1:
    f1 = parse_factor(p.expression)(1)
    st.markdown(
        f"After one `scheduler.step()`: lr_lambda(1) × initial_lr = `{f1:g}` × `{lr0:g}` = "
        f"**{f1 * lr0:g}** = `param_groups[0]['lr']`."
    )
if p.name == "plateau":
    st.caption(
        "ReduceLROnPlateau is fed a loss that never improves here (1.0 each epoch), so you see "
        "`patience` at work; in training it gets each run's own loss."
    )
st.caption(
    "`get_last_lr()` is the scheduler's record of the lr it last set; `param_groups[0]['lr']` is "
    "what the next `optimizer.step()` uses. After `scheduler.step()` both are the lr of the "
    "**next** step. Call `scheduler.step()` after `optimizer.step()`: the other order makes "
    "PyTorch warn and skip the first lr."
)
st.caption(
    "Why warm up at all: the stability wall 2/λ is lowest at the start. How far the article's "
    "networks train past it, and the largest lr against a linear warmup's length: "
    "[Why it happens, sections 4 and 5](why)."
)

# ---------------------------------------------------------------- code and data
st.subheader("The PyTorch that does it")
archs = list(dict.fromkeys(r.model.label for r in grid.experiment.runs))
model = st.selectbox("Code for the model", archs, key="code_model", bind="query-params")
runs = [
    i
    for i, r in enumerate(grid.experiment.runs)
    if r.model.label == model and r.seed == grid.seeds[0]
]
SCRIPT = f"The script for {model}: {len(runs)} runs, copy it with the button at its top right"
if box := on_demand(SCRIPT, "script_open"):
    box.code(codegen.script(grid.experiment, runs), language="python")
st.caption(
    "Self-contained (torch and math only): the optimizer, every scheduler with its arguments "
    "resolved, and the loop with the step order right. It prints "
    "`run,epoch,train_loss,test_loss`: the numbers above."
)
controls.download(report.table, "lr and loss per epoch", "bnlr_schedules.csv")
classroom.finish("schedules")
