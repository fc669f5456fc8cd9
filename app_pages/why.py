"""Why it happens: the curvature against 2/lr, BatchNorm's effective learning rate, and chaos."""

from dataclasses import replace

import streamlit as st

from bnlr import Grid, article, edge, why
from bnlr.evidence import sentence
from ui import classroom, controls, edge_charts, figures, theme, urlcheck, why_jobs
from ui import why_charts as charts
from ui.page import on_demand, open_page

DEFAULTS = {
    **controls.ARTICLE,
    "lrs": ", ".join(map(str, article.LRS)),
    "wd": 0.0,
    "wall_seeds": 3,  # past the wall: seeds 929, 930, ...
}

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
    wall_seeds = int(
        controls.number(
            "Past the wall: seeds",
            1,
            10,
            DEFAULTS["wall_seeds"],
            1,
            key="wall_seeds",
            help="Section 4's full-batch gradient descent runs from seeds 929, 930, …: its "
            "verdicts count seeds.",
        )
    )
    grid = controls.grid(lrs=lrs, arch=arch, **training)
    estimate = why_jobs.physics_estimate(grid.experiment) if grid is not None else None
    controls.cost_note(grid, seconds=estimate)
urlcheck.finish()


def sharpness_figure(name: str, rep: why.WhyReport, g: Grid, only=None) -> None:
    """Section 1's chart: λ_max (λ_max(P⁻¹H) for Adam) per epoch against the optimizer's wall;
    ``only``: after those epochs only."""
    adam = g.optimizer.name in ("adam", "adamw")
    field = "preconditioned_sharpness" if adam else "sharpness"
    title = "λ_max(P⁻¹H), preconditioned" if adam else "sharpness λ_max"
    size = {
        **theme.facet(len(g.lrs), columns=2, width=theme.PANEL_PX),
        "height": 140 if theme.presenting() else 200,
    }
    shown = rep.epochs if only is None else rep.epochs[rep.epochs["epoch"].isin(only)]
    figures.chart(name, rep, field, lambda: charts.sharpness_chart(shown, field, title, **size))


first = st.empty()  # while the Hessians of every epoch are measured: those of a few epochs


def draw_first(coarse: why.WhyReport, g: Grid) -> None:
    with first.container():
        st.header("1 · Curvature and the stability wall")
        measured = why.preview_epochs(g.epochs)
        sharpness_figure("why:sharpness_preview", coarse, g, only=measured)
        st.caption(
            f"A first look: λ_max after epochs {', '.join(map(str, measured))}. "
            "Every epoch follows."
        )


grid, report = controls.last_good(
    "why", grid, lambda g: why_jobs.physics(g.experiment, lambda c: draw_first(c, g))
)
first.empty()
epochs, runs = report.epochs, report.runs
adam = grid.optimizer.name in ("adam", "adamw")
beta1 = grid.optimizer.betas[0]
asked = classroom.ask("why")
QUIZ_45 = ("past_wall", "warmup")  # the quizzes sections 4 and 5 answer (SGD only)

# ---------------------------------------------------------------- curvature
st.header("1 · Curvature and the stability wall")
threshold = (2 + 2 * beta1) / (1 - beta1)  # Adam's wall × lr: 38 at β₁ = 0.9
if adam:
    with classroom.folded("Adam's stability wall: λ_max(P⁻¹H) < (2 + 2β₁)/((1 − β₁)·lr)"):
        st.markdown(
            "Adam does not step along the gradient: it divides each coordinate by "
            "P = sqrt(v̂) + eps, from its own running mean v̂ of the squared gradient, and adds "
            "momentum β₁. Near a minimum, with P frozen, that is heavy-ball momentum on the "
            "*preconditioned* Hessian P⁻¹H, so the curvature that matters is the "
            "**preconditioned sharpness** λ_max(P⁻¹H), and Adam is stable only while it stays "
            f"below (2 + 2β₁)/((1 − β₁)·lr), **{threshold:.3g}/lr** at β₁ = {beta1:g}. Cohen et "
            "al. (2022) found that full-batch Adam's preconditioned sharpness rises until it "
            "hovers there: the *adaptive edge of stability*. Here P is Adam's own state after "
            "every epoch (replayed in float64 from each run's weights, batch order and lrs), "
            "and λ_max(P⁻¹H) is exact: the top eigenvalue of P^{-1/2} H P^{-1/2}."
        )
        st.latex(
            r"\text{stable iff}\quad \lambda_{\max}(P^{-1}H)"
            r" < \frac{2+2\beta_1}{(1-\beta_1)\,\eta},"
            r"\qquad P = \operatorname{diag}\big(\sqrt{\hat v} + \epsilon\big)"
        )
else:
    with classroom.folded("The stability wall: lr < 2/λ"):
        st.markdown(
            "Gradient descent on a valley of curvature λ overshoots and grows when the step is "
            "too large: it is stable only for lr < 2/λ (for SGD with momentum μ, "
            "lr < 2(1 + μ)/λ). The curvature that matters is the *sharpness* λ_max, the largest "
            "eigenvalue of the Hessian of the training loss, computed here exactly after every "
            "epoch. Cohen et al. (2021) found that with a large lr the sharpness rises until it "
            "**hovers near 2/lr**, the *edge of stability*, and training goes on there, "
            "non-monotonically."
        )
        st.latex(
            r"\text{stable iff}\quad \eta < \frac{2(1+\mu)}{\lambda_{\max}},\qquad "
            r"\lambda_{\max} = \max \operatorname{eig} \nabla^2_\theta L_{\text{train}}(\theta)"
        )
sharpness_figure("why:sharpness", report, grid)
field = "preconditioned_sharpness" if adam else "sharpness"
late = epochs[epochs["epoch"] >= max(1, grid.epochs // 2)]
ratio = (late[field] / late["edge"]).groupby(late["lr"]).median()
wall = f"{threshold:.3g}/lr" if adam else "2(1 + μ)/lr"
st.markdown(
    f"Median of {'λ_max(P⁻¹H)' if adam else 'λ_max'} ÷ ({wall}) over the second half of "
    "training, per lr: "
    + ", ".join(f"lr {lr:g}: **{r:.2f}**" for lr, r in ratio.sort_index(ascending=False).items())
    + " (1 = on the edge)."
)
if adam:
    st.caption(
        "λ_max(P⁻¹H): H the exact Hessian of the full-batch training loss (BatchNorm in train "
        "mode on the whole split), P = diag(sqrt(v̂) + eps) Adam's second moment after that "
        f"epoch; dashed: (2 + 2β₁)/((1 − β₁)·lr) = {threshold:.3g}/lr. Adam has no state at "
        "init, so each curve starts after epoch 1. Mini-batches make the wall soft."
    )
    figures.dataframe(  # (threshold: the result's optimizer's)
        runs,
        lambda runs: (
            runs.groupby(["arch", "lr"], sort=False)[
                ["sharpness_at_init", "preconditioned_at_epoch_1", "predicted_max_lr"]
            ]
            .mean()
            .rename(
                columns={
                    "sharpness_at_init": "λ_max(H) at init",
                    "preconditioned_at_epoch_1": "λ_max(P⁻¹H) after epoch 1",
                    "predicted_max_lr": f"{threshold:.3g} / λ_max(P⁻¹H): predicted max lr",
                }
            )
        ),
    )
else:
    st.caption(
        "λ_max of the full-batch training loss, BatchNorm in train mode on the whole split; "
        "dashed: 2(1 + μ)/lr. Minibatch SGD is not full-batch gradient descent, so the wall is "
        "not sharp; and even full-batch gradient descent trains past it (section 4)."
    )
    figures.dataframe(
        runs,
        lambda runs: (
            runs.groupby("arch", sort=False)[["sharpness_at_init", "predicted_max_lr"]]
            .mean()
            .rename(
                columns={
                    "sharpness_at_init": "λ_max at init",
                    "predicted_max_lr": "2(1 + μ) / λ_max(0): predicted max lr",
                }
            )
        ),
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
    figures.chart("why:effective_lr", report, (), lambda: charts.effective_lr_chart(epochs))
    st.caption("Mean over the rows that feed a BatchNorm layer; log scale.")
else:
    st.info("Add the BN placement *pre* in the sidebar to see the effective lr.")
figures.chart("why:invariance", report, (), lambda: charts.invariance_chart(epochs))
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
figures.chart("why:twins", report, (), lambda: charts.twin_chart(epochs, why.PARTED))
figures.chart("why:lyapunov", report, (), lambda: charts.lyapunov_chart(runs))
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

# ---------------------------------------------------------------- past the wall
st.header("4 · Past the wall" if adam else "4 · Past the wall: gradient descent beyond 2/λ₀")
if adam:
    st.info(
        "Sections 4 and 5 measure plain gradient descent and SGD, whose wall is set by λ_max "
        "alone; choose the optimizer SGD in the sidebar to see them.",
        icon="ℹ️",
    )
    if asked and asked.name in QUIZ_45:  # its answer is measured with SGD only
        asked.box.info(
            "This question is answered by sections 4 and 5, which measure gradient descent and "
            "SGD: choose the optimizer SGD in the sidebar to see the answer.",
            icon="ℹ️",
        )
else:
    st.markdown(
        "On a quadratic, gradient descent diverges for any lr above 2/λ. A network is not a "
        "quadratic. Here every network of the sidebar starts from its seed's initial weights "
        "and takes full-batch gradient steps (no mini-batch noise, float64) at "
        "lr = factor × 2/λ₀, λ₀ its sharpness at init, with the exact λ_max every "
        f"{why_jobs.PAST_EVERY} steps. Each run is classified by what it did:\n\n"
        "- **lazy**: λ_max stays below 2/lr at every measured step, the loss never rises above "
        "its start;\n"
        "- **edge of stability**: λ_max at or above 2/lr at some step while the loss ends below "
        "its start, falling non-monotonically: the sharpness regulates itself at the wall "
        "(Cohen et al. 2021; self-stabilisation, Damian et al. 2023);\n"
        "- **catapult**: the loss spikes above its start, then ends below it with λ_max under "
        "2/lr: the run was thrown to a flatter region (Lewkowycz et al. 2020);\n"
        "- **diverged**: the loss ends at or above its start (or is no longer finite)."
    )
    models = tuple(dict.fromkeys(r.model for r in grid.experiment.runs))
    seeds = tuple(range(article.SEED, article.SEED + wall_seeds))
    past = edge.Past(
        models, seeds, steps=why_jobs.PAST_STEPS, every=why_jobs.PAST_EVERY, data=grid.data
    )
    try:
        wall_report = why_jobs.past_the_wall(past)
    except ValueError as e:
        st.warning(str(e), icon="⚠️")
        wall_report = None
    if wall_report is not None:
        if asked and asked.name == "past_wall":
            classroom.reveal(asked, edge.past_wall_answer(wall_report.runs, asked.guess))
        figures.chart(
            "why:outcomes", wall_report, (), lambda: edge_charts.outcome_chart(wall_report.runs)
        )
        largest = wall_report.largest
        said = "; ".join(
            f"{net}: **{d['largest_factor'].min():g}–{d['largest_factor'].max():g}×**"
            if d["largest_factor"].nunique() > 1
            else f"{net}: **{d['largest_factor'].iloc[0]:g}×**"
            for net, d in largest.groupby("network", sort=False)
        )
        st.markdown(
            f"**How far past 2/λ₀ each network trains** (the largest factor below which every "
            f"factor trained, over seeds {seeds[0]}–{seeds[-1]}): {said}. **BN vs no BN:** "
            + sentence(
                wall_report.bn,
                "BN networks survive **{word}** factors past their own 2/λ₀ than plain ones",
                "larger",
            )
        )
        if steps := on_demand("The loss and λ_max of every run, step by step", "steps_open"):
            with steps:
                figures.chart(
                    "why:past_loss",
                    wall_report,
                    (),
                    lambda: edge_charts.loss_chart(wall_report.trajectories),
                )
                figures.chart(
                    "why:past_sharpness",
                    wall_report,
                    (),
                    lambda: edge_charts.sharpness_chart(wall_report.trajectories),
                )
                st.caption(
                    "One panel per factor of 2/λ₀; one line per network and seed. λ_max ÷ (2/lr) "
                    "above 1 (dashed) means the run sits past its own wall."
                )
        figures.dataframe(
            largest,
            lambda largest: largest.rename(
                columns={
                    "wall_at_init": "2/λ₀",
                    "largest_factor": "largest trainable factor",
                    "largest_lr": "its lr",
                    "first_diverged_factor": "first diverged factor",
                }
            ),
            hide_index=True,
        )
        st.caption(
            f"Full-batch gradient descent, {past.steps} steps, from the sidebar's networks; "
            "`python -m bnlr catapult` writes every step (200 by default, λ_max at each)."
        )

    # ---------------------------------------------------------------- warmup
    st.header("5 · Warmup: the schedule built on this wall")
    st.markdown(
        "Early in training the sharpness is highest and the wall lowest. A linear warmup starts "
        "the lr small and raises it over the first epochs, so the network can flatten first "
        "(Gilmer et al. 2021; Kalra & Barkeshli 2024). Below, the article's four networks "
        "(mini-batch SGD, 40 epochs) over a log grid of 16 lrs from 0.1 to 1, seeds 929–931: "
        "the largest lr below which no run diverged, against the warmup length. Try one in "
        "the [Scheduler playground](schedules) (*linear · LinearLR*)."
    )
    warm = why_jobs.warmup(edge.warmup_grid(Grid()))  # (built once: cached)

    def warm_tables():  # once per server (ui.figures)
        table = warm.pivot_table(
            index="network", columns="warmup_epochs", values="largest_lr", aggfunc="median"
        )
        return edge.warmup_verdict(warm), table.rename(columns=lambda w: f"{w} epochs")

    warm_verdict, warm_table = figures.shared("why:warm_tables", warm, (), warm_tables)
    if asked and asked.name == "warmup":
        classroom.reveal(asked, edge.warmup_answer(warm_verdict, asked.guess))
    figures.chart("why:warmup", warm, (), lambda: edge_charts.warmup_chart(warm))
    st.markdown(
        "**Warmup:** "
        + sentence(
            warm_verdict,
            f"a {max(edge.WARMUP_EPOCHS)}-epoch warmup makes the largest trainable lr **{{word}}**",
            "higher",
        )
    )
    figures.dataframe(
        warm_table,
        column_config={
            f"{w} epochs": st.column_config.NumberColumn(format="%.3g") for w in edge.WARMUP_EPOCHS
        },
    )
    st.caption(
        "Median over seeds of the largest trainable lr; linear warmup from lr/100 to lr, stepped "
        "every batch (LinearLR)."
    )

controls.download(epochs, "Per run and epoch", "bnlr_why.csv")
classroom.finish("why")
