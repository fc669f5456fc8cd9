"""LR sensitivity: the article's 2×2 — loss per epoch at four learning rates, with and without BN —
and its claim judged over seeds."""

import streamlit as st

from bnlr import analysis, article, claims, quiz
from bnlr.evidence import sentence
from ui import charts, classroom, controls, figures, runner, theme, urlcheck
from ui.page import on_demand, open_page

DEFAULTS = {**controls.ARTICLE, "lrs": ", ".join(map(str, article.LRS))}
CLAIM = "BN models react **{word}** to the learning rate than plain ones"
N = claims.REPLICATION_SEEDS

open_page(
    "lr_sensitivity",
    "LR sensitivity",
    "Four small MLPs trained side by side at each learning rate, every panel one lr. Runs "
    "that differ only in the lr share their initial weights and batch order. **Does "
    "BatchNorm make a network react more to the learning rate?** Below, the answer for the "
    f"seeds on screen, and for the same experiment over {N} seeds.",
)

with st.sidebar:
    controls.reset_button(DEFAULTS)
    lrs = controls.lr_list(DEFAULTS["lrs"])
    arch = controls.architecture()
    grid = controls.grid(lrs=lrs, arch=arch, **controls.training())
    controls.cost_note(grid, replication=True)
urlcheck.finish(controls.DISPLAY_KEYS)

grid, result = controls.last_good("lr_sensitivity", grid, lambda g: runner.run(g.experiment))
asked = classroom.ask("lr_sensitivity")
chart_area, display_area = classroom.chart_first()
with display_area:
    show = controls.display()


def on_screen(show):  # once per result and display, shared by every session (ui.figures)
    report = analysis.sensitivity_report(result, show["split"], show["band"])
    layout = theme.facet(len(grid.lrs), columns=2, width=theme.PANEL_PX)
    height = 190 if theme.presenting() else 220
    return report, {
        "loss": figures.spec(
            charts.loss_curves(report.bands, show["log_y"], height=height, **layout)
        ),
        "bars": figures.spec(charts.sensitivity_bars(report.sensitivity)),
        "runs": figures.spec(charts.run_grid(report.metrics)),
    }


report, specs = figures.for_display("lr_sensitivity", result, show, on_screen)

with chart_area:
    st.subheader("Loss per epoch, one panel per learning rate")
    figures.draw(specs["loss"])
    st.caption(
        f"Colour = network, dash = BatchNorm, band = {analysis.BANDS[show['band']]}. "
        "Click a legend entry to highlight it (shift-click for more)."
    )
controls.diverged_note(result.runs)

st.subheader("Do BN models react more to the learning rate?")
seeds = ", ".join(map(str, grid.seeds))
st.markdown(
    f"**On screen** (seed{'s' * (len(grid.seeds) > 1)} {seeds}): "
    + sentence(report.verdict, CLAIM, "more")
)
st.caption(
    "Per seed: each model's LR sensitivity is max − min over the lrs of log10 final "
    f"{show['split']} loss; the effect is the BN models' mean minus the plain models' mean "
    "(decades). It holds in a seed when the effect is > 0. Interval: 90 % over seeds (Student t)."
)
many, skipped = runner.replication(grid)
verdict = report.verdict  # the quiz's answer: the replication's verdict when there is one
if many is None:
    st.info(f"Replication not shown: {skipped}.")
else:

    def replicated_report(show):
        rep = analysis.sensitivity_report(many, show["split"], show["band"])
        strip = rep.verdict.answered and charts.effect_strip(
            rep.effects, rep.verdict.low, rep.verdict.high
        )
        return rep, figures.spec(strip) if strip else None

    shown = {"split": show["split"], "band": show["band"]}
    replicated, strip = figures.for_display("lr_sensitivity:20", many, shown, replicated_report)
    v = verdict = replicated.verdict
    st.markdown(
        f"**Replicated over {N} seeds** (929–{928 + N}, same settings): "
        + sentence(v, CLAIM, "more")
    )
    if strip is not None:
        figures.draw(strip)
    if len(replicated.pairs):
        figures.dataframe(
            replicated.pairs,
            hide_index=True,
            column_config={
                c: st.column_config.NumberColumn(format="%+.3f") for c in ("effect", "low", "high")
            },
        )

st.markdown("##### The seeds on screen, model by model")
if report.sensitivity["diverged_lrs"].any():
    st.caption(
        "Learning rates where a seed diverged are left out of the spread (column diverged_lrs)."
    )
left, right = st.columns([2, 3])
figures.draw(specs["bars"], left)
figures.draw(specs["runs"], right)
right.caption(
    "Colour: instability, the decades the loss climbed back up over the epochs (0 = it only went "
    "down). Text: final loss (geometric mean over seeds), or ✕ and the epoch where it diverged."
)
figures.dataframe(report.sensitivity, hide_index=True)
if box := on_demand("Per-run metrics", "table_open"):
    with box:
        figures.dataframe(report.metrics, hide_index=True)

c1, c2 = st.columns(2)
with c1:
    controls.download(result.history, "Loss per epoch", "bnlr_lr_sensitivity_history.csv")
with c2:
    controls.download(report.metrics, "Per-run metrics", "bnlr_lr_sensitivity_metrics.csv")
controls.code(grid.experiment)
if asked:
    classroom.reveal(asked, quiz.bn_more(verdict, asked.guess), CLAIM)
classroom.finish("lr_sensitivity")
