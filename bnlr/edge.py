"""Past the stability wall: full-batch gradient descent at lr = factor × 2/λ₀, and what it does.

Gradient descent on a quadratic of curvature λ diverges for lr > 2/λ. A network's loss is not a
quadratic: started past the wall 2/λ₀ (λ₀ the sharpness at its initial weights) it may still train,
by one of three routes, each measured here from the loss at every step and the exact λ_max
(``bnlr.sharpness``) every ``every`` steps:

- **lazy**: λ stays below 2/lr at every measured step, and the loss never rises above its start;
- **edge of stability**: λ at or above 2/lr at some measured step while the loss ends below its
  start, falling non-monotonically: the run sits at the wall and the sharpness regulates itself
  (self-stabilisation; Cohen et al. 2021, Damian et al. 2023);
- **catapult**: the loss spikes above its start, then falls below it, ending with λ below 2/lr:
  the run was thrown to a flatter region (Lewkowycz et al. 2020);
- **diverged**: the loss ends at or above its start, or not finite (a run whose loss passes
  ``BLOWN`` × its start is stopped there).

Full batch (no mini-batch noise) from the pages' initial weights (``protocol.start``), float64,
BatchNorm in train mode on the whole training split. ``largest_trainable`` is, per network and
seed, the largest factor below which every factor of the grid trained. ``warmup`` does the same
for mini-batch SGD at the article's setup against the length of a linear warmup (Gilmer et al.
2021; Kalra & Barkeshli 2024).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
import pandas as pd
import torch

from . import evidence
from .config import DataConfig, Grid, ModelConfig, RunConfig
from .data import make_data
from .history import Cancelled

FACTORS = (0.5, 0.8, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0)  # lr ÷ 2/λ₀
BLOWN = 1e6  # a loss this many times its start: diverged, stopped
CLASSES = ("lazy", "edge of stability", "catapult", "diverged")
WARMUP_EPOCHS = (0, 1, 2, 5, 10)
WARMUP_START = 0.01  # linear warmup from lr · this to lr (LinearLR's start_factor)


@dataclass(frozen=True)
class Past:
    """Full-batch gradient descent past the wall: what runs, and how often λ_max is measured."""

    models: tuple[ModelConfig, ...]  # the networks
    seeds: tuple[int, ...] = (929, 930, 931)  # initial weights
    factors: tuple[float, ...] = FACTORS  # lr = factor × 2/λ₀
    steps: int = 200  # gradient-descent steps
    every: int = 20  # λ_max at steps 0, every, 2·every, ... and the last (0: only at step 0)
    data: DataConfig = DataConfig()

    def __post_init__(self):
        if self.steps < 1 or self.every < 0:
            raise ValueError(f"steps must be ≥ 1 and every ≥ 0, got {self.steps}, {self.every}")
        if not self.factors or min(self.factors) <= 0:
            raise ValueError(f"factors must be > 0, got {self.factors!r}")
        if not self.models or not self.seeds:
            raise ValueError("Past needs at least one network and one seed")

    @property
    def runs(self) -> int:
        return len(self.models) * len(self.seeds) * len(self.factors)

    def measured(self, step: int) -> bool:
        """Whether λ_max is computed after ``step`` steps."""
        if self.every == 0:
            return step == 0
        return step == 0 or step == self.steps or step % self.every == 0


def initial_flat(model: ModelConfig, seed: int, data) -> np.ndarray:
    """The flat initial parameters of ``model`` for ``seed`` (the pages' initial weights)."""
    from .protocol import start
    from .why import _flat_init

    layers, _ = start(RunConfig(model, 0.1, seed=seed), data, 1)
    return _flat_init(model, layers, data.X_train.shape[1])


def trajectories(past: Past, cancel=None) -> pd.DataFrame:
    """Returns one row per network × seed × factor × step (0 = the initial weights): network,
    bn, seed, factor, lr, step, loss (the full-batch train loss after that many steps) and
    sharpness (λ_max there; NaN where not measured or after a run is stopped)."""
    from .sharpness import losses_and_gradients, sharpness

    data = make_data(past.data, torch.float64)
    X, y = data.X_train, data.y_train
    frames = []
    for model in past.models:
        if cancel is not None and cancel():
            raise Cancelled()
        init = np.stack([initial_flat(model, s, data) for s in past.seeds])
        lam0 = sharpness(model, init, X, y)
        F, S = len(past.factors), len(past.seeds)
        p = np.repeat(init, F, axis=0)  # (S·F, P): seed-major
        lr = (np.array(past.factors)[None, :] * 2 / lam0[:, None]).reshape(-1)
        loss = np.full((past.steps + 1, S * F), np.nan)
        lam = np.full_like(loss, np.nan)
        lam[0] = np.repeat(lam0, F)
        alive = np.ones(S * F, dtype=bool)
        for t in range(past.steps + 1):
            with np.errstate(all="ignore"):
                loss[t, alive], g = losses_and_gradients(model, p[alive], X, y)
            if t and past.measured(t):
                ok = alive & np.isfinite(loss[t])
                if ok.any():
                    lam[t, ok] = sharpness(model, p[ok], X, y)
            blown = alive & ~(loss[t] < BLOWN * loss[0])  # NaN too
            if t == past.steps:
                break
            p[alive] -= lr[alive, None] * g
            alive &= ~blown
            if cancel is not None and t % 50 == 49 and cancel():
                raise Cancelled()
        steps = np.arange(past.steps + 1)
        for k in range(S * F):
            frames.append(
                pd.DataFrame(
                    {
                        "network": model.label,
                        "bn": model.bn,
                        "seed": past.seeds[k // F],
                        "factor": past.factors[k % F],
                        "lr": lr[k],
                        "step": steps,
                        "loss": loss[:, k],
                        "sharpness": lam[:, k],
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


def classify(loss, sharpness, lr: float) -> str:
    """Returns what a run did (one of ``CLASSES``) from its loss per step (step 0 first) and its
    λ_max per step (NaN where not measured), at ``lr``; see the module docstring.

    >>> classify([10, 8, 6, 5], [1, float("nan"), float("nan"), 1.5], lr=0.5)  # 2/lr = 4
    'lazy'
    """
    loss, lam = np.asarray(loss, float), np.asarray(sharpness, float)
    start, end = loss[0], loss[-1]
    if not (np.isfinite(end) and end < start):
        return "diverged"
    wall = 2 / lr
    measured = lam[np.isfinite(lam)]
    last = measured[-1] if len(measured) else np.nan
    if np.nanmax(loss) > start and last < wall:
        return "catapult"
    if len(measured) and (measured < wall).all() and np.nanmax(loss) <= start:
        return "lazy"
    return "edge of stability"


def runs_table(traj: pd.DataFrame) -> pd.DataFrame:
    """Returns one row per run (network, bn, seed, factor, lr): λ₀, the largest and last measured
    λ_max, the loss at start, peak and end, the share of steps the loss rose, and its class."""
    rows = []
    for (net, bn, seed, factor), d in traj.groupby(["network", "bn", "seed", "factor"], sort=False):
        loss, lam = d["loss"].to_numpy(), d["sharpness"].to_numpy()
        lr = float(d["lr"].iloc[0])
        finite = lam[np.isfinite(lam)]
        with np.errstate(invalid="ignore"):
            rose = np.diff(loss) > 0
        rows.append(
            {
                "network": net,
                "bn": bn,
                "seed": seed,
                "factor": factor,
                "lr": lr,
                "wall": 2 / lr,
                "sharpness_at_init": lam[0],
                "max_sharpness": finite.max() if len(finite) else np.nan,
                "last_sharpness": finite[-1] if len(finite) else np.nan,
                "start_loss": loss[0],
                "peak_loss": np.nanmax(loss),
                "final_loss": loss[-1],
                "rose": float(rose.mean()),
                "outcome": classify(loss, lam, lr),
            }
        )
    return pd.DataFrame(rows)


def largest_trainable(runs: pd.DataFrame) -> pd.DataFrame:
    """Returns per network and seed the largest factor below which every factor trained (NaN if
    the smallest diverged), its lr, and the first diverged factor (NaN: none)."""
    rows = []
    for (net, bn, seed), d in runs.groupby(["network", "bn", "seed"], sort=False):
        d = d.sort_values("factor")
        bad = d["outcome"] == "diverged"
        first = d.loc[bad, "factor"].min() if bad.any() else np.nan
        ok = d[~bad & ((d["factor"] < first) if bad.any() else True)]
        best = ok["factor"].max() if len(ok) else np.nan
        wall0 = 2 / d["sharpness_at_init"].iloc[0]
        rows.append(
            {
                "network": net,
                "bn": bn,
                "seed": seed,
                "wall_at_init": wall0,
                "largest_factor": best,
                "largest_lr": best * wall0,
                "first_diverged_factor": first,
            }
        )
    return pd.DataFrame(rows)


def bn_verdict(largest: pd.DataFrame) -> evidence.Verdict:
    """Returns whether BN networks survive larger factors past their own 2/λ₀ than the plain
    ones: per seed, the mean over paired networks (same depth, width, activation) of
    log10(largest factor with BN ÷ without), judged over seeds (``bnlr.evidence``)."""
    claim = "BN networks survive larger factors past 2/λ₀"
    if not ((largest["bn"] == "none").any() and (largest["bn"] != "none").any()):
        return evidence.cannot(claim, "it needs networks with and without BN")
    shape = largest["network"].str.split(" · ").str[0]
    d = largest.assign(shape=shape, log=np.log10(largest["largest_factor"]))
    plain = d[d["bn"] == "none"].set_index(["shape", "seed"])["log"]
    bn = d[d["bn"] != "none"].set_index(["shape", "seed"])["log"]
    effect = (bn - plain.reindex(bn.index)).groupby(level="seed").mean()
    return evidence.judge(claim, effect, "larger", "smaller", "decades")


def outcome_counts(runs: pd.DataFrame) -> pd.DataFrame:
    """Returns per factor how many runs (networks × seeds) ended in each class."""
    counts = runs.groupby(["factor", "outcome"]).size().unstack(fill_value=0)
    return counts.reindex(columns=list(CLASSES), fill_value=0).reset_index()


@dataclass(frozen=True)
class PastReport:
    """What the Why page's "past the wall" section shows."""

    trajectories: pd.DataFrame  # per run × step: loss, sharpness (``trajectories``)
    runs: pd.DataFrame  # per run: its outcome and measures (``runs_table``)
    largest: pd.DataFrame  # per network × seed: the largest trainable factor
    counts: pd.DataFrame  # per factor: runs in each outcome
    bn: evidence.Verdict  # BN vs no BN, over seeds


def report(past: Past, cancel=None) -> PastReport:
    """Returns the trajectories of ``past`` and what they say."""
    traj = trajectories(past, cancel)
    runs = runs_table(traj)
    largest = largest_trainable(runs)
    return PastReport(traj, runs, largest, outcome_counts(runs), bn_verdict(largest))


def band(largest: pd.DataFrame) -> pd.DataFrame:
    """Returns per network the medians over seeds of 2/λ₀, the largest trainable factor and lr."""
    cols = ["wall_at_init", "largest_factor", "largest_lr"]
    return largest.groupby(["network", "bn"], sort=False)[cols].median().reset_index()


# ---------------------------------------------------------------- warmup


def warmup_schedule(epochs: int, steps_per_epoch: int) -> str:
    """The schedule spec of a linear warmup over ``epochs`` epochs (per batch), from lr ·
    WARMUP_START to lr; "constant" for 0."""
    if epochs == 0:
        return "constant"
    total = epochs * steps_per_epoch
    return f"linear:start_factor={WARMUP_START:g},total_iters={total},every=batch"


@lru_cache(maxsize=16)  # a Grid checks every run's schedule: build each once
def warmup_grid(
    base: Grid, lrs=None, warmups=WARMUP_EPOCHS, seeds: tuple[int, ...] = (929, 930, 931)
) -> Grid:
    """Returns ``base`` (the article's setup by default) over ``lrs`` (default a log grid 0.1–1)
    and seeds, once per warmup length."""
    from .config import log_grid

    S = base.experiment.steps_per_epoch
    return replace(
        base,
        lrs=tuple(lrs or log_grid(0.1, 1.0, 16)),
        seeds=tuple(seeds),
        schedules=tuple(warmup_schedule(w, S) for w in warmups),
    )


def warmup_table(result, warmups=WARMUP_EPOCHS, steps_per_epoch: int = 14) -> pd.DataFrame:
    """Returns per network × warmup length × seed the largest lr of the grid below which no run
    diverged (NaN: the smallest did), from a result of ``warmup_grid``."""
    from .metrics import run_metrics

    m = run_metrics(result.history)
    length = {warmup_schedule(w, steps_per_epoch): w for w in warmups}
    m = m.assign(warmup=m["schedule"].map(length), diverged=m["diverged_epoch"].notna())
    rows = []
    for (arch, bn, w, seed), d in m.groupby(["arch", "bn", "warmup", "seed"], sort=False):
        d = d.sort_values("lr")
        bad = d.loc[d["diverged"], "lr"]
        first = bad.min() if len(bad) else np.inf
        ok = d.loc[d["lr"] < first, "lr"]
        rows.append(
            {
                "network": arch,
                "bn": bn,
                "warmup_epochs": int(w),
                "seed": seed,
                "largest_lr": ok.max() if len(ok) else np.nan,
            }
        )
    return pd.DataFrame(rows)


def warmup_verdict(table: pd.DataFrame, longest: int | None = None) -> evidence.Verdict:
    """Returns whether the longest warmup lets the networks train at a larger lr than none: per
    seed, the mean over networks of log10(largest lr with it ÷ without), over seeds."""
    longest = longest if longest is not None else int(table["warmup_epochs"].max())
    claim = f"a {longest}-epoch warmup raises the largest trainable lr"
    log = table.assign(log=np.log10(table["largest_lr"]))
    pivot = log.pivot_table(index=["network", "seed"], columns="warmup_epochs", values="log")
    if 0 not in pivot or longest not in pivot or longest == 0:
        return evidence.cannot(claim, "it needs runs without warmup and with it")
    effect = (pivot[longest] - pivot[0]).groupby(level="seed").mean()
    return evidence.judge(claim, effect, "higher", "lower", "decades")


# ---------------------------------------------------------------- the quizzes (bnlr.quiz)

# past_wall's answers, and the outcomes each stands for
OUTCOMES = {
    "converge smoothly": ("lazy",),
    "oscillate but keep training": ("edge of stability", "catapult"),
    "diverge": ("diverged",),
}
QUIZ_FACTOR = 1.5  # past_wall asks about lr = 1.5 × 2/λ₀
WARMUP_WORDS = {
    "higher": "yes",
    "lower": "no",
    "no consistent difference": "no consistent difference",
}


def past_wall_answer(runs: pd.DataFrame, guess: str, factor: float = QUIZ_FACTOR):
    """Returns the past_wall answer: what most runs (networks × seeds) at ``factor`` × 2/λ₀ did,
    in ``OUTCOMES``' words (all tied ones); the guess is right when it is one of them.

    Args:
        runs: ``runs_table`` of the page's gradient descent.
        guess: one of ``OUTCOMES``.
    """
    from .quiz import Answer

    at = runs[np.isclose(runs["factor"], factor)]
    if at.empty:
        return Answer(None, False)
    words = {o: w for w, outcomes in OUTCOMES.items() for o in outcomes}
    counts = at["outcome"].map(words).value_counts().reindex(list(OUTCOMES), fill_value=0)
    answer = tuple(w for w, c in counts.items() if c == counts.max())
    listed = ", ".join(f"{w}: {c} of {len(at)}" for w, c in counts.items())
    said = (
        f"At {factor:g} × 2/λ₀, full-batch gradient descent did this in the {len(at)} runs "
        f"(networks × seeds): {listed}. Most: **{' / '.join(answer)}**. "
        + (
            "Past the naive wall it kept training: the sharpness adjusts to the step "
            "(edge of stability), or a loss spike throws it to a flatter place (catapult)."
            if "diverge" not in answer
            else "It diverged, as the quadratic picture predicts."
        )
    )
    return Answer(answer, guess in answer, per_network=at, said=said)


def warmup_answer(verdict: evidence.Verdict, guess: str):
    """Returns the warmup answer: the page's verdict on the longest warmup in yes / no / no
    consistent difference; None (nothing counts as right) when the verdict cannot say."""
    from .quiz import Answer

    answer = WARMUP_WORDS.get(verdict.word)
    said = evidence.sentence(
        verdict, "the longest warmup makes the largest trainable lr **{word}**", "higher"
    )
    return Answer(
        answer, answer is not None and guess == answer, verdicts={"warmup": verdict}, said=said
    )
