"""The network inside a sample loop: one sample's forward and backward pass as straight-line code,
every unit unrolled, its values kept in a ``Pass`` by (kind, layer, unit)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .epoch import Kernel

LEAKY_SLOPE = 0.01  # F.leaky_relu's default

# The values of a pass, by key:
#   ("x", i), ("y",)    a sample's feature i and its target
#   ("z", l, j)         hidden layer l's unit j before its activation (and before BN if "pre")
#   ("n", l, j)         BN "pre"'s output of z: alpha · z + shift
#   ("a", l, j)         the activation's output
#   ("v", l, j)         BN "post"'s output of a
#   ("q", l, j)         d loss / d (the BN output), kept for BN's backward
#   ("out", l, o)       Linear l's output o (l the last Linear: the prediction)


class Pass:
    """One loop over the samples of a batch (or of an eval split) for one block: the values its
    body already holds, by key. Values from an earlier pass are loaded from the sample's scratch
    row (or recomputed from it)."""

    def __init__(self, k: Kernel, train: bool, offset=None, inputs=None):
        self.k, self.train, self.values = k, train, {}
        self.offset = offset  # training: where the sample's scratch rows start (elements, i64)
        self.inputs = inputs  # eval: the sample's features and target, by key (broadcast)

    def let(self, key: tuple, value):
        self.values[key] = value
        return value

    def stash(self, key: tuple) -> None:
        """Stores a hidden unit's value in the sample's scratch row for a later pass."""
        kind, l, j = key
        k = self.k
        at = k.bd.add_i(self.offset, k.scratch_row(kind, k.shape.hoff[l] + j) * k.L)
        k.bd.store(self.values[key], k.args.scratch, at)

    def get(self, key: tuple):
        if key in self.values:
            return self.values[key]
        k, bd = self.k, self.k.bd
        kind = key[0]
        if kind in ("x", "y"):
            if not self.train:
                return self.let(key, self.inputs[key])
            row = key[1] if kind == "x" else k.F
            return self.let(key, bd.load(k.args.scratch, bd.add_i(self.offset, row * k.L)))
        _, l, j = key
        u = k.shape.hoff[l] + j
        if kind in ("z", "a", "q"):
            at = bd.add_i(self.offset, k.scratch_row(kind, u) * k.L)
            return self.let(key, bd.load(k.args.scratch, at))
        if kind in ("n", "v"):  # BN output: n (pre, of z) or v (post, of a), x · alpha + shift
            x = self.get(("z" if kind == "n" else "a", l, j))
            return self.let(key, bd.add(bd.mul(x, k.stat("alpha", u)), k.stat("shift", u)))
        raise KeyError(key)


class Network:
    """Writes a sample's pass through the network of ``k.shape`` into the kernel ``k``."""

    def __init__(self, k: Kernel):
        self.k, self.bd, self.shape = k, k.bd, k.shape

    def act(self, z):
        bd, a = self.bd, self.shape.activation
        zero = bd.const(0.0)
        if a == "tanh":
            return bd.tanh(z)
        if a == "sigmoid":
            return bd.sigmoid(z)
        if a == "relu":  # clamp_min(z, 0): NaN stays NaN
            return bd.select(bd.cmp("<", z, zero), zero, z)
        return bd.select(bd.cmp(">", z, zero), z, bd.mul(z, bd.const(LEAKY_SLOPE)))

    def act_backward(self, g, pre, post):
        """autograd's formulas: tanh, sigmoid, relu from the output, leaky_relu from the input."""
        bd, a = self.bd, self.shape.activation
        one, zero = bd.const(1.0), bd.const(0.0)
        if a == "tanh":
            return bd.mul(g, bd.sub(one, bd.mul(post, post)))
        if a == "sigmoid":
            return bd.mul(bd.mul(g, bd.sub(one, post)), post)
        if a == "relu":
            return bd.select(bd.cmp("<=", post, zero), zero, g)
        return bd.select(bd.cmp(">", pre, zero), g, bd.mul(g, bd.const(LEAKY_SLOPE)))

    def layer_inputs(self, ps: Pass, l: int) -> list:
        if l == 0:
            return [ps.get(("x", i)) for i in range(self.k.F)]
        kind = "v" if self.shape.bn == "post" else "a"
        return [ps.get((kind, l - 1, j)) for j in range(self.shape.widths[l - 1])]

    def linear(self, ps: Pass, l: int, inputs: list, width: int, kind: str) -> list:
        sh, param = self.shape, self.k.param
        n = len(inputs)
        return [
            ps.let(
                (kind, l, o),
                self.bd.dot(
                    [(param(sh.w(l, o, i)), x) for i, x in enumerate(inputs)],
                    param(sh.w(l, o, n)),
                ),
            )
            for o in range(width)
        ]

    def forward(self, ps: Pass, barrier):
        """The forward pass up to the prediction; ``barrier`` (training with BN) ends a pass
        where the batch statistics are needed and returns the next."""
        sh = self.shape
        train = ps.train
        for l, width in enumerate(sh.widths):
            inputs = self.layer_inputs(ps, l)
            self.linear(ps, l, inputs, width, "z")
            if sh.bn == "pre" and train:
                for j in range(width):
                    ps.stash(("z", l, j))
                ps = barrier(ps, ("stats", l, "z"))
            for j in range(width):
                pre = ps.get(("n" if sh.bn == "pre" else "z", l, j))
                ps.let(("a", l, j), self.act(pre))
                if train:  # (read by the next pass, or by the weight gradients)
                    ps.stash(("a", l, j))
                    if sh.bn == "post" and sh.activation == "leaky_relu":  # its backward reads z
                        ps.stash(("z", l, j))
            if sh.bn == "post" and train:
                ps = barrier(ps, ("stats", l, "a"))
        last = len(sh.widths)
        (pred,) = self.linear(ps, last, self.layer_inputs(ps, last), 1, "out")
        return ps, pred

    def keep_grads(self, ps: Pass, l: int, gz: list) -> None:
        """Stashes this sample's d loss / d (layer l's outputs) for ``Kernel.weight_grads``."""
        k = self.k
        for o, g in enumerate(gz):
            at = self.bd.add_i(ps.offset, k.scratch_row("g", k.unit(l, o)) * k.L)
            self.bd.store(g, k.args.scratch, at)

    def backward(self, ps: Pass, g, barrier) -> Pass:
        sh, bd, param = self.shape, self.bd, self.k.param
        L = len(sh.widths)
        self.keep_grads(ps, L, [g])
        ga = [bd.mul(param(sh.w(L, 0, j)), g) for j in range(sh.widths[-1])]
        for l in range(L - 1, -1, -1):
            width = sh.widths[l]
            if sh.bn == "post":  # ga is d loss / d v (the BN output): back through BN
                ps, ga = self.through_bn(ps, l, ga, "a", barrier)
            gz = []
            for j in range(width):
                post = ps.get(("a", l, j))
                pre = post
                if sh.activation == "leaky_relu":
                    pre = ps.get(("n" if sh.bn == "pre" else "z", l, j))
                gz.append(self.act_backward(ga[j], pre, post))
            if sh.bn == "pre":  # gz is d loss / d n (the BN output): back through BN
                ps, gz = self.through_bn(ps, l, gz, "z", barrier)
            self.keep_grads(ps, l, gz)
            if l > 0:
                ga = [
                    self.dot_rows([(param(sh.w(l, o, i)), gz[o]) for o in range(width)])
                    for i in range(sh.widths[l - 1])
                ]
        return ps

    def through_bn(self, ps: Pass, l: int, grads: list, kind: str, barrier):
        """From d loss / d (layer l's BN output) to d loss / d (its input, rows ``kind``): the
        gradients are stashed, the pass ends for the batch sums, the next pass applies them."""
        for j, g in enumerate(grads):
            ps.let(("q", l, j), g)
            ps.stash(("q", l, j))
        ps = barrier(ps, ("back", l, kind))
        return ps, [self.bn_grad(ps, l, j, kind) for j in range(len(grads))]

    def dot_rows(self, pairs):
        bd = self.bd
        acc = bd.mul(*pairs[0])
        for a, b in pairs[1:]:
            acc = bd.add(acc, bd.mul(a, b))
        return acc

    def bn_grad(self, ps: Pass, l: int, j: int, kind: str):
        """ATen's batch-norm backward for one sample: d loss / d (the BN input)."""
        k, bd, u = self.k, self.bd, self.shape.hoff[l] + j
        q, x = ps.get(("q", l, j)), ps.get((kind, l, j))
        centred = bd.sub(x, k.stat("mean", u))
        g = bd.sub(bd.sub(q, k.stat("grad_mean", u)), bd.mul(centred, k.stat("proj_scale", u)))
        return bd.mul(bd.mul(g, k.stat("invstd", u)), k.param(self.shape.gamma(l, j)))
