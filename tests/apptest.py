"""One page of the app in Streamlit's AppTest, for the app tests."""

import json
from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 300  # 2 shared cores: a cold run trains and imports torch


def page(name: str, **params) -> AppTest:
    """Runs ``pages/<name>`` with these URL parameters."""
    at = AppTest.from_file(str(ROOT / "pages" / name), default_timeout=TIMEOUT)
    for key, value in params.items():
        at.query_params[key] = value
    return at.run()


def charts(at: AppTest) -> list[dict]:
    """The Vega-Lite specs the page drew."""
    return [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]
