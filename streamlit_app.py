"""bnlr's entry point: ``streamlit run streamlit_app.py`` serves navigation.py (the pages) and
warms the server up as it starts (``ui.server.start``): a visitor who comes first, or follows a
deep link to a freshly woken server, does not wait for imports, calibration or kernels.

An ``st.App`` with a lifespan hook is Streamlit's way to run code when the server starts; a plain
script only runs when a visitor opens a page.
"""

from contextlib import asynccontextmanager

import streamlit as st


@asynccontextmanager
async def lifespan(_app):
    from ui import server

    server.start()  # the process-wide settings now; the warm-up goes on in a thread
    yield


app = st.App("navigation.py", lifespan=lifespan)
