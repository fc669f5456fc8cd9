import os
import tempfile

import pytest
import streamlit as st
import torch
from apptest import compile_scripts_once, scan_components_once

import bnlr

# The suite's own kernel cache: empty when it starts, shared by the servers it starts.
os.environ["BNLR_KERNEL_CACHE"] = tempfile.mkdtemp(prefix="bnlr-kernels-")
scan_components_once()  # one scan of installed components for all AppTests, as a server does
compile_scripts_once()  # and each script compiled once
# Tiny tensors gain nothing from intra-op threads; on a shared 2-core machine they only spin.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def kernels_compile_when_needed(monkeypatch):
    """Every test trains on the path it names: the fused kernel wherever it applies, compiled
    on first use, even after ``ui.runner`` (imported by the app tests) switched the process to
    background compiles."""
    from bnlr import fused

    monkeypatch.setattr(fused.COMPILER, "background", False)


@pytest.fixture
def trainings(monkeypatch):
    """Returns the list of experiments bnlr.train was called with (the cache hides repeats)."""
    from ui import runner

    st.cache_data.clear()
    runner.clear_cache()
    seen = []
    real = bnlr.train

    def counting(experiment, *args, **kwargs):
        seen.append(experiment)
        return real(experiment, *args, **kwargs)

    monkeypatch.setattr(bnlr, "train", counting)
    yield seen
    st.cache_data.clear()
    runner.clear_cache()


@pytest.fixture
def uncapped(monkeypatch):
    """Lifts the demo's cost cap, for tests of what a page shows at settings the cap accepts with
    the fused kernel: on the torch path (``BNLR_KERNEL=torch``) or a slower host the cap refuses
    some of them (the batch-size page's default, LR sensitivity's 20-seed replication), as it
    should. The cap has tests of its own (test_app_demo.py, test_cost.py)."""
    from ui import runner

    monkeypatch.setattr(runner, "COST_CAP_S", float("inf"))
