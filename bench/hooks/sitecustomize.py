"""Bench-only: counts trainings in the app's server without touching the app.

bench/load.py and bench/memory.py start the server with PYTHONPATH=bench/hooks, so Python imports
this file at start-up. It wraps ``bnlr.train`` to print one line per call to the server's log:
``bnlr-bench train <runs>x<epochs> <id of the experiment>``. Streamlit's cache calls ``bnlr.train``
only on a miss, so the number of lines is the number of trainings the server actually ran.
"""

import functools
import hashlib
import sys
import threading
from pathlib import Path

sys.path.append(
    str(Path(__file__).resolve().parents[2])
)  # the repo, for bnlr (site runs before the app's path is set)
import bnlr

_train = bnlr.train
_lock = threading.Lock()


@functools.wraps(_train)
def train(what, *args, **kwargs):
    experiment = getattr(what, "experiment", what)
    ident = hashlib.sha1(repr(experiment).encode()).hexdigest()[:12]
    with _lock:
        print(
            f"bnlr-bench train {len(experiment.runs)}x{experiment.epochs} {ident}",
            file=sys.stderr,
            flush=True,
        )
    return _train(what, *args, **kwargs)


bnlr.train = train
