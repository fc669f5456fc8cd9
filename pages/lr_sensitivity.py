"""LR sensitivity: the article's 2×2 — loss per epoch at four learning rates, with and without BN."""

import streamlit as st

from bnlr import metrics
from ui import charts, controls, runner

DEFAULTS = {**controls.ARTICLE, "lrs": "0.1, 0.03, 0.01, 0.005"}

st.title("LR sensitivity")
st.markdown(
    "Four small MLPs trained side by side at each learning rate, every panel one lr. Runs that differ "
    "only in the lr share their initial weights and batch order. **Does BatchNorm make a network react "
    "more to the learning rate?** The numbers below answer it for the settings on the left."
)

with st.sidebar:
    controls.reset_button(DEFAULTS)
    lrs = controls.lr_list(DEFAULTS["lrs"])
    arch = controls.architecture()
    grid = controls.grid(lrs=lrs, arch=arch, **controls.training())
    controls.work_cap_note(grid)

grid, result = controls.last_good(
    "lr_sensitivity", grid, lambda g: runner.run(g.experiment, "Training")
)
show = controls.display()

st.subheader("Loss per epoch, one panel per learning rate")
st.altair_chart(
    charts.loss_curves(
        charts.history_band(result.history, show["split"], show["band"]), show["log_y"]
    )
)
st.caption(
    f"Colour = network, dash = BatchNorm, band = {charts.BANDS[show['band']]}. "
    "Click a legend entry to highlight it (shift-click for more)."
)
controls.diverged_note(result.runs)

st.subheader("Which models react more to the learning rate?")
m = metrics.run_metrics(result.history, show["split"])
sens = metrics.lr_sensitivity(m)
bn, plain = sens[sens["bn"] != "none"], sens[sens["bn"] == "none"]
if len(bn) and len(plain) and sens["sensitivity"].notna().all():
    a, b = bn["sensitivity"].mean(), plain["sensitivity"].mean()
    word = "more" if a > b else "less"
    st.markdown(
        f"#### With BN the final {show['split']} loss moves **{a:.2f}** decades across these learning rates, "
        f"without BN **{b:.2f}**: here BN models react **{word}** to the learning rate "
        f"({a / b:.1f}× the spread)."
    )
else:
    st.markdown(
        "#### No answer at these settings: it needs BN and plain models, each with at least two "
        "learning rates where no seed diverged."
    )
if sens["diverged_lrs"].any():
    st.caption(
        "Learning rates where a seed diverged are left out of the spread (column diverged_lrs)."
    )
left, right = st.columns([2, 3])
left.altair_chart(charts.sensitivity_bars(sens))
right.altair_chart(charts.run_grid(m))
right.caption(
    "Colour: instability, the decades the loss climbed back up over the epochs (0 = it only went "
    "down). Text: final loss (geometric mean over seeds), or ✕ and the epoch where it diverged."
)
st.dataframe(sens, hide_index=True)
with st.expander("Per-run metrics"):
    st.dataframe(m, hide_index=True)

c1, c2 = st.columns(2)
with c1:
    controls.download(result.history, "Loss per epoch", "bnlr_lr_sensitivity_history.csv")
with c2:
    controls.download(m, "Per-run metrics", "bnlr_lr_sensitivity_metrics.csv")
controls.code(grid.experiment)
