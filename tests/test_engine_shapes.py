"""The batched engine against the reference loop on data shapes other than the article's.

tests/test_engines.py checks the engines on the article's shape only (1000 samples → 700/300,
batches of 50, 5 features), where every batch is full. Here, in float64 at calm lrs, to the same
1e-9 relative on every recorded loss: splits that are no multiple of the batch (a partial last
batch, an odd number of samples to evaluate), batches of 2, 7 and 64, 1, 3 and 10 features, every
BN placement, on both batched paths (the fused kernel and the torch path). Each case trains all
three BN placements side by side, so every data shape meets every placement.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import pytest

import bnlr
from bnlr import DataConfig, Experiment, ModelConfig, RunConfig, fused
from tests.test_engines import assert_same

BNS = ("none", "pre", "post")
LRS = (0.005, 0.002)


@dataclass(frozen=True)
class Case:
    n: int  # samples before the 70/30 split
    batch: int
    features: int
    activation: str
    epochs: int
    bns: tuple[str, ...] = BNS

    @property
    def experiment(self) -> Experiment:
        w = tuple((-1.0) ** k * (0.5 + 0.25 * k) for k in range(self.features))
        runs = tuple(
            RunConfig(ModelConfig((4, 4, 4), self.activation, bn), lr, seed=31)
            for bn in self.bns
            for lr in LRS
        )
        return Experiment(runs, DataConfig(n=self.n, w=w), self.epochs, self.batch, dtype="float64")


# n → (train, test): 1010 → (707, 303), 333 → (233, 100), 257 → (180, 77). A Latin square of
# n × batch × features; every case carries all three BN placements.
CASES = {
    # 707 = 11 · 64 + 3: a last batch of 3; 303 test samples (odd)
    "n1010-b64-f3": Case(1010, 64, 3, "leaky_relu", epochs=20),
    # 233 = 33 · 7 + 2: a last batch of 2, BN's smallest; 233 and 100
    "n333-b7-f10": Case(333, 7, 10, "sigmoid", epochs=12),
    # 180 = 90 · 2: every batch of 2 (BN over two samples); 77 test samples (odd)
    "n257-b2-f1": Case(257, 2, 1, "tanh", epochs=6),
    # 233 = 116 · 2 + 1: a last batch of ONE sample, allowed without BN only (below)
    "n333-b2-f1-last1": Case(333, 2, 1, "relu", epochs=6, bns=("none",)),
}


@cache
def reference(case: Case) -> bnlr.Result:
    """The reference engine's result, once per case for both batched paths."""
    return bnlr.train(case.experiment, "reference")


@pytest.fixture
def kernel_epochs(monkeypatch):
    """Every epoch the fused kernel trains, as the bn of its group: patched on the class, so it
    counts however the engine reaches FusedGroup."""
    seen: list[str] = []
    real = fused.FusedGroup.epoch

    def counting(self, *args, **kwargs):
        seen.append(self.shape.bn)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(fused.FusedGroup, "epoch", counting)
    return seen


@pytest.mark.parametrize("path", ["fused", "torch"])
@pytest.mark.parametrize("name", list(CASES))
def test_batched_matches_reference_on_other_data_shapes(name, path, monkeypatch, kernel_epochs):
    case = CASES[name]
    exp = case.experiment
    assert exp.data.n_features == case.features
    assert (exp.data.n_train % case.batch == 1) == name.endswith("last1")
    monkeypatch.setenv("BNLR_KERNEL", path)  # read by fused.wanted() at every call
    fast = bnlr.train(exp, "batched")
    # the path named really ran: the kernel trained every epoch of every BN group, or none
    for bn in case.bns:
        model = ModelConfig((4, 4, 4), case.activation, bn)
        assert fused.path(model, case.features, "sgd", "float64") == path
    if path == "fused":
        assert sorted(kernel_epochs) == sorted(case.bns * case.epochs)
    else:
        assert kernel_epochs == []
    ref = reference(case)
    assert len(ref.history) == len(exp.runs) * case.epochs * 2
    assert_same(ref, fast)


@pytest.mark.parametrize("bn", ["pre", "post"])
def test_bn_with_a_last_batch_of_one_sample_is_refused(bn):
    # What the engines are promised: never a BN batch of 1 (nn.BatchNorm1d raises in training);
    # the experiment is refused before any training, naming the cause. Without BN the same
    # shape trains, and matches (the "last1" case above).
    data = DataConfig(n=333, w=(1.0,))  # 233 training samples
    runs = (RunConfig(ModelConfig((4, 4, 4), "tanh", bn), 0.005),)
    with pytest.raises(ValueError, match="last batch of 1 sample"):
        Experiment(runs, data, 3, 2, dtype="float64")
    with pytest.raises(ValueError, match="BatchNorm needs at least 2"):
        Experiment(runs, data, 3, 1, dtype="float64")
    Experiment(runs, data, 3, 7, dtype="float64")  # 233 = 33 · 7 + 2: fine
