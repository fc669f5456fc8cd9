"""LR learning curve: final loss against the learning rate (the article's U), and Smith's range
test beside it."""

import numpy as np
import streamlit as st

from bnlr import analysis, quiz
from bnlr.evidence import sentence
from ui import charts, classroom, controls, edge_charts, figures, runner, theme, urlcheck, why_jobs
from ui.page import on_demand, open_page

DEFAULTS = {
    **controls.ARTICLE,
    "seeds": 2,
    "lr_lo": "1e-4",
    "lr_hi": "1",
    "lr_n": 16,
    "num_it": 100,
}

open_page(
    "lr_curve",
    "LR learning curve",
    "Too small a learning rate cannot get there in the epochs given; too large a one "
    "oscillates or jumps over the minimum. **Final loss against lr is U-shaped.** Beside it, "
    "an LR range test (one short run per network, lr rising every batch) and where its rules "
    "would have put the lr.",
)
with st.sidebar:
    controls.reset_button(DEFAULTS)
    lrs = controls.lr_range(DEFAULTS["lr_lo"], DEFAULTS["lr_hi"], DEFAULTS["lr_n"])
    arch = controls.architecture()
    grid = controls.grid(lrs=lrs, arch=arch, **controls.training(DEFAULTS["seeds"]))
    num_it = int(
        controls.number(
            "Range test: batches at most",
            20,
            500,
            DEFAULTS["num_it"],
            10,
            key="num_it",
            help="lr rises exponentially from 1e-5 to 10 over these batches",
        )
    )
    controls.cost_note(grid, num_it)
    if grid is not None:
        try:
            runner.check_cost(grid.experiment, num_it)
        except ValueError as e:
            st.error(str(e), icon="⚠️")
            grid = None
urlcheck.finish(controls.DISPLAY_KEYS)

grid, (result, curves) = controls.last_good(
    "lr_curve", grid, lambda g: runner.sweep_and_range_test(g.experiment, num_it)
)
asked = classroom.ask("lr_curve", lrs=grid.lrs)
chart_area, display_area = classroom.chart_first()
with display_area:
    show = controls.display(finals=True)
initial = why_jobs.initial_sharpness(grid.experiment)
presenting = theme.presenting()
height = 240 if presenting else 340
display = {**show, "k": int(show["k"]), "initial": id(initial)}


def analysed(show):  # once per result and display, shared by every session (ui.figures)
    report = analysis.lr_curve_report(
        result, curves, num_it, show["split"], show["final"], show["k"], show["band"], initial
    )
    range_test = charts.range_test_chart(curves, report.suggested, report.best, height=height)
    rules = report.suggested.pivot_table(index=["arch", "seed"], columns="rule", values="lr")
    return (
        report,
        figures.spec(classroom.stretched(range_test) if presenting else range_test),
        rules.join(report.suggested.groupby(["arch", "seed"])["best_lr"].first()),
    )


report, range_spec, per_rule = figures.for_display("lr_curve", result, display, analysed)
guess = asked.guess if asked and asked.guess != quiz.NONE_DIVERGES else None
if asked and asked.name == "best_lr":
    classroom.reveal(asked, quiz.best_lr(report.best, asked.guess))
elif asked:
    classroom.reveal(asked, quiz.diverge(report.bands, asked.guess))

# in presentation mode the U first, as wide as the page; the range test under its controls
left, right = (chart_area, st.container()) if presenting else chart_area.columns(2)
with left:
    st.subheader("Final loss against learning rate")

    def u_spec():
        u = charts.lr_curve(
            report.bands,
            y_title=f"final {show['split']} MSE ({show['final']})",
            log_y=show["log_y"],
            predicted=report.stability,
            guess=guess,
            height=height,
        )
        return figures.spec(classroom.stretched(u) if presenting else u)

    figures.draw(
        figures.shared("lr_curve:u", result, (*display.items(), guess, presenting), u_spec),
        stretch=presenting,
    )
    st.caption(
        f"◆ best lr per network · grey: some run diverged · band: {analysis.BANDS[show['band']]}."
    )
with right:
    st.subheader("LR range test (Smith)")
    figures.draw(range_spec, stretch=presenting)
    st.caption(
        "▼ steepest slope · ● valley · ■ minimum ÷ 10 · dotted rule: the sweep's best lr. "
        "Smoothed (EMA 0.98, bias-corrected); stops when the loss passes 4× its best. One curve "
        "per network and seed."
    )

controls.diverged_note(result.runs)

st.subheader("What the sweep says, seed by seed")
stab = report.stability
if initial is None:
    st.caption(
        "Curvature at init (2/λ_max(0)) is left out at these settings: the exact Hessian of "
        "networks this size would take more than "
        f"{why_jobs.SHARPNESS_CAP_S:g} s on the demo's server (it grows with the square of the "
        "parameters)."
    )
elif grid.optimizer.name != "sgd":
    st.caption(
        "Curvature at init (2/λ_max(0)) is SGD's wall; Adam's is on the preconditioned "
        "sharpness, which needs Adam's own state: see *Why it happens*."
    )
elif stab is not None and len(stab):
    pred = stab["predicted_max_lr"].median()
    div = stab["first_diverged_lr"].dropna()
    where = (
        f"the sweep's first diverged lr is **{div.median():.2g}** (median over networks), "
        f"{np.log10(div.median() / pred):+.1f} decades from it"
        if len(div)
        else "no run of the sweep diverged"
    )
    band = why_jobs.wall_band(grid.experiment)
    past = ""
    if band is not None:
        band = band.merge(stab[["arch", "first_diverged_lr"]], left_on="network", right_on="arch")
        reach = band["largest_lr"].median()
        side = "inside" if len(div) and div.median() <= reach else "above"
        past = (
            f" Full-batch gradient descent from the same initial weights trains up to "
            f"**{band['largest_factor'].median():.2g} × 2/λ₀**, lr ≈ **{reach:.2g}** (median over "
            "networks and seeds): between the two it rides the edge of stability or catapults "
            "(the bar per network below; *Why it happens*, section 4)"
            + (f", and the sweep's first divergence lies {side} that reach." if len(div) else ".")
        )
    st.markdown(
        f"**Curvature at init:** 2/λ_max(0) predicts instability above lr ≈ **{pred:.2g}** "
        f"(median over networks and seeds); {where}.{past} Minibatch SGD is not full-batch "
        "gradient descent, and the sharpness changes as training goes."
    )
    if band is not None:
        band_spec = figures.shared(
            "lr_curve:band", result, presenting, lambda: figures.spec(edge_charts.band_chart(band))
        )
        figures.draw(band_spec)
        st.caption(
            "Per network: grey tick, 2/λ₀; bar, up to the largest lr full-batch gradient descent "
            f"trains at ({why_jobs.PAST_STEPS} steps, factors "
            "0.5–5 × 2/λ₀; medians over seeds); ✕ the sweep's first diverged lr."
        )
seeds = len(grid.seeds)
st.markdown(
    "**Is it a U?** "
    + sentence(
        report.u_shape,
        "final loss against lr is U-shaped: **{word}**, the best lr lies inside the "
        "grid for every network",
        "yes",
    )
)
st.caption(
    "Per seed: for each network, how much worse (decades of final loss) the better end of the lr "
    "grid is than its best lr; the smallest over the networks is the seed's effect (0 when some "
    "network's best lr is an end of the grid; a diverged end counts as worse)."
)
st.markdown(
    "**BN vs no BN:** "
    + sentence(
        report.bn_best_lr, "BN networks' best lr is **{word}** than the plain ones'", "higher"
    )
)
number = st.column_config.NumberColumn
figures.dataframe(
    report.best_over_seeds,
    hide_index=True,
    column_config={
        c: number(format="%.3g") for c in ("best lr (geometric mean over seeds)", "low", "high")
    },
)
st.caption(
    f"Best lr per network: the lr of the lowest final loss in each of the {seeds} seed(s); its "
    "geometric mean over seeds and a 90 % Student-t interval (low – high; one seed: none)."
)

st.markdown(
    "**Range test vs full sweep**: how far each rule's lr lands from the sweep's best lr "
    f"of the same seed, over {seeds} seed(s) × networks:"
)
figures.dataframe(
    report.rules,
    lambda rules: rules.assign(times=lambda d: 10 ** d["median"]).rename(
        columns={
            "median": "median (decades)",
            "p10": "10 % (decades)",
            "p90": "90 % (decades)",
            "n": "range tests",
            "times": "median ratio to the best lr",
        }
    ),
    hide_index=True,
    column_config={
        c: number(format="%+.2f") for c in ("median (decades)", "10 % (decades)", "90 % (decades)")
    }
    | {"median ratio to the best lr": number(format="%.2g")},
)

TABLES = "Best lr of the seed-mean curve, and each rule's lr, per network and seed"
if box := on_demand(TABLES, "tables_open"):
    with box:
        figures.dataframe(
            report.best,
            lambda best: best.drop(columns=["net", "bn"]).rename(
                columns={"final_loss": "final loss at best lr"}
            ),
            hide_index=True,
            column_config={
                "best_lr": number(format="%.3g"),
                "final loss at best lr": number(format="%.4g"),
            },
        )
        figures.dataframe(
            per_rule,
            column_config={
                c: number(format="%.3g") for c in ("steep", "valley", "minimum", "best_lr")
            },
        )

c1, c2, c3 = st.columns(3)
with c1:
    controls.download(report.metrics, "Final loss per run", "bnlr_lr_curve_metrics.csv")
with c2:
    controls.download(curves, "Range test", "bnlr_lr_range_test.csv")
with c3:
    controls.download(result.history, "Loss per epoch", "bnlr_lr_curve_history.csv")
controls.code(grid.experiment)
classroom.finish("lr_curve")
