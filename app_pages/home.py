"""Home: what bnlr shows, the article's three claims, how to read the charts, and where to go."""

import streamlit as st

from bnlr import claims
from bnlr.evidence import sentence
from ui import charts, claims_jobs, classroom, figures
from ui.page import open_page
from ui.runner import COST_CAP_S, SLOTS

N = claims.REPLICATION_SEEDS

open_page(
    "home",
    "How the learning rate shapes training — with and without BatchNorm",
    "A lab for small neural networks: tanh MLPs learn a noisy quadratic regression "
    "(y = (X²)·w + noise, 1000 samples, 70 % train) with plain SGD. Every number comes from "
    "PyTorch itself; many networks train at once, so the charts answer in seconds.",
)

st.header("The article's three claims, checked over 20 seeds")
with classroom.folded("Why 20 seeds"):
    st.markdown(
        "One seed is one sample: at the article's larger learning rates these networks are "
        f"chaotic. So each claim is checked at the article's setup over the {N} seeds "
        f"929–{928 + N}: in how many seeds it holds, and a 90 % interval for its effect."
    )
CLAIMS = {
    1: (
        "BatchNorm models react more to the learning rate",
        "Four MLPs (3 or 4 hidden layers of width 4, with and without BN) at lr 0.1, 0.03, 0.01, "
        "0.005 for 40 epochs. Effect: BN's LR sensitivity minus the plain models'.",
        "BN models react **{word}** to the learning rate than plain ones",
        "more",
        "app_pages/lr_sensitivity.py",
        "LR sensitivity",
        "📈",
    ),
    2: (
        "Final loss against the lr is U-shaped",
        "Too small: it cannot get there in the epochs given; too large: it oscillates or jumps "
        "over the minimum. 16 lrs from 1e-4 to 1. Effect: how much worse the better end is.",
        "U-shaped: **{word}**, the best lr is inside the grid for every network",
        "yes",
        "app_pages/lr_curve.py",
        "LR learning curve",
        "🥣",
    ),
    3: (
        "Lowering the lr while training beats a constant lr",
        f"Géron's exponential scheduling ({claims.SCHEDULE}) against a constant lr, both from "
        f"lr {claims.SCHEDULE_LR} and the same initial weights. Effect: decades of final loss.",
        "the schedule ends **{word}** than the constant lr",
        "lower",
        "app_pages/scheduler_playground.py",
        "Scheduler playground",
        "🗓️",
    ),
}
# The cards and the rest of the page are drawn first; the verdicts fill in once trained (cached).
slots = {}
for col, (number, (title, setup, _, _, page, label, icon)) in zip(st.columns(3), CLAIMS.items()):
    with col, st.container(border=True):
        st.markdown(f"**{number} · {title}.** {setup}")
        slots[number] = st.empty()
        slots[number].caption(f"Training the article's setup over {N} seeds…")
        st.page_link(page, label=label, icon=icon)

st.header("How to read the charts")
st.markdown(f"""
- **Colour = network** (depth × width, activation); **dash = BatchNorm**: solid no BN, dashed BN
  *pre* (Linear → BN → activation), dotted BN *post*. Click a legend entry to highlight it.
- **Band = the seeds.** With several seeds the line is their geometric mean and the band their
  spread (mean ± 1 sd of log10 loss, or min–max): a difference smaller than the band is noise.
- **Log loss axis** by default: losses span decades. **✕** marks where a run diverged (loss not
  finite); its curve stops there.
- Runs that differ only in the learning rate **share their initial weights and batch order**: the
  lr is the only thing that changed.
- **Training controls** are in the sidebar (they retrain, cached: a second visit is instant);
  **display controls** above the charts (train / test, log axis, band) never retrain. The URL holds
  every setting: copy it to share exactly what you see. *Reset to the article's setup* brings back
  the article.
- One request may train for at most {COST_CAP_S:g} s, estimated on this server before anything
  trains (a larger setting is refused, naming the controls to lower); at most {SLOTS} trainings run
  at once and the others queue, first come first served.
""")

for number, (_, _, subject, yes, *_) in CLAIMS.items():  # each card as its verdict comes
    judged = claims_jobs.article_claim(number, N)
    v = judged.verdict
    with slots[number].container():
        st.metric(
            f"holds in (of {v.seeds} seeds)",
            f"{v.seeds_holding}",
            help="seeds in which the effect is > 0",
        )
        st.markdown(sentence(v, subject, yes))
        if v.answered:  # the evidence: each seed's effect, the 90 % interval, and 0

            def strip(judged=judged, v=v):
                chart = charts.effect_strip(
                    judged.effects, v.low, v.high, v.unit, width=300, compact=True
                )
                return classroom.stretched(chart)

            figures.chart(f"home:{number}", judged.effects, (), strip, stretch=True)
classroom.finish("home")
