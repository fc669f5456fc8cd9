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

import numpy as np
import torch
from numba import njit

from .config import ModelConfig

BN_CODES = {"none": 0, "pre": 1, "post": 2}
ACT_CODES = {"tanh": 0, "relu": 1, "sigmoid": 2, "leaky_relu": 3}
LEAKY_SLOPE = 0.01  # F.leaky_relu's default, as bnlr.models uses it
BN_EPS = 1e-5  # nn.BatchNorm1d's default
CH = 8  # directions per chunk: one AVX-512 vector; a chunk's tangents stay in L2


def layout(model: ModelConfig, in_features: int) -> list[tuple[str, tuple[int, ...]]]:
    """Returns [(MLP parameter name, shape), ...] in the flat order."""
    sizes = [in_features, *model.widths]
    blocks = []
    for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        blocks += [(f"linears.{k}.weight", (b, a)), (f"linears.{k}.bias", (b,))]
        if model.bn != "none":
            blocks += [(f"bns.{k}.weight", (b,)), (f"bns.{k}.bias", (b,))]
    return [*blocks, ("out.weight", (1, sizes[-1])), ("out.bias", (1,))]


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


@njit(cache=True)
def _bn_values(x, zh, s, w, eps):
    """ẑ = (x - mean x) / sqrt(var x + eps) per column of x[:, :w], biased var over samples."""
    n_samples = x.shape[0]
    for i in range(w):
        mu = 0.0
        for n in range(n_samples):
            mu += x[n, i]
        mu /= n_samples
        var = 0.0
        for n in range(n_samples):
            var += (x[n, i] - mu) ** 2
        s[i] = np.sqrt(var / n_samples + eps)
        for n in range(n_samples):
            zh[n, i] = (x[n, i] - mu) / s[i]


@njit(cache=True)
def _values(theta, X, y, sizes, offs, bn, act, eps, vals):
    """Forward and backward pass of one run's values (no tangents) into ``vals``: what every
    chunk of directions reuses. ga[k], gz[k]: adjoints of hidden layer k's output and of its
    Linear's output z; gu: of u (σ's input; none, pre); gzh: of ẑ; gx: of BN's input."""
    a, u, zh, s, d1, d2, r, ga, gu, gzh, gx, gz, bb, x = vals
    n_samples, n_hidden = X.shape[0], sizes.shape[0] - 2
    a[0, :, : X.shape[1]] = X
    for k in range(n_hidden):
        fan_in, w = sizes[k], sizes[k + 1]
        ow, ob, og, obeta = offs[k, 0], offs[k, 1], offs[k, 2], offs[k, 3]
        for n in range(n_samples):
            for i in range(w):
                z = theta[ob + i]
                for j in range(fan_in):
                    z += theta[ow + i * fan_in + j] * a[k, n, j]
                x[n, i] = z
                u[k, n, i] = z
        if bn == 1:
            _bn_values(x, zh[k], s[k], w, eps)
            for n in range(n_samples):
                for i in range(w):
                    u[k, n, i] = theta[og + i] * zh[k, n, i] + theta[obeta + i]
        for n in range(n_samples):
            for i in range(w):
                x[n, i], d1[k, n, i], d2[k, n, i] = _act(u[k, n, i], act)
                a[k + 1, n, i] = x[n, i]
        if bn == 2:
            _bn_values(x, zh[k], s[k], w, eps)
            for n in range(n_samples):
                for i in range(w):
                    a[k + 1, n, i] = theta[og + i] * zh[k, n, i] + theta[obeta + i]
    oo, w_last = offs[n_hidden, 0], sizes[n_hidden]
    for n in range(n_samples):
        f = theta[oo + w_last]
        for j in range(w_last):
            f += theta[oo + j] * a[n_hidden, n, j]
        r[n] = 2.0 * (f - y[n]) / n_samples
        for j in range(w_last):
            ga[n_hidden - 1, n, j] = r[n] * theta[oo + j]
    for k in range(n_hidden - 1, -1, -1):
        fan_in, w = sizes[k], sizes[k + 1]
        ow, og = offs[k, 0], offs[k, 2]
        for n in range(n_samples):
            for i in range(w):
                gu[k, n, i] = ga[k, n, i] * d1[k, n, i]
                gzh[k, n, i] = (gu[k, n, i] if bn == 1 else ga[k, n, i]) * theta[og + i]
        if bn:
            for i in range(w):
                mean_g, mean_gz = 0.0, 0.0
                for n in range(n_samples):
                    mean_g += gzh[k, n, i]
                    mean_gz += gzh[k, n, i] * zh[k, n, i]
                mean_g /= n_samples
                bb[k, i] = mean_gz / n_samples
                for n in range(n_samples):
                    gx[k, n, i] = (gzh[k, n, i] - mean_g - zh[k, n, i] * bb[k, i]) / s[k, i]
        for n in range(n_samples):
            for i in range(w):
                if bn == 0:
                    gz[k, n, i] = gu[k, n, i]
                elif bn == 1:
                    gz[k, n, i] = gx[k, n, i]
                else:
                    gz[k, n, i] = gx[k, n, i] * d1[k, n, i]
            if k:
                for j in range(fan_in):
                    g = 0.0
                    for i in range(w):
                        g += gz[k, n, i] * theta[ow + i * fan_in + j]
                    ga[k - 1, n, j] = g


@njit(cache=True)
def _bn_tangent(xd, zh, s, m, w, eps_unused=0.0):
    """In place, BN's input tangents xd (N, w, CH) become ẑ̇ = (ẋ - mean ẋ - ẑ m) / s, with
    m = mean(ẑ ẋ) = ṡ kept in m (w, CH) for the backward pass."""
    n_samples = xd.shape[0]
    mu = np.empty(CH)
    for i in range(w):
        mu[:] = 0.0
        m[i, :] = 0.0
        for n in range(n_samples):
            z = zh[n, i]
            for t in range(CH):
                mu[t] += xd[n, i, t]
                m[i, t] += z * xd[n, i, t]
        for t in range(CH):
            mu[t] /= n_samples
            m[i, t] /= n_samples
        inv = 1.0 / s[i]
        for n in range(n_samples):
            z = zh[n, i]
            for t in range(CH):
                xd[n, i, t] = (xd[n, i, t] - mu[t] - z * m[i, t]) * inv


@njit(cache=True)
def _bn_adjoint_tangent(gzhd, gzh, gx, zh, zhd, s, m, bb, w, gxd):
    """Tangent of BN's train-mode backward x̄ = (ẑ̄ - mean ẑ̄ - ẑ B) / s, B = mean(ẑ̄ ẑ):
    from ẑ̄̇ (gzhd) to x̄̇ (gxd), both (N, w, CH); ṡ = m."""
    n_samples = gzhd.shape[0]
    a_d = np.empty(CH)
    b_d = np.empty(CH)
    for i in range(w):
        a_d[:] = 0.0
        b_d[:] = 0.0
        for n in range(n_samples):
            g, z = gzh[n, i], zh[n, i]
            for t in range(CH):
                a_d[t] += gzhd[n, i, t]
                b_d[t] += gzhd[n, i, t] * z + g * zhd[n, i, t]
        for t in range(CH):
            a_d[t] /= n_samples
            b_d[t] /= n_samples
        inv, b = 1.0 / s[i], bb[i]
        for n in range(n_samples):
            z, g = zh[n, i], gx[n, i]
            for t in range(CH):
                gxd[n, i, t] = (
                    gzhd[n, i, t] - a_d[t] - zhd[n, i, t] * b - z * b_d[t] - m[i, t] * g
                ) * inv


@njit(cache=True)
def _chunk(theta, sizes, offs, ends, bn, q0, vals, tans, H):
    """Adds H[p, q0:q0+CH] for every row p of a layer ≥ the layer of q0 (so all of the lower
    triangle), by pushing the CH unit directions e_q0… through the forward and backward pass."""
    a, u, zh, s, d1, d2, r, ga, gu, gzh, gx, gz, bb, x = vals
    ad, ud, zhd, m, rd, gad, t1, t2 = tans
    n_samples, n_hidden = a.shape[1], sizes.shape[0] - 2
    k0 = 0
    while ends[k0] <= q0:
        k0 += 1
    for k in range(k0, n_hidden):
        fan_in, w = sizes[k], sizes[k + 1]
        ow, ob, og, obeta = offs[k, 0], offs[k, 1], offs[k, 2], offs[k, 3]
        # ż = W ȧ + ẇ a + ḃ, into u̇ (none, post) or ẑ̇ (pre: BN's input)
        zd = zhd[k] if bn == 1 else ud[k]
        for n in range(n_samples):
            for i in range(w):
                zd[n, i, :] = 0.0
                for j in range(fan_in):
                    if k > k0:
                        wij = theta[ow + i * fan_in + j]
                        for t in range(CH):
                            zd[n, i, t] += wij * ad[k - 1, n, j, t]
                    t = ow + i * fan_in + j - q0
                    if 0 <= t < CH:
                        zd[n, i, t] += a[k, n, j]
                t = ob + i - q0
                if 0 <= t < CH:
                    zd[n, i, t] += 1.0
        if bn == 1:
            _bn_tangent(zhd[k], zh[k], s[k], m[k], w)
            for n in range(n_samples):
                for i in range(w):
                    g = theta[og + i]
                    for t in range(CH):
                        ud[k, n, i, t] = g * zhd[k, n, i, t]
                    t = og + i - q0
                    if 0 <= t < CH:
                        ud[k, n, i, t] += zh[k, n, i]
                    t = obeta + i - q0
                    if 0 <= t < CH:
                        ud[k, n, i, t] += 1.0
        # through σ: ȧ = σ' u̇ (none, pre), or BN's input ḣ = σ' u̇ (post)
        out = zhd[k] if bn == 2 else ad[k]
        for n in range(n_samples):
            for i in range(w):
                c = d1[k, n, i]
                for t in range(CH):
                    out[n, i, t] = c * ud[k, n, i, t]
        if bn == 2:
            _bn_tangent(zhd[k], zh[k], s[k], m[k], w)
            for n in range(n_samples):
                for i in range(w):
                    g = theta[og + i]
                    for t in range(CH):
                        ad[k, n, i, t] = g * zhd[k, n, i, t]
                    t = og + i - q0
                    if 0 <= t < CH:
                        ad[k, n, i, t] += zh[k, n, i]
                    t = obeta + i - q0
                    if 0 <= t < CH:
                        ad[k, n, i, t] += 1.0
    # output f = W_o a_L + b_o: ṙ = 2 ḟ / N; output rows; ā̇_L
    oo, w_last, last = offs[n_hidden, 0], sizes[n_hidden], n_hidden - 1
    scale = 2.0 / n_samples
    for n in range(n_samples):
        rd[n, :] = 0.0
        for j in range(w_last):
            if last >= k0:
                wj = theta[oo + j]
                for t in range(CH):
                    rd[n, t] += wj * ad[last, n, j, t]
            t = oo + j - q0
            if 0 <= t < CH:
                rd[n, t] += a[n_hidden, n, j]
        t = oo + w_last - q0
        if 0 <= t < CH:
            rd[n, t] += 1.0
        for t in range(CH):
            rd[n, t] *= scale
        for j in range(w_last):
            aj, row = a[n_hidden, n, j], oo + j
            for t in range(CH):
                H[row, q0 + t] += rd[n, t] * aj
            if last >= k0:
                for t in range(CH):
                    H[row, q0 + t] += r[n] * ad[last, n, j, t]
        for t in range(CH):
            H[oo + w_last, q0 + t] += rd[n, t]
        if last >= k0:
            for j in range(w_last):
                wj = theta[oo + j]
                for t in range(CH):
                    gad[n, j, t] = rd[n, t] * wj
                t = oo + j - q0
                if 0 <= t < CH:
                    gad[n, j, t] += r[n]
    for k in range(n_hidden - 1, k0 - 1, -1):
        fan_in, w = sizes[k], sizes[k + 1]
        ow, ob, og, obeta = offs[k, 0], offs[k, 1], offs[k, 2], offs[k, 3]
        # through σ (none, pre): ū̇ = ā̇ σ' + ā σ'' u̇, into t2 (none: it is z̄̇) or t1
        if bn != 2:
            tgt = t2 if bn == 0 else t1
            for n in range(n_samples):
                for i in range(w):
                    c1, c2 = d1[k, n, i], ga[k, n, i] * d2[k, n, i]
                    for t in range(CH):
                        tgt[n, i, t] = gad[n, i, t] * c1 + c2 * ud[k, n, i, t]
        if bn:
            # the affine γ ẑ + β: gamma and beta rows, then ẑ̄̇ = (ū̇ or ā̇) γ + (ū or ā) γ̇ in t1
            src = t1 if bn == 1 else gad
            g_val = gu if bn == 1 else ga
            for n in range(n_samples):
                for i in range(w):
                    g, gv, z = theta[og + i], g_val[k, n, i], zh[k, n, i]
                    for t in range(CH):
                        H[og + i, q0 + t] += src[n, i, t] * z + gv * zhd[k, n, i, t]
                        H[obeta + i, q0 + t] += src[n, i, t]
                        t1[n, i, t] = src[n, i, t] * g
                    t = og + i - q0
                    if 0 <= t < CH:
                        t1[n, i, t] += gv
            _bn_adjoint_tangent(t1, gzh[k], gx[k], zh[k], zhd[k], s[k], m[k], bb[k], w, t2)
        if bn == 2:  # through σ after BN's backward: z̄̇ = h̄̇ σ' + h̄ σ'' u̇, in place in t2
            for n in range(n_samples):
                for i in range(w):
                    c1, c2 = d1[k, n, i], gx[k, n, i] * d2[k, n, i]
                    for t in range(CH):
                        t2[n, i, t] = t2[n, i, t] * c1 + c2 * ud[k, n, i, t]
        # z = W a + b: rows of W and b; ā̇ of the layer below (t2 holds z̄̇)
        for n in range(n_samples):
            for i in range(w):
                gzi = gz[k, n, i]
                for j in range(fan_in):
                    row, aj = ow + i * fan_in + j, a[k, n, j]
                    for t in range(CH):
                        H[row, q0 + t] += t2[n, i, t] * aj
                    if k > k0:
                        for t in range(CH):
                            H[row, q0 + t] += gzi * ad[k - 1, n, j, t]
                for t in range(CH):
                    H[ob + i, q0 + t] += t2[n, i, t]
            if k > k0:
                for j in range(fan_in):
                    gad[n, j, :] = 0.0
                    for i in range(w):
                        wij = theta[ow + i * fan_in + j]
                        for t in range(CH):
                            gad[n, j, t] += t2[n, i, t] * wij
                        t = ow + i * fan_in + j - q0
                        if 0 <= t < CH:
                            gad[n, j, t] += gz[k, n, i]


@njit(cache=True)
def _hessians(params, X, y, sizes, offs, ends, bn, act, eps):
    """(R, P, P): each run's lower triangle (and more) of the Hessian, in chunks of CH columns."""
    n_runs, n_params = params.shape
    n_hidden, n_samples, width = sizes.shape[0] - 2, X.shape[0], sizes[1:-1].max()
    lw = (n_hidden, n_samples, width)
    # Workspaces shared by all runs and chunks, never cleared: the kernels write all they read.
    vals = (
        np.zeros((n_hidden + 1, n_samples, max(width, X.shape[1]))),  # a (a[0] = X)
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
        np.empty((n_samples, width)),  # scratch: the layer's BN or σ input
    )
    tw = (n_samples, width, CH)
    tans = (
        np.empty((n_hidden, *tw)),  # ȧ
        np.empty((n_hidden, *tw)),  # u̇
        np.empty((n_hidden, *tw)),  # ẑ̇
        np.empty((n_hidden, width, CH)),  # ṡ
        np.empty((n_samples, CH)),  # ṙ
        np.empty(tw),  # ā̇
        np.empty(tw),  # ū̇ or ẑ̄̇
        np.empty(tw),  # z̄̇ (post: first BN input's adjoint tangent)
    )
    n_chunks = (n_params + CH - 1) // CH
    H = np.empty((n_params, n_chunks * CH))
    out = np.zeros((n_runs, n_params, n_params))
    for run in range(n_runs):
        theta = params[run]
        _values(theta, X, y, sizes, offs, bn, act, eps, vals)
        H[:] = 0.0
        for c in range(n_chunks):
            _chunk(theta, sizes, offs, ends, bn, c * CH, vals, tans, H)
        out[run] = H[:, :n_params]
    return out


def _lower_hessians(model: ModelConfig, params, X, y) -> np.ndarray:
    X = np.ascontiguousarray(torch.as_tensor(X).double().numpy())
    y = np.ascontiguousarray(torch.as_tensor(y).double().numpy().reshape(-1))
    params = np.ascontiguousarray(params, dtype=np.float64)
    if params.ndim != 2 or params.shape[1] != parameter_count(model, X.shape[1]):
        raise ValueError(f"params must be (runs, {parameter_count(model, X.shape[1])})")
    sizes = np.array([X.shape[1], *model.widths, 1], dtype=np.int64)
    # offs[k] = offsets of layer k's W, b, gamma, beta (the output layer last); ends[k] = the
    # number of parameters of layers ≤ k.
    offs, ends, o = np.zeros((len(sizes) - 1, 4), np.int64), np.zeros(len(sizes) - 1, np.int64), 0
    for k, (fan_in, w) in enumerate(zip(sizes[:-1], sizes[1:])):
        offs[k] = o, o + w * fan_in, o + w * fan_in + w, o + w * fan_in + 2 * w
        o += w * fan_in + w + (2 * w if model.bn != "none" and k < len(sizes) - 2 else 0)
        ends[k] = o
    bn, act = BN_CODES[model.bn], ACT_CODES[model.activation]
    return _hessians(params, X, y, sizes, offs, ends, bn, act, BN_EPS)


def hessian(model: ModelConfig, params, X, y) -> np.ndarray:
    """(R, P, P) exact Hessians of the MSE over all of X (BN in train mode), params (R, P)."""
    H = _lower_hessians(model, params, X, y)
    lower = np.tril(H)
    return lower + np.swapaxes(np.tril(H, -1), 1, 2)


def sharpness(model: ModelConfig, params, X, y) -> np.ndarray:
    """(R,) λ_max of each run's Hessian; params (R, P) float64 in the flat order."""
    H = torch.from_numpy(_lower_hessians(model, params, X, y))
    return torch.linalg.eigvalsh(H, UPLO="L")[:, -1].numpy()  # reads the lower triangle only
