"""Why it happens: the curvature against 2/lr, BatchNorm's effective learning rate, and chaos."""

from dataclasses import replace

import streamlit as st

from bnlr import article, why
from ui import classroom, controls, runner, theme, urlcheck
from ui import why_charts as charts
from ui.page import open_page

DEFAULTS = {**controls.ARTICLE, "lrs": ", ".join(map(str, article.LRS)), "wd": 0.0}

open_page(
    "why",
    "Why it happens",
    "The other pages show *what* the learning rate does. This one shows *why*, with three "
    "measurements that are cheap for networks of ~100 parameters: the curvature of the loss "
    "against the largest stable step, the learning rate BatchNorm really applies, and how "
    "fast two nearly identical runs part. Each run is trained in float64 beside a twin.",
)

with st.sidebar:
    controls.reset_button(DEFAULTS)
    lrs = controls.lr_list(DEFAULTS["lrs"])
    arch = controls.architecture()
    training = controls.training()
    wd = controls.number(
        "Weight decay",
        0.0,
        0.1,
        DEFAULTS["wd"],
        0.001,
        format="%g",
        key="wd",
        help="L2 (SGD, Adam) or decoupled (AdamW): it shrinks ‖w‖, so BN's "
        "effective lr lr/‖w‖² grows again.",
    )
    training["optimizer"] = replace(training["optimizer"], weight_decay=float(wd) or None)
    grid = controls.grid(lrs=lrs, arch=arch, **training)
    estimate = runner.physics_estimate(grid.experiment) if grid is not None else None
    controls.cost_note(grid, seconds=estimate)
urlcheck.finish()

grid, report = controls.last_good("why", grid, lambda g: runner.physics(g.experiment))
epochs, runs = report.epochs, report.runs

# ---------------------------------------------------------------- curvature
st.header("1 · Curvature and the stability wall")
with classroom.folded("The stability wall: lr < 2/λ"):
    st.markdown(
        "Gradient descent on a valley of curvature λ overshoots and grows when the step is too "
        "large: it is stable only for lr < 2/λ (for SGD with momentum μ, lr < 2(1 + μ)/λ). The "
        "curvature that matters is the *sharpness* λ_max, the largest eigenvalue of the Hessian "
        "of the training loss, computed here exactly after every epoch. Cohen et al. (2021) "
        "found that with a large lr the sharpness rises until it **hovers near 2/lr**, the *edge "
        "of stability*, and training goes on there, non-monotonically."
    )
    st.latex(
        r"\text{stable iff}\quad \eta < \frac{2(1+\mu)}{\lambda_{\max}},\qquad "
        r"\lambda_{\max} = \max \operatorname{eig} \nabla^2_\theta L_{\text{train}}(\theta)"
    )
layout = theme.facet(len(grid.lrs), columns=2, width=400)
st.altair_chart(charts.sharpness_chart(epochs, height=140 if theme.presenting() else 200, **layout))
late = epochs[epochs["epoch"] >= max(1, grid.epochs // 2)]
ratio = (late["sharpness"] / late["edge"]).groupby(late["lr"]).median()
st.markdown(
    "Median of λ_max ÷ (2(1 + μ)/lr) over the second half of training, per lr: "
    + ", ".join(f"lr {lr:g}: **{r:.2f}**" for lr, r in ratio.sort_index(ascending=False).items())
    + " (1 = on the edge)."
)
st.caption(
    "λ_max of the full-batch training loss, BatchNorm in train mode on the whole split; dashed: "
    "2(1 + μ)/lr. Minibatch SGD is not full-batch gradient descent, so the wall is not sharp."
)
init = runs.groupby("arch", sort=False)[["sharpness_at_init", "predicted_max_lr"]].mean()
st.dataframe(
    init.rename(
        columns={
            "sharpness_at_init": "λ_max at init",
            "predicted_max_lr": "2(1 + μ) / λ_max(0): predicted max lr",
        }
    )
)

# ---------------------------------------------------------------- BatchNorm
st.header("2 · BatchNorm's effective learning rate")
st.markdown(
    "A weight row w that feeds BatchNorm directly (BN *pre*) does not change the loss when it is "
    "scaled: L(c·w) = L(w). So the gradient is orthogonal to w, and a step of lr turns w by "
    "about lr·‖∇L‖/‖w‖: the rate its direction feels is **lr/‖w‖²**. Every step also lengthens "
    "w (the step is orthogonal), so a large lr inflates ‖w‖ and shrinks its own effective rate: "
    "BatchNorm *auto-tunes* the lr (van Laarhoven 2017; Hoffer et al. 2018; Arora, Li & Lyu "
    "2019). Weight decay shrinks ‖w‖ and keeps the rate up."
)
st.latex(
    r"L(c\,w) = L(w)\ \Rightarrow\ w\cdot\nabla_w L = 0,\qquad "
    r"\eta_{\text{eff}} = \frac{\eta}{\lVert w\rVert^2}"
)
if (epochs["bn"] == "pre").any():
    st.altair_chart(charts.effective_lr_chart(epochs))
    st.caption("Mean over the rows that feed a BatchNorm layer; log scale.")
else:
    st.info("Add the BN placement *pre* in the sidebar to see the effective lr.")
st.altair_chart(charts.invariance_chart(epochs))
inv = epochs.groupby("bn")["invariance"].median()
st.markdown(
    "Scale invariance, measured: the median |w·∇L| / (‖w‖‖∇L‖) of the hidden weight rows is "
    + ", ".join(
        f"**{v:.1e}** with BN {b}" if b != "none" else f"**{v:.1e}** without BN"
        for b, v in inv.items()
    )
    + ". For BN *pre* it is not exactly 0 because nn.BatchNorm1d adds eps = 1e-5 to the "
    "variance, which breaks the invariance at about eps/var."
)

# ---------------------------------------------------------------- chaos
st.header("3 · Chaos: twins part")
st.markdown(
    "Each run has a twin: the same run, its initial weights multiplied by 1 + 1e-8·N(0, 1), the "
    "same batch order. If the twins stay together, one curve describes the run; if their "
    "distance grows exponentially — a positive finite-time **Lyapunov exponent** — a single "
    "curve is one sample of chaos, and only many seeds say anything. This is why the other "
    "pages draw bands over seeds and count their verdicts seed by seed."
)
st.latex(
    r"d_t = \frac{\lVert\theta'_t-\theta_t\rVert}{\lVert\theta_t\rVert},\qquad "
    r"\hat\lambda = \text{slope of } \ln d_t \text{ per epoch}"
)
st.altair_chart(charts.twin_chart(epochs, why.PARTED))
st.altair_chart(charts.lyapunov_chart(runs))
parting = report.parting_lr
said = []
for _, row in parting.iterrows():
    lr = row["parting_lr"]
    said.append(f"{row['arch']}: from lr **{lr:g}**" if lr == lr else f"{row['arch']}: **none**")
counts = runs.groupby("lr")["parted"].agg(["sum", "size"]).sort_index(ascending=False)
st.markdown(
    f"Twins part (distance ≥ {why.PARTED:g}) — " + "; ".join(said) + ". Runs whose twins "
    "parted, per lr: "
    + ", ".join(f"lr {lr:g}: {int(c['sum'])} of {int(c['size'])}" for lr, c in counts.iterrows())
    + "."
)
st.markdown("So: see the claims counted over seeds on [LR sensitivity](lr-sensitivity).")

controls.download(epochs, "Per run and epoch", "bnlr_why.csv")
classroom.finish("why")
