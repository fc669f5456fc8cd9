"""LR sensitivity: the article's 2×2 — loss per epoch at four learning rates, with and without BN."""

import streamlit as st

from bnlr import analysis, article
from ui import charts, controls, runner

DEFAULTS = {**controls.ARTICLE, "lrs": ", ".join(map(str, article.LRS))}

st.title("LR sensitivity")
st.markdown(
    "Four small MLPs trained side by side at each learning rate, every panel one lr. Runs that "
    "differ only in the lr share their initial weights and batch order. **Does BatchNorm make a "
    "network react more to the learning rate?** The numbers below answer it for the settings on "
    "the left."
)

with st.sidebar:
    controls.reset_button(DEFAULTS)
    lrs = controls.lr_list(DEFAULTS["lrs"])
    arch = controls.architecture()
    grid = controls.grid(lrs=lrs, arch=arch, **controls.training())
    controls.work_cap_note(grid)

grid, result = controls.last_good("lr_sensitivity", grid, lambda g: runner.run(g.experiment))
show = controls.display()
report = analysis.sensitivity_report(result, show["split"], show["band"])

st.subheader("Loss per epoch, one panel per learning rate")
st.altair_chart(charts.loss_curves(report.bands, show["log_y"]))
st.caption(
    f"Colour = network, dash = BatchNorm, band = {analysis.BANDS[show['band']]}. "
    "Click a legend entry to highlight it (shift-click for more)."
)
controls.diverged_note(result.runs)

st.subheader("Which models react more to the learning rate?")
v = report.verdict
if v.word is None:
    st.markdown(f"#### No answer at these settings: {v.reason}.")
else:
    st.markdown(
        f"#### With BN the final {show['split']} loss moves **{v.bn:.2f}** decades across these "
        f"learning rates, without BN **{v.plain:.2f}**: here BN models react **{v.word}** to the "
        f"learning rate ({v.ratio:.1f}× the spread)."
    )
if report.sensitivity["diverged_lrs"].any():
    st.caption(
        "Learning rates where a seed diverged are left out of the spread (column diverged_lrs)."
    )
left, right = st.columns([2, 3])
left.altair_chart(charts.sensitivity_bars(report.sensitivity))
right.altair_chart(charts.run_grid(report.metrics))
right.caption(
    "Colour: instability, the decades the loss climbed back up over the epochs (0 = it only went "
    "down). Text: final loss (geometric mean over seeds), or ✕ and the epoch where it diverged."
)
st.dataframe(report.sensitivity, hide_index=True)
with st.expander("Per-run metrics"):
    st.dataframe(report.metrics, hide_index=True)

c1, c2 = st.columns(2)
with c1:
    controls.download(result.history, "Loss per epoch", "bnlr_lr_sensitivity_history.csv")
with c2:
    controls.download(report.metrics, "Per-run metrics", "bnlr_lr_sensitivity_metrics.csv")
controls.code(grid.experiment)
