import pytest
import streamlit as st
import torch

import bnlr

# Tiny tensors gain nothing from intra-op threads; on a shared 2-core machine they only spin.
torch.set_num_threads(1)


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
