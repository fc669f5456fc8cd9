"""The epoch kernel of one ``Shape`` in LLVM IR: block by block, per mini-batch the gather, the
passes over the batch (``network.py``) with BatchNorm's statistics between them, the weight
gradients, the optimizer update; then the train and test MSE in eval mode."""

from __future__ import annotations

import llvmlite.ir as ir

from .args import ARGS, ARRAY, STATS, Arguments, ir_types
from .ir import F32, F64, I1, I8, I32, I64, PTR, Builder, module
from .network import Network, Pass
from .shape import Shape, scratch_rows

GRAD_REGISTERS = 24  # weight-gradient sums kept in registers at once (of 32 vector registers)
BN_EPS = 1e-5  # nn.BatchNorm1d's default


class Kernel:
    """Writes the epoch kernel of one ``Shape`` in LLVM IR (``build``)."""

    def __init__(self, shape: Shape):
        self.shape = shape
        self.F = shape.sizes[0]  # input features
        self.H = sum(shape.widths)  # hidden units
        self.module = module("bnlr_fused")
        signature = ir.FunctionType(ir.VoidType(), ir_types(shape.dtype))
        self.fn = ir.Function(self.module, signature, "epoch")
        for spec, arg in zip(ARGS, self.fn.args):
            arg.name = spec.name
            if spec.kind == ARRAY:
                arg.add_attribute("noalias")
        self.args = Arguments(*self.fn.args)
        self.bd = Builder(self.module, self.fn, shape.dtype)
        self.L = self.bd.L
        self.net = Network(self)
        # Set by ``build`` as it writes the loops (IR values, i64):
        self.param_base = None  # this block's first element of params, grads, moment1, moment2
        self.stats_base = None  # this block's first element of running_stats
        self.lane_base = None  # this block's first lane (of has_buffer, lane_order, coef, loss)
        self.n_steps = None  # mini-batches per epoch
        self.step = None  # this mini-batch's index
        self.batch_samples = None  # this mini-batch's samples (the last may have fewer)

    # ---- where things are ----------------------------------------------------------------
    # rows of a sample's scratch: inputs, target, then z, a, q, g per hidden unit, and g of the
    # output (g: d loss / d a unit's pre-activation, for the weight gradients)
    def scratch_row(self, kind: str, u: int) -> int:
        return self.F + 1 + "zaqg".index(kind) * self.H + u

    @property
    def rows(self) -> int:
        return scratch_rows(self.F, self.H)

    def sample_rows(self, b):
        """Where sample b's scratch rows start (elements)."""
        return self.bd.b.mul(b, self.bd.i(self.rows * self.L))

    def unit(self, l: int, o: int) -> int:
        """Output o of Linear l among the rows g: a hidden unit, or the network's output."""
        return self.shape.hoff[l] + o if l < len(self.shape.widths) else self.H

    def stat(self, what: str, u: int):
        """A per-block statistic of hidden unit u (``STATS``)."""
        at = self.bd.i((STATS.index(what) * self.H + u) * self.L)
        return self.bd.load_shared(self.args.batch_stats, at)

    def set_stat(self, what: str, u: int, value) -> None:
        at = self.bd.i((STATS.index(what) * self.H + u) * self.L)
        self.bd.store(value, self.args.batch_stats, at)

    def param(self, row: int):
        """Row ``row`` of this block's parameters (``Shape.w``, ``gamma``, ``beta``)."""
        return self.bd.load_shared(self.args.params, self.bd.add_i(self.param_base, row * self.L))

    # ---- the whole kernel -----------------------------------------------------------------
    def build(self) -> ir.Module:
        sh, bd, args = self.shape, self.bd, self.args
        b = bd.b
        N = args.n_train
        self.n_steps = b.sdiv(b.sub(b.add(N, args.batch_size), bd.i(1)), args.batch_size)
        with bd.loop(args.n_blocks) as blk:
            self.param_base = b.mul(blk, bd.i(sh.n_params * self.L))
            self.stats_base = b.mul(blk, bd.i(2 * self.H * self.L))
            self.lane_base = b.mul(blk, bd.i(self.L))
            with bd.loop(self.n_steps) as s:
                self.step = s
                start = b.mul(s, args.batch_size)
                rest = b.sub(N, start)
                self.batch_samples = b.select(
                    b.icmp_signed("<", rest, args.batch_size), rest, args.batch_size
                )
                self.gather(start)
                self.train_step()
                self.weight_grads()  # (grads: every row is stored, none accumulated)
                self.update()
            self.eval_mode()
            for split, (XY, n) in enumerate(((args.train_xy, N), (args.test_xy, args.n_test))):
                self.eval_split(split, XY, n)
        b.ret_void()
        return self.module

    def gather(self, start) -> None:
        """This batch's samples, per run (each lane its own batch order), into the scratch rows.
        ``order`` is (distinct orders, N) int32 for this epoch, ``lane_order`` (Rp,) int32 the
        row of each lane; ``train_xy`` is (N, F + 1): features, then target."""
        bd, args, b, L = self.bd, self.args, self.bd.b, self.L
        width = self.F + 1
        size = 4 if bd.ft == F32 else 8
        ivt, i64v = ir.VectorType(I32, L), ir.VectorType(I64, L)
        pvt, mask = ir.VectorType(PTR, L), ir.Constant(ir.VectorType(I1, L), [1] * L)
        name = f"llvm.masked.gather.v{L}{'f32' if bd.ft == F32 else 'f64'}.v{L}p0"
        gather = self.module.globals.get(name) or ir.Function(
            self.module, ir.FunctionType(bd.vt, [pvt, I32, mask.type, bd.vt]), name
        )
        base = bd.splat(b.ptrtoint(args.train_xy, I64))
        # each lane's batch order: row lane_order[lane] of order (distinct orders, N) int32
        lane_rows = b.load(bd.ptr(args.lane_order, self.lane_base, I32), typ=ivt, align=4)
        order_at = b.add(
            bd.splat(b.ptrtoint(args.order, I64)),
            b.mul(b.sext(lane_rows, i64v), bd.splat(b.mul(args.n_train, bd.i(4)))),
        )
        iname = f"llvm.masked.gather.v{L}i32.v{L}p0"
        igather = self.module.globals.get(iname) or ir.Function(
            self.module, ir.FunctionType(ivt, [pvt, I32, mask.type, ivt]), iname
        )
        with bd.loop(self.batch_samples) as s:
            o = self.sample_rows(s)
            here = b.add(order_at, bd.splat(b.mul(bd.add_i(start, s), bd.i(4))))
            rows = b.call(
                igather, [b.inttoptr(here, pvt), ir.Constant(I32, 4), mask, ir.Constant(ivt, None)]
            )
            offs = b.add(base, b.mul(b.sext(rows, i64v), ir.Constant(i64v, [width * size] * L)))
            for i in range(width):
                addrs = b.inttoptr(b.add(offs, ir.Constant(i64v, [i * size] * L)), pvt)
                col = b.call(
                    gather, [addrs, ir.Constant(I32, size), mask, ir.Constant(bd.vt, None)]
                )
                bd.store(col, args.scratch, bd.add_i(o, i * L))

    def train_step(self) -> None:
        """The passes of one mini-batch, written by walking the network once: a sample loop is
        open while the network is walked; where BatchNorm needs the batch's statistics
        (forward) or sums (backward), the loop is closed, the statistics are computed, and the
        next loop opens."""
        bd = self.bd
        state = {}

        def open_loop():
            cm = bd.loop(self.batch_samples)
            b = cm.__enter__()
            state["cm"] = cm
            return Pass(self, True, offset=self.sample_rows(b))

        def close(ps, what):
            state["cm"].__exit__(None, None, None)
            kind, l, src = what
            (self.stats if kind == "stats" else self.stats_back)(l, src)
            return open_loop()

        ps = open_loop()
        ps, pred = self.net.forward(ps, close)
        g = bd.mul(bd.sub(pred, ps.get(("y",))), bd.splat(self.norm()))
        self.net.backward(ps, g, close)
        state["cm"].__exit__(None, None, None)

    def norm(self):
        """MSELoss's backward: 2 (pred - y) / B, with 2 / B computed in float64 as ATen does."""
        b, bd = self.bd.b, self.bd
        two_b = b.fdiv(ir.Constant(F64, 2.0), b.sitofp(self.batch_samples, F64))
        return two_b if bd.ft == F64 else b.fptrunc(two_b, F32)

    # ---- between passes: batch statistics and sums -----------------------------------------
    def batch_sums(self, units, term) -> list:
        """Per unit, Σ over the batch of term(o, u) (float64 lanes), for the given units."""
        bd = self.bd
        accs = [bd.alloca(wide=True) for _ in units]
        for acc in accs:
            bd.b.store(bd.const(0.0, wide=True), acc)
        with bd.loop(self.batch_samples) as b:
            o = self.sample_rows(b)
            for acc, u in zip(accs, units):
                bd.b.store(bd.b.fadd(bd.b.load(acc, typ=bd.dvt), term(o, u)), acc)
        return [bd.b.load(acc, typ=bd.dvt) for acc in accs]

    def stats(self, l: int, kind: str) -> None:
        """Batch statistics of layer l's BN inputs: mean, invstd, the running statistics, and
        alpha / shift for the next pass (ATen's training-mode batch norm)."""
        sh, bd, H = self.shape, self.bd, self.H
        units = [sh.hoff[l] + j for j in range(sh.widths[l])]
        scratch = self.args.scratch

        def x(o, u):
            return bd.wide(bd.load(scratch, bd.add_i(o, self.scratch_row(kind, u) * self.L)))

        Bw = bd.splat(bd.b.sitofp(self.batch_samples, F64))
        means = [bd.b.fdiv(s, Bw) for s in self.batch_sums(units, x)]
        mean_of = dict(zip(units, means))

        def sq(o, u):
            d = bd.b.fsub(x(o, u), mean_of[u])
            return bd.b.fmul(d, d)

        var_sums = self.batch_sums(units, sq)
        mom = bd.splat(self.args.bn_momentum)
        one_m = bd.b.fsub(bd.const(1.0, wide=True), mom)
        Bm1 = bd.b.fsub(Bw, bd.const(1.0, wide=True))
        running = self.args.running_stats
        for j, (u, m, v) in enumerate(zip(units, means, var_sums)):
            self.set_stat("mean", u, bd.narrow(m))
            inv = bd.b.fdiv(
                bd.const(1.0, wide=True),
                bd.sqrt(bd.b.fadd(bd.b.fdiv(v, Bw), bd.const(BN_EPS, wide=True))),
            )
            self.set_stat("invstd", u, bd.narrow(inv))
            for row, stat in ((u, m), (H + u, bd.b.fdiv(v, Bm1))):
                at = bd.add_i(self.stats_base, row * self.L)
                old = bd.wide(bd.load(running, at))
                new = bd.b.fadd(bd.b.fmul(mom, stat), bd.b.fmul(one_m, old))
                bd.store(bd.narrow(new), running, at)
            alpha = bd.mul(self.stat("invstd", u), self.param(sh.gamma(l, j)))
            self.set_stat("alpha", u, alpha)
            shift = bd.sub(self.param(sh.beta(l, j)), bd.mul(self.stat("mean", u), alpha))
            self.set_stat("shift", u, shift)

    def stats_back(self, l: int, kind: str) -> None:
        """Sums over the batch for BN's backward; d gamma and d beta into grads."""
        sh, bd = self.shape, self.bd
        units = [sh.hoff[l] + j for j in range(sh.widths[l])]
        scratch, grads = self.args.scratch, self.args.grads

        def q(o, u):
            return bd.wide(bd.load(scratch, bd.add_i(o, self.scratch_row("q", u) * self.L)))

        def dotp(o, u):
            x = bd.load(scratch, bd.add_i(o, self.scratch_row(kind, u) * self.L))
            return bd.b.fmul(bd.wide(bd.sub(x, self.stat("mean", u))), q(o, u))

        sums = self.batch_sums(units, q)
        dots = self.batch_sums(units, dotp)
        Bw = bd.splat(bd.b.sitofp(self.batch_samples, F64))
        for j, (u, s, dp) in enumerate(zip(units, sums, dots)):
            inv = bd.wide(self.stat("invstd", u))
            bd.store(
                bd.narrow(bd.b.fmul(dp, inv)),
                grads,
                bd.add_i(self.param_base, sh.gamma(l, j) * self.L),
            )
            bd.store(bd.narrow(s), grads, bd.add_i(self.param_base, sh.beta(l, j) * self.L))
            proj_scale = bd.b.fdiv(bd.b.fmul(bd.b.fmul(dp, inv), inv), Bw)
            self.set_stat("proj_scale", u, bd.narrow(proj_scale))
            self.set_stat("grad_mean", u, bd.narrow(bd.b.fdiv(s, Bw)))

    def weight_grads(self) -> None:
        """grads of every Linear's weight and bias: per block of outputs, Σ over the batch of
        g · input, in sample order, accumulated in registers and stored once (the same sums in
        the same order as adding each sample's share into grads)."""
        sh, bd, scratch = self.shape, self.bd, self.args.scratch
        for l in range(len(sh.widths) + 1):
            n_in, n_out = sh.sizes[l], sh.sizes[l + 1]
            chunk = max(1, GRAD_REGISTERS // (n_in + 1))
            for first in range(0, n_out, chunk):
                outs = range(first, min(n_out, first + chunk))
                accs = {(o, i): bd.alloca() for o in outs for i in range(n_in + 1)}
                for acc in accs.values():
                    bd.b.store(bd.const(0.0), acc)
                with bd.loop(self.batch_samples) as b:
                    ps = Pass(self, True, offset=self.sample_rows(b))
                    inputs = self.net.layer_inputs(ps, l)
                    for o in outs:
                        at = bd.add_i(ps.offset, self.scratch_row("g", self.unit(l, o)) * self.L)
                        g = bd.load(scratch, at)
                        for i, x in enumerate([*inputs, None]):
                            acc = accs[(o, i)]
                            term = g if x is None else bd.mul(g, x)
                            bd.b.store(bd.add(bd.b.load(acc, typ=bd.vt), term), acc)
                for (o, i), acc in accs.items():
                    at = bd.add_i(self.param_base, sh.w(l, o, i) * self.L)
                    bd.store(bd.b.load(acc, typ=bd.vt), self.args.grads, at)

    # ---- the optimizer ------------------------------------------------------------------
    def coef(self, which: int):
        """This step's per-run coefficient ``which`` (coef is (K, steps, Rp))."""
        bd, b = self.bd, self.bd.b
        row = bd.add_i(b.mul(bd.i(which), self.n_steps), self.step)
        return bd.load(self.args.coef, bd.add_i(b.mul(row, self.args.n_lanes), self.lane_base))

    def update(self) -> None:
        sh, bd, args = self.shape, self.bd, self.args
        lr, second = self.coef(0), self.coef(1)
        zero = bd.const(0.0)
        if sh.optimizer == "sgd":
            m = second
            use = bd.cmp("!=", m, zero)
            hb_at = bd.ptr(args.has_buffer, self.lane_base, I8)
            hb = bd.b.icmp_unsigned(
                "!=",
                bd.b.load(hb_at, typ=ir.VectorType(I8, self.L), align=1),
                ir.Constant(ir.VectorType(I8, self.L), [0] * self.L),
            )
        else:
            bc2s, w1 = self.coef(1), self.coef(2)
            decay = self.coef(3) if sh.optimizer == "adamw" else None
        wd, damp1 = bd.splat(args.weight_decay), bd.splat(args.one_minus_dampening)
        with bd.loop(bd.i(sh.n_params)) as k:
            at = bd.add_i(self.param_base, bd.b.mul(k, bd.i(self.L)))
            p = bd.load(args.params, at)
            g = bd.load(args.grads, at)
            if sh.optimizer == "sgd":
                if sh.weight_decay:
                    g = bd.add(g, bd.mul(wd, p))
                if sh.momentum:
                    old = bd.load(args.moment1, at)
                    buf = bd.select(hb, bd.add(bd.mul(old, m), bd.mul(damp1, g)), g)
                    bd.store(bd.select(use, buf, old), args.moment1, at)
                    step = bd.add(g, bd.mul(m, buf)) if sh.nesterov else buf
                    g = bd.select(use, step, g)
                bd.store(bd.sub(p, bd.mul(lr, g)), args.params, at)
            else:
                self.adam(p, g, at, lr, bc2s, w1, decay, wd)
        if sh.optimizer == "sgd" and sh.momentum:
            bd.b.store(bd.b.zext(bd.b.or_(hb, use), ir.VectorType(I8, self.L)), hb_at, align=1)

    def adam(self, p, g, at, lr, bc2s, w1, decay, wd) -> None:
        """torch.optim.Adam / AdamW's update of one parameter row."""
        sh, bd, args = self.shape, self.bd, self.args
        if sh.optimizer == "adam":
            if sh.weight_decay:
                g = bd.add(g, bd.mul(wd, p))
        else:
            p = bd.mul(p, decay)
        m1 = bd.load(args.moment1, at)
        # torch's lerp: m + w (g - m) for |w| < 0.5, else g - (g - m)(1 - w)
        small = bd.cmp("<", bd.fabs(w1), bd.const(0.5))
        diff = bd.sub(g, m1)
        m1 = bd.select(
            small, bd.add(m1, bd.mul(w1, diff)), bd.sub(g, bd.mul(diff, bd.sub(bd.const(1.0), w1)))
        )
        bd.store(m1, args.moment1, at)
        v = bd.add(
            bd.mul(bd.load(args.moment2, at), bd.splat(args.beta2)),
            bd.mul(bd.mul(bd.splat(args.one_minus_beta2), g), g),
        )
        bd.store(v, args.moment2, at)
        den = bd.add(bd.div(bd.sqrt(v), bc2s), bd.splat(args.eps))
        bd.store(bd.sub(p, bd.mul(lr, bd.div(m1, den))), args.params, at)

    # ---- evaluation ------------------------------------------------------------------------
    def eval_mode(self) -> None:
        """alpha and shift per BN unit from the running statistics (eval mode)."""
        sh, bd = self.shape, self.bd
        if sh.bn == "none":
            return
        for l, width in enumerate(sh.widths):
            for j in range(width):
                u = sh.hoff[l] + j
                rm = bd.load(self.args.running_stats, bd.add_i(self.stats_base, u * self.L))
                at = bd.add_i(self.stats_base, (self.H + u) * self.L)
                rv = bd.load(self.args.running_stats, at)
                inv = bd.div(bd.const(1.0), bd.sqrt(bd.add(rv, bd.const(BN_EPS))))
                alpha = bd.mul(inv, self.param(sh.gamma(l, j)))
                self.set_stat("alpha", u, alpha)
                self.set_stat("shift", u, bd.sub(self.param(sh.beta(l, j)), bd.mul(rm, alpha)))

    def eval_split(self, split: int, XY, n) -> None:
        """The split's MSE per run, in eval mode, into loss[split, lanes] (float64). Two samples
        go through the network at once, as the two halves of vectors of 2 L lanes: two
        independent chains of instructions, which the CPU overlaps (one sample's forward pass
        is a long chain of dependent operations). An odd last sample is paired with itself and
        its second copy not counted."""
        bd, b = self.bd, self.bd.b
        with bd.samples(2):
            acc = bd.alloca(wide=True)
            b.store(bd.const(0.0, wide=True), acc)
            last = b.sub(n, bd.i(1))
            with bd.loop(b.sdiv(b.add(n, bd.i(1)), bd.i(2))) as k:
                first = b.mul(k, bd.i(2))
                second = b.add(first, bd.i(1))
                rows = [
                    b.mul(s, bd.i(self.F + 1))
                    for s in (first, b.select(b.icmp_signed("<", second, n), second, last))
                ]

                def column(i):
                    return bd.per_sample([bd.scalar(XY, bd.add_i(r, i), bd.ft) for r in rows])

                inputs = {("x", i): column(i) for i in range(self.F)}
                inputs[("y",)] = column(self.F)
                ps = Pass(self, False, inputs=inputs)
                ps, pred = self.net.forward(ps, None)
                d = bd.sub(pred, ps.get(("y",)))
                counted = bd.per_sample([ir.Constant(I1, 1), b.icmp_signed("<", second, n)])
                sq = bd.select(counted, bd.wide(bd.mul(d, d)), bd.const(0.0, wide=True))
                b.store(b.fadd(b.load(acc, typ=bd.dvt), sq), acc)
            total = bd.halves_sum(b.load(acc, typ=bd.dvt))
        mean = b.fdiv(total, bd.splat(b.sitofp(n, F64)))
        at = bd.add_i(b.mul(bd.i(split), self.args.n_lanes), self.lane_base)
        b.store(mean, bd.ptr(self.args.loss, at, F64), align=8)


def llvm_ir(shape: Shape) -> str:
    """The kernel's LLVM IR before optimisation (for reading)."""
    return str(Kernel(shape).build())
