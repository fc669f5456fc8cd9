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
def _bn_forward(x, xd, zh, s_out, m_out, l, w, q_end, eps):
    """Normalises x[:, :w] (N, w) over samples into zh; in place turns the tangents xd (N, w, P)
    into ẑ̇ = (ẋ - mean ẋ - ẑ·m)/s on [0, q_end), with m = mean(ẑ ẋ) = ṡ kept in m_out[l]."""
    n_samples = x.shape[0]
    mu_d = np.zeros(q_end)
    for i in range(w):
        mu = 0.0
        for n in range(n_samples):
            mu += x[n, i]
        mu /= n_samples
        var = 0.0
        for n in range(n_samples):
            var += (x[n, i] - mu) ** 2
        s = np.sqrt(var / n_samples + eps)
        s_out[l, i] = s
        for n in range(n_samples):
            zh[l, n, i] = (x[n, i] - mu) / s
        mu_d[:] = 0.0
        m = m_out[l, i]
        m[:q_end] = 0.0
        for n in range(n_samples):
            z = zh[l, n, i]
            for q in range(q_end):
                mu_d[q] += xd[n, i, q]
                m[q] += z * xd[n, i, q]
        for q in range(q_end):
            mu_d[q] /= n_samples
            m[q] /= n_samples
        for n in range(n_samples):
            z = zh[l, n, i]
            for q in range(q_end):
                xd[n, i, q] = (xd[n, i, q] - mu_d[q] - z * m[q]) / s


@njit(cache=True)
def _bn_backward(gz, gzd, zh, zhd, s, m, w, q_end, gx, gxd):
    """BN train-mode backward and its tangent: from ẑ's adjoint gz (N, w) and tangent gzd
    (N, w, P) to x's, gx and gxd, on [0, q_end). zh, zhd: ẑ and ẑ̇; s, m: (w,), (w, P) = ṡ."""
    n_samples = gz.shape[0]
    a_d = np.zeros(q_end)
    b_d = np.zeros(q_end)
    for i in range(w):
        a = 0.0
        b = 0.0
        for n in range(n_samples):
            a += gz[n, i]
            b += gz[n, i] * zh[n, i]
        a /= n_samples
        b /= n_samples
        a_d[:] = 0.0
        b_d[:] = 0.0
        for n in range(n_samples):
            g, z = gz[n, i], zh[n, i]
            for q in range(q_end):
                a_d[q] += gzd[n, i, q]
                b_d[q] += gzd[n, i, q] * z + g * zhd[n, i, q]
        for q in range(q_end):
            a_d[q] /= n_samples
            b_d[q] /= n_samples
        inv = 1.0 / s[i]
        for n in range(n_samples):
            z = zh[n, i]
            gx[n, i] = (gz[n, i] - a - z * b) * inv
            for q in range(q_end):
                gxd[n, i, q] = (
                    -m[i, q] * gx[n, i]
                    + gzd[n, i, q]
                    - a_d[q]
                    - zhd[n, i, q] * b
                    - z * b_d[q]
                ) * inv


@njit(cache=True)
def _hessian_one(theta, X, y, sizes, bn, act, eps, H, ws):
    """The lower triangle (and each layer's diagonal block) of one run's Hessian into H (P, P)."""
    n_samples = X.shape[0]
    n_hidden = sizes.shape[0] - 2
    n_params = theta.shape[0]
    # Offsets of each hidden layer's W, b, gamma, beta; ends[k] = params of layers ≤ k.
    off_w = np.zeros(n_hidden + 1, np.int64)
    ends = np.zeros(n_hidden + 1, np.int64)
    o = 0
    for k in range(n_hidden + 1):
        off_w[k] = o
        o += sizes[k + 1] * sizes[k] + sizes[k + 1] + (2 * sizes[k + 1] if bn and k < n_hidden else 0)
        ends[k] = o
    a, u, zh, s, a_d, u_d, zh_d, m, x, r, r_d, g_a, g_ad, g_u, g_ud, g_z, g_zd = ws
    a[0, :, : X.shape[1]] = X
    for k in range(n_hidden):
        fan_in, w, q_prev, q_end = sizes[k], sizes[k + 1], ends[k - 1] if k else 0, ends[k]
        ow, ob = off_w[k], off_w[k] + w * fan_in
        og, obeta = ob + w, ob + 2 * w
        # z = W a + b and ż, into u_d (none, post) or zh_d (pre: BN's input)
        zd = zh_d[k] if bn == 1 else u_d[k]
        for n in range(n_samples):
            for i in range(w):
                z = theta[ob + i]
                zq = zd[n, i]
                zq[:q_end] = 0.0
                for j in range(fan_in):
                    wij = theta[ow + i * fan_in + j]
                    z += wij * a[k, n, j]
                    if k:
                        aq = a_d[k, n, j]
                        for q in range(q_prev):
                            zq[q] += wij * aq[q]
                    zq[ow + i * fan_in + j] += a[k, n, j]
                zq[ob + i] += 1.0
                if bn == 1:
                    x[n, i] = z
                else:
                    u[k, n, i] = z
        if bn == 1:
            _bn_forward(x, zh_d[k], zh, s, m, k, w, q_end, eps)
            for n in range(n_samples):
                for i in range(w):
                    g, z = theta[og + i], zh[k, n, i]
                    u[k, n, i] = g * z + theta[obeta + i]
                    uq, zq = u_d[k, n, i], zh_d[k, n, i]
                    for q in range(q_end):
                        uq[q] = g * zq[q]
                    uq[og + i] += z
                    uq[obeta + i] += 1.0
        for n in range(n_samples):
            for i in range(w):
                val, d1, _ = _act(u[k, n, i], act)
                uq = u_d[k, n, i]
                if bn == 2:
                    x[n, i] = val
                    xq = zh_d[k, n, i]
                    for q in range(q_end):
                        xq[q] = d1 * uq[q]
                else:
                    a[k + 1, n, i] = val
                    aq = a_d[k + 1, n, i]
                    for q in range(q_end):
                        aq[q] = d1 * uq[q]
        if bn == 2:
            _bn_forward(x, zh_d[k], zh, s, m, k, w, q_end, eps)
            for n in range(n_samples):
                for i in range(w):
                    g, z = theta[og + i], zh[k, n, i]
                    a[k + 1, n, i] = g * z + theta[obeta + i]
                    aq, zq = a_d[k + 1, n, i], zh_d[k, n, i]
                    for q in range(q_end):
                        aq[q] = g * zq[q]
                    aq[og + i] += z
                    aq[obeta + i] += 1.0
    # Output f = W_o a_L + b_o; its adjoint r = dL/df = 2 (f - y) / N and tangent.
    w_last, q_last, oo = sizes[n_hidden], ends[n_hidden - 1], off_w[n_hidden]
    for n in range(n_samples):
        f = theta[oo + w_last]
        rq = r_d[n]
        rq[:q_last] = 0.0
        for j in range(w_last):
            wj = theta[oo + j]
            f += wj * a[n_hidden, n, j]
            aq = a_d[n_hidden, n, j]
            for q in range(q_last):
                rq[q] += wj * aq[q]
            rq[oo + j] = a[n_hidden, n, j]
        rq[oo + w_last] = 1.0
        r[n] = 2.0 * (f - y[n]) / n_samples
        for q in range(n_params):
            rq[q] *= 2.0 / n_samples
    # Output rows (all columns), and the adjoint of a_L on the prefix of layers ≤ L.
    for n in range(n_samples):
        rq = r_d[n]
        for j in range(w_last):
            aj, hq, aq = a[n_hidden, n, j], H[oo + j], a_d[n_hidden, n, j]
            for q in range(n_params):
                hq[q] += rq[q] * aj
            for q in range(q_last):
                hq[q] += r[n] * aq[q]
            wj = theta[oo + j]
            g_a[n, j] = r[n] * wj
            gq = g_ad[n, j]
            for q in range(q_last):
                gq[q] = rq[q] * wj
        hq = H[oo + w_last]
        for q in range(n_params):
            hq[q] += rq[q]
    for k in range(n_hidden - 1, -1, -1):
        fan_in, w, q_prev, q_end = sizes[k], sizes[k + 1], ends[k - 1] if k else 0, ends[k]
        ow, ob = off_w[k], off_w[k] + w * fan_in
        og, obeta = ob + w, ob + 2 * w
        if bn == 2:  # a = γ ẑ + β: gamma, beta rows; ẑ's adjoint; BN back to h = σ(u)
            for n in range(n_samples):
                for i in range(w):
                    g, ga, z = theta[og + i], g_a[n, i], zh[k, n, i]
                    gq, zq, hg, hb = g_ad[n, i], zh_d[k, n, i], H[og + i], H[obeta + i]
                    cq = g_ud[n, i]
                    for q in range(q_end):
                        hg[q] += gq[q] * z + ga * zq[q]
                        hb[q] += gq[q]
                        cq[q] = gq[q] * g
                    cq[og + i] += ga
                    g_u[n, i] = ga * g
            _bn_backward(g_u, g_ud, zh[k], zh_d[k], s[k], m[k], w, q_end, g_a, g_ad)
        # through the activation: adjoint of u, into g_u (none, pre) or g_z (post)
        for n in range(n_samples):
            for i in range(w):
                _, d1, d2 = _act(u[k, n, i], act)
                ga, gq, uq = g_a[n, i], g_ad[n, i], u_d[k, n, i]
                c = ga * d2
                tq = g_zd[n, i] if bn == 2 else g_ud[n, i]
                for q in range(q_end):
                    tq[q] = gq[q] * d1 + c * uq[q]
                if bn == 2:
                    g_z[n, i] = ga * d1
                else:
                    g_u[n, i] = ga * d1
        if bn == 0:
            g_z[:, :w] = g_u[:, :w]
            g_zd[:, :w] = g_ud[:, :w]
        if bn == 1:  # u = γ ẑ + β: gamma, beta rows; ẑ's adjoint; BN back to z
            for n in range(n_samples):
                for i in range(w):
                    g, gu, z = theta[og + i], g_u[n, i], zh[k, n, i]
                    gq, zq, hg, hb = g_ud[n, i], zh_d[k, n, i], H[og + i], H[obeta + i]
                    for q in range(q_end):
                        hg[q] += gq[q] * z + gu * zq[q]
                        hb[q] += gq[q]
                        gq[q] *= g
                    gq[og + i] += gu
                    g_u[n, i] = gu * g
            _bn_backward(g_u, g_ud, zh[k], zh_d[k], s[k], m[k], w, q_end, g_z, g_zd)
        # z = W a + b: rows of W and b; the adjoint of the layer's input on its prefix
        for n in range(n_samples):
            for i in range(w):
                gz, gzq = g_z[n, i], g_zd[n, i]
                for j in range(fan_in):
                    hq = H[ow + i * fan_in + j]
                    aj = a[k, n, j]
                    for q in range(q_end):
                        hq[q] += gzq[q] * aj
                    if k:
                        aq = a_d[k, n, j]
                        for q in range(q_prev):
                            hq[q] += gz * aq[q]
                hq = H[ob + i]
                for q in range(q_end):
                    hq[q] += gzq[q]
            if k:
                for j in range(fan_in):
                    ga = 0.0
                    gq = g_ad[n, j]
                    gq[:q_prev] = 0.0
                    for i in range(w):
                        wij = theta[ow + i * fan_in + j]
                        ga += g_z[n, i] * wij
                        gzq = g_zd[n, i]
                        for q in range(q_prev):
                            gq[q] += gzq[q] * wij
                    g_a[n, j] = ga


@njit(cache=True)
def _hessians(params, X, y, sizes, bn, act, eps):
    n_runs, n_params = params.shape
    n_hidden, n_samples = sizes.shape[0] - 2, X.shape[0]
    width = sizes[1:-1].max()
    # One workspace for all runs, never zeroed: the kernel writes every entry it reads.
    # Names as in _hessian_one: values, then tangents on the last axis (directions).
    ws = (
        np.zeros((n_hidden + 1, n_samples, max(width, X.shape[1]))),  # a (a[0] = X)
        np.empty((n_hidden, n_samples, width)),  # u, the activation's input
        np.empty((n_hidden, n_samples, width)),  # ẑ
        np.empty((n_hidden, width)),  # BN's s = sqrt(var + eps)
        np.empty((n_hidden + 1, n_samples, width, n_params)),  # ȧ (ȧ[0] unused: X is fixed)
        np.empty((n_hidden, n_samples, width, n_params)),  # u̇
        np.empty((n_hidden, n_samples, width, n_params)),  # ẑ̇ (first BN's input tangent)
        np.empty((n_hidden, width, n_params)),  # ṡ = mean(ẑ ẋ)
        np.empty((n_samples, width)),  # the BN input of the layer at hand
        np.empty(n_samples),  # r = dL/df
        np.empty((n_samples, n_params)),  # ṙ
        np.empty((n_samples, width)),  # adjoint of a (post: of h = σ(u) after BN backward)
        np.empty((n_samples, width, n_params)),
        np.empty((n_samples, width)),  # adjoint of u (pre, none) or of ẑ (post)
        np.empty((n_samples, width, n_params)),
        np.empty((n_samples, width)),  # adjoint of z = W a + b
        np.empty((n_samples, width, n_params)),
    )
    out = np.zeros((n_runs, n_params, n_params))
    for r in range(n_runs):
        _hessian_one(params[r], X, y, sizes, bn, act, eps, out[r], ws)
    return out


def _lower_hessians(model: ModelConfig, params, X, y) -> np.ndarray:
    X = np.ascontiguousarray(torch.as_tensor(X).double().numpy())
    y = np.ascontiguousarray(torch.as_tensor(y).double().numpy().reshape(-1))
    params = np.ascontiguousarray(params, dtype=np.float64)
    if params.ndim != 2 or params.shape[1] != parameter_count(model, X.shape[1]):
        raise ValueError(f"params must be (runs, {parameter_count(model, X.shape[1])})")
    sizes = np.array([X.shape[1], *model.widths, 1], dtype=np.int64)
    return _hessians(
        params, X, y, sizes, BN_CODES[model.bn], ACT_CODES[model.activation], BN_EPS
    )


def hessian(model: ModelConfig, params, X, y) -> np.ndarray:
    """(R, P, P) exact Hessians of the MSE over all of X (BN in train mode), params (R, P)."""
    H = _lower_hessians(model, params, X, y)
    lower = np.tril(H)
    return lower + np.swapaxes(np.tril(H, -1), 1, 2)


def sharpness(model: ModelConfig, params, X, y) -> np.ndarray:
    """(R,) λ_max of each run's Hessian; params (R, P) float64 in the flat order."""
    H = torch.from_numpy(_lower_hessians(model, params, X, y))
    return torch.linalg.eigvalsh(H, UPLO="L")[:, -1].numpy()  # reads the lower triangle only
