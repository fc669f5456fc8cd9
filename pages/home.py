"""Home: what bnlr shows, the article's three claims, how to read the charts, and where to go."""

import streamlit as st

from ui.runner import WORK_CAP

st.title("How the learning rate shapes training — with and without BatchNorm")
st.markdown(
    "A lab for small neural networks: tanh MLPs learn a noisy quadratic regression "
    "(y = (X²)·w + noise, 1000 samples, 70 % train) with plain SGD. Every number comes from "
    "PyTorch itself; many networks train at once, so the charts answer in seconds."
)

st.header("The article's three claims")
c1, c2, c3 = st.columns(3)
with c1, st.container(border=True):
    st.markdown(
        "**1 · BatchNorm models react more to the learning rate.** Four MLPs (3 or 4 hidden layers "
        "of width 4, with and without BN) at lr 0.1, 0.03, 0.01, 0.005 for 40 epochs: the BN curves "
        "move most when the lr changes. *Check it with numbers.*"
    )
    st.page_link("pages/lr_sensitivity.py", label="LR sensitivity", icon="📈")
with c2, st.container(border=True):
    st.markdown(
        "**2 · Final loss against the lr is U-shaped.** Too small: it cannot get there in the "
        "epochs given. Too large: it oscillates or jumps over the minimum. *Sweep it, and compare "
        "an LR range test's suggestion with the sweep.*"
    )
    st.page_link("pages/lr_curve.py", label="LR learning curve", icon="🥣")
with c3, st.container(border=True):
    st.markdown(
        "**3 · Schedules change the rate while training.** Power, exponential, piecewise, "
        "performance (ReduceLROnPlateau), cyclic / 1cycle, and LambdaLR: "
        "lr = lr_lambda(epoch) · initial_lr."
    )
    st.page_link("pages/scheduler_playground.py", label="Scheduler playground", icon="🗓️")

st.header("How to read the charts")
st.markdown(f"""
- **Colour = network** (depth × width, activation); **dash = BatchNorm**: solid no BN, dashed BN *pre*
  (Linear → BN → activation), dotted BN *post*. Click a legend entry to highlight it.
- **Band = the seeds.** With several seeds the line is their geometric mean and the band their spread
  (mean ± 1 sd of log10 loss, or min–max): a difference smaller than the band is noise.
- **Log loss axis** by default: losses span decades. **✕** marks where a run diverged (loss not finite);
  its curve stops there.
- Runs that differ only in the learning rate **share their initial weights and batch order**: the lr is
  the only thing that changed.
- **Training controls** are in the sidebar (they retrain, cached: a second visit is instant); **display
  controls** above the charts (train / test, log axis, band) never retrain. The URL holds every setting:
  copy it to share exactly what you see. *Reset to the article's setup* brings back the article.
- One request may train at most {WORK_CAP:,} sample-steps (runs × epochs × training samples).
""")
