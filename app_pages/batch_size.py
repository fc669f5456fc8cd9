"""Batch size: how the best lr moves with the batch (Goyal's linear scaling, McCandlish's noise
scale), seed by seed, and where linear scaling stops."""

import streamlit as st

from bnlr import batch_size as bs
from bnlr import quiz
from ui import batch_charts, batch_jobs, classroom, controls, figures, theme, urlcheck
from ui.page import on_demand, open_page

DEFAULTS = {
    **controls.ARTICLE,
    "depths": [3],
    "seeds": 2,
    "lr_lo": "3e-4",
    "lr_hi": "0.3",
    "lr_n": 8,
    "b_min": 2,
    "same": "epochs",
}
SAME_LABEL = {"epochs": "same epochs", "steps": "same steps"}
SMALLEST = DEFAULTS["b_min"]
DEFAULTS["b_min"] = batch_jobs.default_b_min(DEFAULTS)  # higher where B = 2 is over the cap

open_page(
    "batch_size",
    "Batch size",
    "*I doubled my batch size: what learning rate now?* **Linear scaling** (Goyal et al. 2017) "
    "says lr ∝ B. The **gradient noise scale** (McCandlish et al. 2018), B_noise = tr Σ / |G|², "
    "says the best lr is about ε_max / (1 + B_noise / B): linear while B ≪ B_noise, flat once "
    "B ≫ B_noise. Here every network trains at every batch size over a grid of lrs, seed by seed.",
)
with st.sidebar:
    controls.reset_button(DEFAULTS)
    same = st.segmented_control(
        "Compare batch sizes at the",
        list(SAME_LABEL),
        default=DEFAULTS["same"],
        format_func=SAME_LABEL.get,
        key="same",
        required=True,
        bind="query-params",
        help="Same epochs: a big batch takes fewer steps. Same steps (those of the epochs at "
        "the Batch size below): a big batch sees more epochs. They answer different questions.",
    )
    urlcheck.choice("same", SAME_LABEL[same], SAME_LABEL.values())
    b_min = int(
        controls.number(
            "Smallest batch size",
            1,
            20000,
            DEFAULTS["b_min"],
            key="b_min",
            help="Then the powers of 2 up to the training split, and the whole split. B = 1 "
            "is the expensive corner (one step per sample); BN networks start at 2.",
        )
    )
    if DEFAULTS["b_min"] > SMALLEST:
        st.caption(
            f"The default starts at B = {DEFAULTS['b_min']} on this server: from B = {SMALLEST} "
            "the default sweep would exceed the cost cap here (a slower CPU, or no compiled "
            "kernel)."
        )
    lrs = controls.lr_range(DEFAULTS["lr_lo"], DEFAULTS["lr_hi"], DEFAULTS["lr_n"])
    arch = controls.architecture(DEFAULTS["depths"])
    training = controls.training(DEFAULTS["seeds"])
    st.caption(
        "**Batch size** above is the reference: the steps budget of *same steps*, and the "
        "batch whose best runs the noise scale follows. It is always among the batch sizes."
    )
    sweep, seconds = None, None
    if lrs is not None and arch is not None:
        try:
            grid = controls.grid(lrs=lrs, arch=arch, **training)
            if grid is not None:
                n = grid.data.n_train
                sizes = bs.batch_sizes(min(b_min, n), n, grid.batch_size)
                sweep = bs.BatchSweep(grid, sizes, same)
                seconds = batch_jobs.check(sweep)
        except ValueError as e:
            st.error(str(e), icon="⚠️")
            sweep = None
    controls.cost_note(sweep.grid if sweep else None, seconds=seconds)
urlcheck.finish(("split", "present"))

sweep, result = controls.last_good("batch_size", sweep, batch_jobs.sweep)
asked = classroom.ask("batch_size")
chart_area, display_area = classroom.chart_first()
with display_area:
    split = st.segmented_control(
        "Loss on", ["train", "test"], default="train", key="split", required=True, **controls.BIND
    )
    urlcheck.choice("split", split, ["train", "test"])
report = figures.shared("batch_size", result, split, lambda: bs.sweep_report(result, split))
if asked:
    classroom.reveal(asked, quiz.batch_lr(bs.lr_factor(report.ridge), asked.guess))

present = theme.presenting()
with chart_area:
    st.subheader("Final loss over learning rate × batch size")
    figures.chart(
        "batch_size:heat",
        result,
        split,
        lambda: batch_charts.heatmap(report.heat, split, height=150 if present else 200),
    )
    st.caption(
        f"Colour: log10 of the final {split} loss, geometric mean over "
        f"{len(sweep.grid.seeds)} seed(s) · ● the lowest cell of each batch size · ✕ every "
        f"seed diverged. Trained at {bs.SAME[same]}."
    )

st.subheader("Best lr per batch size, against linear and √ scaling")
figures.chart(
    "batch_size:ridge",
    result,
    split,
    lambda: batch_charts.ridge_chart(
        batch_charts.ridge_table(report.ridge, report.per_seed, report.lines, report.curves),
        height=200 if present else 240,
    ),
)
st.caption(
    "◆ geometric mean over seeds of each seed's best lr, with its 90 % Student-t interval (cut "
    "at 3× the best lrs' range); "
    "○ each seed · lines through the smallest batch's ◆: lr ∝ B (dashed) and lr ∝ √B "
    "(dotted) · orange: McCandlish's ε_max / (1 + B_noise / B) **fitted** to the ◆ "
    "(least squares in log lr)."
)
for v, fit in zip(report.verdicts, report.fits.itertuples()):
    st.markdown(
        f"**{v.network}**: {v.sentence()} Fit: ε_max = {fit.eps_max:.2g}, "
        f"B_noise = {fit.b_noise:.3g} (rms {fit.rms_decades:.2f} decades)."
    )
st.caption(
    "Linear scaling holds up to B in a seed when at every batch size up to B that seed's best "
    "lr is at least on the dashed line, less one step of the lr grid (a best lr is one of the "
    "grid's). B ≈ the swept batch size nearest the geometric mean over seeds."
)

st.subheader("The gradient noise scale along training")
noise = batch_jobs.noise(sweep, result)
if noise is None:
    st.caption("The noise scale is left out at these settings: it would exceed the cost cap.")
else:
    figures.chart(
        "batch_size:noise",
        noise,
        split,
        lambda: batch_charts.noise_chart(noise, report.fits, height=200 if present else 260),
    )
    init = noise[noise["epoch"] == 0].groupby("network")["noise_scale"].median()
    typical = noise[noise["epoch"] > 0].groupby("network")["noise_scale"].median()
    st.markdown(
        "**Measured:** "
        + " · ".join(
            f"{net}: B_noise **{init[net]:.2g}** at init, median **{typical.get(net, 0):.3g}** "
            "after"
            for net in init.index
        )
    )
    st.caption(
        f"B_noise = tr Σ / |G|² over the training split, at init and along the best-lr run of "
        f"each seed at the reference batch size {sweep.reference}. Without BN: exact, from every "
        "sample's own gradient (torch.func, float64). With BN a sample has no gradient of its "
        f"own: estimated from minibatch gradients at B = {sweep.reference} and at the whole "
        "split (McCandlish et al. App. A, corrected for drawing without replacement; BN's batch "
        "statistics make it depend on that B). Ticks at the right: B_noise of each ridge's fit. "
        "While the loss is large every sample pushes the same way (B_noise < 1); it grows as "
        "training goes."
    )

number = st.column_config.NumberColumn
TABLES = "Best lr per batch size and seed; epochs and steps per batch size"
if box := on_demand(TABLES, "tables_open"):
    with box:
        figures.dataframe(
            report.ridge,
            hide_index=True,
            column_config={c: number(format="%.3g") for c in ("best_lr", "low", "high")},
        )
        figures.dataframe(report.until, hide_index=True)
        figures.dataframe(report.steps, lambda steps: steps.set_index("batch_size").T)
c1, c2 = st.columns(2)
with c1:
    controls.download(result.metrics, "Final loss per run", "bnlr_batch_size_runs.csv")
with c2:
    if noise is not None:
        controls.download(noise, "Noise scale", "bnlr_noise_scale.csv")
controls.code(result.reference)
classroom.finish("batch_size")
