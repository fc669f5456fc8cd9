"""The sharpness λ_max (largest Hessian eigenvalue of the full-batch training loss) of many MLPs,
exactly, for the edge of stability (Cohen et al. 2021, λ_max against 2/lr) as PyHessian measures it.

Method: one fused numba kernel per run propagates all P parameter directions as tangents through
the forward and the backward pass (forward-over-reverse, i.e. exact Hessian-vector products with
every unit vector at once), BatchNorm in train mode over the whole split; then ``eigvalsh``.
Exact up to rounding (no finite differences). Cost: ~N·P·(P + 40·width²) flops per run.

The flat parameter order is ``bnlr.models.MLP``'s, layer by layer: for each hidden layer the
Linear weight (out, in) row-major, its bias, then (if bn != "none") BN gamma and beta; finally the
output Linear's weight (1, width) and bias. ``layout`` names every block in that order.

Because each layer's parameters follow all earlier layers', a direction from layer k leaves every
earlier activation untouched, and the rows of layer k's parameters are needed only for columns of
layers ≤ k (the rest follow by symmetry): every tangent at layer k lives on the prefix
``ends[k]`` of the parameter vector, which roughly halves the work.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from numba import njit

from . import host
from .config import ModelConfig
from .models import layout

BN_CODES = {"none": 0, "pre": 1, "post": 2}
ACT_CODES = {"tanh": 0, "relu": 1, "sigmoid": 2, "leaky_relu": 3}
LEAKY_SLOPE = 0.01  # F.leaky_relu's default, as bnlr.models uses it
BN_EPS = 1e-5  # nn.BatchNorm1d's default
# one thread per usable CPU (affinity ∩ cgroup quota, bnlr.host), or BNLR_HESSIAN_THREADS
THREADS = int(os.environ.get("BNLR_HESSIAN_THREADS", "0")) or host.usable_cpus().usable
# Reassociation lets LLVM vectorise the sums over samples; no nnan/ninf, so NaN still propagates.
FM = {"reassoc", "contract"}


def parameter_count(model: ModelConfig, in_features: int) -> int:
    return sum(int(np.prod(shape)) for _, shape in layout(model, in_features))


def flat_parameters(layers, gammas=None, betas=None) -> np.ndarray:
    """Flattens [(W, b), ...] (hidden layers then output, as ``initial_parameters`` gives them)
    and per hidden layer BN gamma and beta (None without BN) into the flat order, float64."""
    parts = []
    hidden = len(layers) - 1
    for k, (w, b) in enumerate(layers):
        parts += [w, b]
        if gammas is not None and k < hidden:
            parts += [gammas[k], betas[k]]
    return np.concatenate([np.asarray(torch.as_tensor(p), dtype=np.float64).ravel() for p in parts])


def from_module(mlp: torch.nn.Module) -> np.ndarray:
    """The flat parameters of a ``bnlr.models.MLP`` (e.g. after training with the reference)."""
    named = dict(mlp.named_parameters())
    sizes = [mlp.linears[0].in_features, *(lin.out_features for lin in mlp.linears)]
    model = ModelConfig(widths=tuple(sizes[1:]), bn=mlp.bn)
    return np.concatenate(
        [named[name].detach().double().numpy().ravel() for name, _ in layout(model, sizes[0])]
    )


@njit(cache=True, inline="always")
def _act(u, act):
    """σ(u), σ'(u), σ''(u); relu and leaky_relu take torch's derivative 0 (slope) at u = 0."""
    if act == 0:
        t = np.tanh(u)
        d = 1.0 - t * t
        return t, d, -2.0 * t * d
    if act == 1:
        return (u, 1.0, 0.0) if u > 0.0 else (0.0, 0.0, 0.0)
    if act == 2:
        s = 1.0 / (1.0 + np.exp(-u))
        d = s * (1.0 - s)
        return s, d, d * (1.0 - 2.0 * s)
    return (u, 1.0, 0.0) if u > 0.0 else (LEAKY_SLOPE * u, LEAKY_SLOPE, 0.0)


@njit(cache=True, fastmath=FM)
def _bn_values(x, zh, s, w, eps):
    """ẑ = (x - mean x) / sqrt(var x + eps) per row of x[:w] (w, N), biased var over samples."""
    n_samples = x.shape[1]
    for i in range(w):
        mu = 0.0
        for n in range(n_samples):
            mu += x[i, n]
        mu /= n_samples
        var = 0.0
        for n in range(n_samples):
            var += (x[i, n] - mu) ** 2
        s[i] = np.sqrt(var / n_samples + eps)
        for n in range(n_samples):
            zh[i, n] = (x[i, n] - mu) / s[i]


@njit(cache=True, fastmath=FM)
def _values(theta, X, y, sizes, offs, bn, act, eps, vals):
    """Forward and backward pass of one run's values (no tangents) into ``vals``, reused by
    every column. ga[k], gz[k]: adjoints of hidden layer k's output and of its Linear's output
    z; gu: of u (σ's input; none, pre); gzh: of ẑ; gx: of BN's input."""
    a, u, zh, s, d1, d2, r, ga, gu, gzh, gx, gz, bb, x = vals
    n_samples, n_hidden = X.shape[0], sizes.shape[0] - 2
    a[0, : X.shape[1]] = X.T
    for k in range(n_hidden):
        fan_in, w = sizes[k], sizes[k + 1]
        ow, ob, og, obeta = offs[k, 0], offs[k, 1], offs[k, 2], offs[k, 3]
        for i in range(w):
            x[i, :] = theta[ob + i]
            for j in range(fan_in):
                wij = theta[ow + i * fan_in + j]
                for n in range(n_samples):
                    x[i, n] += wij * a[k, j, n]
            u[k, i, :] = x[i, :]
        if bn == 1:
            _bn_values(x, zh[k], s[k], w, eps)
            for i in range(w):
                for n in range(n_samples):
                    u[k, i, n] = theta[og + i] * zh[k, i, n] + theta[obeta + i]
        for i in range(w):
            for n in range(n_samples):
                x[i, n], d1[k, i, n], d2[k, i, n] = _act(u[k, i, n], act)
            a[k + 1, i, :] = x[i, :]
        if bn == 2:
            _bn_values(x, zh[k], s[k], w, eps)
            for i in range(w):
                for n in range(n_samples):
                    a[k + 1, i, n] = theta[og + i] * zh[k, i, n] + theta[obeta + i]
    oo, w_last = offs[n_hidden, 0], sizes[n_hidden]
    r[:] = theta[oo + w_last]
    for j in range(w_last):
        for n in range(n_samples):
            r[n] += theta[oo + j] * a[n_hidden, j, n]
    for n in range(n_samples):
        r[n] = 2.0 * (r[n] - y[n]) / n_samples
    for j in range(w_last):
        for n in range(n_samples):
            ga[n_hidden - 1, j, n] = r[n] * theta[oo + j]
    for k in range(n_hidden - 1, -1, -1):
        fan_in, w = sizes[k], sizes[k + 1]
        ow, og = offs[k, 0], offs[k, 2]
        for i in range(w):
            for n in range(n_samples):
                gu[k, i, n] = ga[k, i, n] * d1[k, i, n]
                gzh[k, i, n] = (gu[k, i, n] if bn == 1 else ga[k, i, n]) * theta[og + i]
        if bn:
            for i in range(w):
                mean_g, mean_gz = 0.0, 0.0
                for n in range(n_samples):
                    mean_g += gzh[k, i, n]
                    mean_gz += gzh[k, i, n] * zh[k, i, n]
                mean_g /= n_samples
                bb[k, i] = mean_gz / n_samples
                for n in range(n_samples):
                    gx[k, i, n] = (gzh[k, i, n] - mean_g - zh[k, i, n] * bb[k, i]) / s[k, i]
        for i in range(w):
            for n in range(n_samples):
                if bn == 0:
                    gz[k, i, n] = gu[k, i, n]
                elif bn == 1:
                    gz[k, i, n] = gx[k, i, n]
                else:
                    gz[k, i, n] = gx[k, i, n] * d1[k, i, n]
        if k:
            for j in range(fan_in):
                ga[k - 1, j, :] = 0.0
                for i in range(w):
                    wij = theta[ow + i * fan_in + j]
                    for n in range(n_samples):
                        ga[k - 1, j, n] += gz[k, i, n] * wij


@njit(cache=True, fastmath=FM)
def _gradient(theta, sizes, offs, bn, vals, g):
    """g (P,) = the full-batch gradient, from the adjoints ``_values`` left in ``vals``."""
    a, _u, zh, _s, _d1, _d2, r, ga, gu, _gzh, _gx, gz, _bb, _x = vals
    n_hidden = sizes.shape[0] - 2
    for k in range(n_hidden):
        fan_in, w = sizes[k], sizes[k + 1]
        ow, ob, og, obeta = offs[k, 0], offs[k, 1], offs[k, 2], offs[k, 3]
        for i in range(w):
            for j in range(fan_in):
                g[ow + i * fan_in + j] = _dot(gz[k, i], a[k, j])
            g[ob + i] = gz[k, i].sum()
            if bn:  # γ ẑ + β: the adjoint of its output is ū (pre) or ā (post)
                out = gu[k, i] if bn == 1 else ga[k, i]
                g[og + i] = _dot(out, zh[k, i])
                g[obeta + i] = out.sum()
    oo, w_last = offs[n_hidden, 0], sizes[n_hidden]
    for j in range(w_last):
        g[oo + j] = _dot(r, a[n_hidden, j])
    g[oo + w_last] = r.sum()


@njit(cache=True, fastmath=FM)
def _bn_tangent(xd, zh, s, m, w):
    """In place, BN's input tangents xd (w, N) become ẑ̇ = (ẋ - mean ẋ - ẑ m) / s, with
    m = mean(ẑ ẋ) = ṡ kept in m (w,) for the backward pass."""
    n_samples = xd.shape[1]
    for i in range(w):
        mu, mi = 0.0, 0.0
        for n in range(n_samples):
            mu += xd[i, n]
            mi += zh[i, n] * xd[i, n]
        mu /= n_samples
        mi /= n_samples
        m[i] = mi
        inv = 1.0 / s[i]
        for n in range(n_samples):
            xd[i, n] = (xd[i, n] - mu - zh[i, n] * mi) * inv


@njit(cache=True, fastmath=FM)
def _affine_tangent(out, zhd, zh, theta, og, obeta, q, w):
    """out = tangent of BN's affine output γ ẑ + β (w, N): γ ẑ̇, plus ẑ where the direction q
    is γ_i, plus 1 where it is β_i."""
    n_samples = zhd.shape[1]
    for i in range(w):
        g = theta[og + i]
        for n in range(n_samples):
            out[i, n] = g * zhd[i, n]
    if og <= q < og + w:
        out[q - og, :] += zh[q - og, :]
    elif obeta <= q < obeta + w:
        out[q - obeta, :] += 1.0


@njit(cache=True, fastmath=FM)
def _bn_adjoint_tangent(gzhd, gzh, gx, zh, zhd, s, m, bb, w, gxd):
    """Tangent of BN's train-mode backward x̄ = (ẑ̄ - mean ẑ̄ - ẑ B) / s, B = mean(ẑ̄ ẑ):
    from ẑ̄̇ (gzhd) to x̄̇ (gxd), both (w, N); ṡ = m."""
    n_samples = gzhd.shape[1]
    for i in range(w):
        a_d, b_d = 0.0, 0.0
        for n in range(n_samples):
            a_d += gzhd[i, n]
            b_d += gzhd[i, n] * zh[i, n] + gzh[i, n] * zhd[i, n]
        a_d /= n_samples
        b_d /= n_samples
        inv, b, mi = 1.0 / s[i], bb[i], m[i]
        for n in range(n_samples):
            gxd[i, n] = (gzhd[i, n] - a_d - zhd[i, n] * b - zh[i, n] * b_d - mi * gx[i, n]) * inv


@njit(cache=True, fastmath=FM)
def _dot(u, v):
    acc = 0.0
    for n in range(u.shape[0]):
        acc += u[n] * v[n]
    return acc


@njit(cache=True, fastmath=FM)
def _column(theta, sizes, offs, ends, bn, q, vals, tans, H):
    """H[p, q] for every row p of a layer ≥ q's layer (so all of the lower triangle): the
    direction e_q pushed through the forward and the backward pass (one exact HVP)."""
    a, _u, zh, s, d1, d2, r, ga, gu, gzh, gx, gz, bb, _x = vals
    ad, ud, zhd, m, rd, gad, t1, t2 = tans
    n_samples, n_hidden = a.shape[2], sizes.shape[0] - 2
    k0 = 0
    while ends[k0] <= q:
        k0 += 1
    for k in range(k0, n_hidden):
        fan_in, w = sizes[k], sizes[k + 1]
        ow, ob, og, obeta = offs[k, 0], offs[k, 1], offs[k, 2], offs[k, 3]
        # ż = W ȧ + Ẇ a + ḃ, into u̇ (none, post) or ẑ̇ (pre: BN's input)
        zd = zhd[k] if bn == 1 else ud[k]
        for i in range(w):
            zd[i, :] = 0.0
            if k > k0:
                for j in range(fan_in):
                    wij = theta[ow + i * fan_in + j]
                    for n in range(n_samples):
                        zd[i, n] += wij * ad[k - 1, j, n]
        if k == k0 and q < ob:
            zd[(q - ow) // fan_in, :] = a[k, (q - ow) % fan_in, :]
        elif k == k0 and q < ob + w:
            zd[q - ob, :] = 1.0
        if bn == 1:
            _bn_tangent(zhd[k], zh[k], s[k], m[k], w)
            _affine_tangent(ud[k], zhd[k], zh[k], theta, og, obeta, q, w)
        # through σ: ȧ = σ' u̇ (none, pre), or BN's input ḣ = σ' u̇ (post)
        out = zhd[k] if bn == 2 else ad[k]
        for i in range(w):
            for n in range(n_samples):
                out[i, n] = d1[k, i, n] * ud[k, i, n]
        if bn == 2:
            _bn_tangent(zhd[k], zh[k], s[k], m[k], w)
            _affine_tangent(ad[k], zhd[k], zh[k], theta, og, obeta, q, w)
    # output f = W_o a_L + b_o: ṙ = 2 ḟ / N; output rows; ā̇_L
    oo, w_last, last = offs[n_hidden, 0], sizes[n_hidden], n_hidden - 1
    scale = 2.0 / n_samples
    rd[:] = 0.0
    if last >= k0:
        for j in range(w_last):
            wj = theta[oo + j] * scale
            for n in range(n_samples):
                rd[n] += wj * ad[last, j, n]
    elif q < oo + w_last:
        for n in range(n_samples):
            rd[n] = scale * a[n_hidden, q - oo, n]
    else:
        rd[:] = scale
    for j in range(w_last):
        h = _dot(rd, a[n_hidden, j])
        if last >= k0:
            h += _dot(r, ad[last, j])
        H[oo + j, q] = h
    H[oo + w_last, q] = rd.sum()
    if last < k0:
        return
    for j in range(w_last):
        wj = theta[oo + j]
        for n in range(n_samples):
            gad[j, n] = rd[n] * wj
    for k in range(n_hidden - 1, k0 - 1, -1):
        fan_in, w = sizes[k], sizes[k + 1]
        ow, ob, og, obeta = offs[k, 0], offs[k, 1], offs[k, 2], offs[k, 3]
        # through σ (none, pre): ū̇ = ā̇ σ' + ā σ'' u̇, into t2 (none: it is z̄̇) or t1
        if bn != 2:
            tgt = t2 if bn == 0 else t1
            for i in range(w):
                for n in range(n_samples):
                    tgt[i, n] = gad[i, n] * d1[k, i, n] + ga[k, i, n] * d2[k, i, n] * ud[k, i, n]
        if bn:
            # the affine γ ẑ + β: gamma and beta rows, then ẑ̄̇ = (ū̇ or ā̇) γ + (ū or ā) γ̇ in t1
            src = t1 if bn == 1 else gad
            g_val = gu[k] if bn == 1 else ga[k]
            for i in range(w):
                H[og + i, q] = _dot(src[i], zh[k, i]) + _dot(g_val[i], zhd[k, i])
                H[obeta + i, q] = src[i].sum()
                g = theta[og + i]
                for n in range(n_samples):
                    t1[i, n] = src[i, n] * g
            if og <= q < og + w:
                t1[q - og, :] += g_val[q - og, :]
            _bn_adjoint_tangent(t1, gzh[k], gx[k], zh[k], zhd[k], s[k], m[k], bb[k], w, t2)
        if bn == 2:  # through σ after BN's backward: z̄̇ = h̄̇ σ' + h̄ σ'' u̇, in place in t2
            for i in range(w):
                for n in range(n_samples):
                    t2[i, n] = t2[i, n] * d1[k, i, n] + gx[k, i, n] * d2[k, i, n] * ud[k, i, n]
        # z = W a + b: rows of W and b; ā̇ of the layer below (t2 holds z̄̇)
        for i in range(w):
            for j in range(fan_in):
                h = _dot(t2[i], a[k, j])
                if k > k0:
                    h += _dot(gz[k, i], ad[k - 1, j])
                H[ow + i * fan_in + j, q] = h
            H[ob + i, q] = t2[i].sum()
        if k > k0:
            for j in range(fan_in):
                gad[j, :] = 0.0
                for i in range(w):
                    wij = theta[ow + i * fan_in + j]
                    for n in range(n_samples):
                        gad[j, n] += t2[i, n] * wij


@njit(cache=True, nogil=True)
def _hessians(params, X, y, sizes, offs, ends, bn, act, eps, out, grads):
    """Fills out (R, P, P) with each run's Hessian, exact on and below the diagonal, one column
    at a time, and grads (R, P) with its gradient. Releases the GIL: ``_lower_hessians`` runs a
    share of the runs on each core."""
    n_runs, n_params = params.shape
    n_hidden, n_samples, width = sizes.shape[0] - 2, X.shape[0], sizes[1:-1].max()
    lw = (n_hidden, width, n_samples)
    # Workspaces shared by all runs and columns, never cleared: the kernels write all they read.
    # Samples on the last axis: every loop over them is long, contiguous and vectorised.
    vals = (
        np.zeros((n_hidden + 1, max(width, X.shape[1]), n_samples)),  # a (a[0] = Xᵀ)
        np.empty(lw),  # u, σ's input
        np.empty(lw),  # ẑ
        np.empty((n_hidden, width)),  # BN's s = sqrt(var + eps)
        np.empty(lw),  # σ'(u)
        np.empty(lw),  # σ''(u)
        np.empty(n_samples),  # r = dL/df
        np.empty(lw),  # ā (adjoint of each hidden layer's output)
        np.empty(lw),  # ū
        np.empty(lw),  # ẑ̄
        np.empty(lw),  # adjoint of BN's input
        np.empty(lw),  # z̄
        np.empty((n_hidden, width)),  # BN's B = mean(ẑ̄ ẑ)
        np.empty((width, n_samples)),  # scratch: the layer's BN or σ input
    )
    tw = (width, n_samples)
    tans = (
        np.empty(lw),  # ȧ
        np.empty(lw),  # u̇
        np.empty(lw),  # ẑ̇
        np.empty((n_hidden, width)),  # ṡ
        np.empty(n_samples),  # ṙ
        np.empty(tw),  # ā̇
        np.empty(tw),  # ū̇ or ẑ̄̇
        np.empty(tw),  # z̄̇ (post: first BN input's adjoint tangent)
    )
    for run in range(n_runs):
        theta = params[run]
        _values(theta, X, y, sizes, offs, bn, act, eps, vals)
        _gradient(theta, sizes, offs, bn, vals, grads[run])
        for q in range(n_params):
            _column(theta, sizes, offs, ends, bn, q, vals, tans, out[run])


def _lower_hessians(model: ModelConfig, params, X, y) -> tuple[np.ndarray, np.ndarray]:
    """(R, P, P) Hessians, the lower triangle exact, and (R, P) gradients."""
    X = np.ascontiguousarray(torch.as_tensor(X).double().numpy())
    y = np.ascontiguousarray(torch.as_tensor(y).double().numpy().reshape(-1))
    params = np.ascontiguousarray(params, dtype=np.float64)
    if params.ndim != 2 or params.shape[1] != parameter_count(model, X.shape[1]):
        raise ValueError(f"params must be (runs, {parameter_count(model, X.shape[1])})")
    sizes, offs, ends = _offsets(model, X.shape[1])
    bn, act = BN_CODES[model.bn], ACT_CODES[model.activation]
    out = np.zeros((len(params), params.shape[1], params.shape[1]))
    grads = np.zeros(params.shape)

    def work(lo, hi):
        _hessians(params[lo:hi], X, y, sizes, offs, ends, bn, act, BN_EPS, out[lo:hi], grads[lo:hi])

    in_shares(len(params), work)
    return out, grads


def in_shares(n: int, work) -> None:
    """Calls work(lo, hi) on consecutive slices of range(n), one thread per core. Each run's
    Hessian is independent and the kernel runs without the GIL (numba ``nogil``). Plain
    threads, not numba's parallel layers: concurrent callers (two sessions of the app) are
    safe, and nothing spins while it waits."""
    cuts = np.linspace(0, n, min(THREADS, n) + 1).astype(int) if n else [0, 0]
    if len(cuts) <= 2:
        work(0, n)
        return
    with ThreadPoolExecutor(len(cuts) - 1) as pool:
        for f in [pool.submit(work, lo, hi) for lo, hi in zip(cuts[:-1], cuts[1:])]:
            f.result()


def hessian(model: ModelConfig, params, X, y) -> np.ndarray:
    """(R, P, P) exact Hessians of the MSE over all of X (BN in train mode), params (R, P)."""
    H, _ = _lower_hessians(model, params, X, y)
    lower = np.tril(H)
    return lower + np.swapaxes(np.tril(H, -1), 1, 2)


def sharpness(model: ModelConfig, params, X, y) -> np.ndarray:
    """(R,) λ_max of each run's Hessian; params (R, P) float64 in the flat order."""
    return sharpness_and_gradients(model, params, X, y)[0]


def sharpness_and_gradients(model: ModelConfig, params, X, y) -> tuple[np.ndarray, np.ndarray]:
    """(R,) λ_max of each run's Hessian and (R, P) its full-batch gradient (a by-product of the
    Hessian's forward and backward pass); params (R, P) float64 in the flat order."""
    H, grads = _lower_hessians(model, params, X, y)
    # On the calling thread: torch's linalg in a fresh worker thread does not keep the
    # caller's one-thread setting, and a run's λ_max would depend on its neighbours.
    lam = torch.linalg.eigvalsh(torch.from_numpy(H), UPLO="L")[:, -1].numpy()  # lower only
    return lam, grads


def _offsets(model: ModelConfig, n_features: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns the layer sizes; offs[k], the offsets of layer k's W, b, gamma, beta (the output
    layer last); ends[k], the number of parameters of layers ≤ k."""
    sizes = np.array([n_features, *model.widths, 1], dtype=np.int64)
    offs, ends, o = np.zeros((len(sizes) - 1, 4), np.int64), np.zeros(len(sizes) - 1, np.int64), 0
    for k, (fan_in, w) in enumerate(zip(sizes[:-1], sizes[1:])):
        offs[k] = o, o + w * fan_in, o + w * fan_in + w, o + w * fan_in + 2 * w
        o += w * fan_in + w + (2 * w if model.bn != "none" and k < len(sizes) - 2 else 0)
        ends[k] = o
    return sizes, offs, ends


@njit(cache=True, nogil=True)
def _losses_and_gradients(params, X, y, rows, sizes, offs, bn, act, eps, losses, grads):
    """Fills losses (R,) and grads (R, P): each run's MSE and its gradient over the samples
    rows[run] (B,) of X (BN in train mode on those samples), by ``_values`` and ``_gradient``."""
    n_runs, n_batch = rows.shape
    n_hidden, width = sizes.shape[0] - 2, sizes[1:-1].max()
    lw = (n_hidden, width, n_batch)
    vals = (
        np.zeros((n_hidden + 1, max(width, X.shape[1]), n_batch)),
        np.empty(lw),
        np.empty(lw),
        np.empty((n_hidden, width)),
        np.empty(lw),
        np.empty(lw),
        np.empty(n_batch),
        np.empty(lw),
        np.empty(lw),
        np.empty(lw),
        np.empty(lw),
        np.empty(lw),
        np.empty((n_hidden, width)),
        np.empty((width, n_batch)),
    )
    Xb, yb = np.empty((n_batch, X.shape[1])), np.empty(n_batch)
    for run in range(n_runs):
        for n in range(n_batch):
            Xb[n, :] = X[rows[run, n], :]
            yb[n] = y[rows[run, n]]
        _values(params[run], Xb, yb, sizes, offs, bn, act, eps, vals)
        _gradient(params[run], sizes, offs, bn, vals, grads[run])
        r = vals[6]  # 2 (f - y) / B per sample: the loss is B/4 · Σ r²
        acc = 0.0
        for n in range(n_batch):
            acc += r[n] * r[n]
        losses[run] = acc * n_batch / 4.0


def losses_and_gradients(
    model: ModelConfig, params, X, y, rows=None
) -> tuple[np.ndarray, np.ndarray]:
    """(R,) MSE and (R, P) gradient of each run, over all of X or, with ``rows`` (R, B), over
    each run's own samples (a mini-batch), BatchNorm in train mode on them; float64.

    The Hessian kernel's forward and backward pass without its tangents: the cheap step of
    full-batch gradient descent (``bnlr.edge``) and of the Adam replay (``bnlr.preconditioned``).
    """
    X = np.ascontiguousarray(torch.as_tensor(X).double().numpy())
    y = np.ascontiguousarray(torch.as_tensor(y).double().numpy().reshape(-1))
    params = np.ascontiguousarray(params, dtype=np.float64)
    if params.ndim != 2 or params.shape[1] != parameter_count(model, X.shape[1]):
        raise ValueError(f"params must be (runs, {parameter_count(model, X.shape[1])})")
    if rows is None:
        rows = np.broadcast_to(np.arange(len(X)), (len(params), len(X)))
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    sizes, offs, _ = _offsets(model, X.shape[1])
    bn, act = BN_CODES[model.bn], ACT_CODES[model.activation]
    losses, grads = np.empty(len(params)), np.empty(params.shape)

    def work(lo, hi):
        _losses_and_gradients(
            params[lo:hi], X, y, rows[lo:hi], sizes, offs, bn, act, BN_EPS, losses[lo:hi],
            grads[lo:hi],
        )  # fmt: skip

    if rows.size >= SHARED_SAMPLES:
        in_shares(len(params), work)
    else:  # a few mini-batches: a thread pool would cost more than it saves
        work(0, len(params))
    return losses, grads


SHARED_SAMPLES = 4000  # losses_and_gradients spreads runs over the cores from this many samples
