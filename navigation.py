"""bnlr's script: it only routes (st.navigation over the pages in app_pages/).

Served by streamlit_app.py. The pages live in ``app_pages/``, not ``pages/``: a ``pages/`` folder
beside the script switches Streamlit to its older multipage mode as well, and then a deep link
opened first on a freshly started server showed "Page not found" (tests/e2e/test_cold_start.py).
"""

import streamlit as st

from ui import theme
from ui.admission import ADMISSION

# presentation mode starts with the sidebar collapsed (one click opens it): the chart gets the room
st.set_page_config(
    page_title="bnlr · learning rates & BatchNorm",
    page_icon="📉",
    layout="wide",
    initial_sidebar_state="collapsed" if theme.wants_present() else "auto",
)

pages = [
    st.Page("app_pages/home.py", title="Home", icon="🏠", default=True),
    st.Page(
        "app_pages/lr_sensitivity.py", title="LR sensitivity", icon="📈", url_path="lr-sensitivity"
    ),
    st.Page("app_pages/lr_curve.py", title="LR learning curve", icon="🥣", url_path="lr-curve"),
    st.Page(
        "app_pages/scheduler_playground.py",
        title="Scheduler playground",
        icon="🗓️",
        url_path="schedules",
    ),
    st.Page("app_pages/why.py", title="Why it happens", icon="🔬", url_path="why"),
    st.Page("app_pages/batch_size.py", title="Batch size", icon="📦", url_path="batch-size"),
]
page = st.navigation(pages)
present = st.sidebar.toggle(
    "Presentation mode",
    key=theme.PRESENT_KEY,
    bind="query-params",
    help="Larger text, chart fonts and lines for a projector. Share it as `?present=true`.",
)
theme.use(present)
place = st.empty()


def show_place(ahead: int) -> None:
    who = f"{ahead} visitor{'s' * (ahead != 1)} ahead of you" if ahead else "You are next"
    place.info(
        f"⏳ {who}: this server builds {ADMISSION.limit} pages at a time, first come first served."
    )


with ADMISSION.turn(show_place):  # a class arriving at once: pages built a few at a time
    place.empty()
    page.run()
