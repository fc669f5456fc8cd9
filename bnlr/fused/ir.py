"""The IR builder: vectors of ``LANES`` runs, their arithmetic, loops, and tanh / sigmoid / expm1
written out in arithmetic; ``elementwise`` applies tanh or sigmoid to an array, for the tests."""

from __future__ import annotations

import ctypes
import threading
from contextlib import contextmanager

import llvmlite.binding as llvm
import llvmlite.ir as ir
import numpy as np

from . import jit
from .shape import LANES

I1, I8, I32, I64 = (ir.IntType(n) for n in (1, 8, 32, 64))
F32, F64 = ir.FloatType(), ir.DoubleType()
PTR = ir.PointerType()
FLAGS = ("contract",)  # a · b + c may fuse; no reassociation, NaN and inf kept
# float32 tanh (``Builder.tanh_rational``): |x| P(x²) / Q(x²), coefficients from a minimax fit
# of the relative error on [0, 9.02] (its error in exact arithmetic: 5e-8; tanh rounds to 1 in
# float32 from 9.01 on). |x| is clamped to TANH_CLAMP, where the rational is above 1, and the
# result to 1: tanh(±inf) = ±1 exactly, and never more.
TANH_P = (
    1.0,
    0.13404017686843872,
    0.0035220517311245203,
    2.100549500028137e-05,
    1.382390024673441e-08,
)
TANH_Q = (
    1.0,
    0.4673735201358795,
    0.025979921221733093,
    0.00033272826112806797,
    7.985807428667613e-07,
)
TANH_CLAMP = 9.5


class Builder:
    """An llvmlite IRBuilder for vectors of self.L values of one float type, with the few
    operations the kernels need."""

    def __init__(self, module, fn, dtype: str):
        self.module, self.fn = module, fn
        self.ft = F32 if dtype == "float32" else F64
        self.L0 = LANES[dtype]  # lanes of a block: one run each
        self._width(1)
        self.entry = fn.append_basic_block("entry")
        self.b = ir.IRBuilder(self.entry)

    def _width(self, samples: int) -> None:
        self.L = self.L0 * samples  # lanes of a vector: the block's runs, for each sample
        self.vt = ir.VectorType(self.ft, self.L)
        self.dvt = ir.VectorType(F64, self.L)

    @contextmanager
    def samples(self, count: int):
        """Inside: vectors hold ``count`` samples of the block's runs (a run's lane repeated
        every L0 lanes); values shared by the samples come from ``load_shared``."""
        self._width(count)
        try:
            yield
        finally:
            self._width(1)

    def load_shared(self, base, index):
        """The block's L0 values at base[index …] (a parameter or statistic per run), repeated
        for each sample of a vector."""
        v = self.b.load(self.ptr(base, index), typ=ir.VectorType(self.ft, self.L0), align=4)
        if self.L == self.L0:
            return v
        mask = [k % self.L0 for k in range(self.L)]
        return self.b.shuffle_vector(v, v, ir.Constant(ir.VectorType(I32, self.L), mask))

    def per_sample(self, scalars):
        """A vector whose k-th L0 lanes are all ``scalars[k]``."""
        parts = [self.splat_n(x, self.L0) for x in scalars]
        while len(parts) > 1:  # concatenate pairwise
            a, b = parts[0], parts[1]
            n = a.type.count + b.type.count
            mask = ir.Constant(ir.VectorType(I32, n), list(range(n)))
            parts = [self.b.shuffle_vector(a, b, mask), *parts[2:]]
        return parts[0]

    def halves_sum(self, v):
        """The sum of a two-sample vector's halves: L0 lanes."""
        lanes = ir.VectorType(I32, self.L0)
        lo = self.b.shuffle_vector(v, v, ir.Constant(lanes, list(range(self.L0))))
        hi = self.b.shuffle_vector(v, v, ir.Constant(lanes, list(range(self.L0, 2 * self.L0))))
        return self.b.fadd(lo, hi)

    # ---- constants and memory ----------------------------------------------------------
    def const(self, value: float, wide: bool = False):
        return ir.Constant(self.dvt if wide else self.vt, [float(value)] * self.L)

    def i(self, n: int):
        return ir.Constant(I64, n)

    def splat(self, scalar):
        return self.splat_n(scalar, self.L)

    def splat_n(self, scalar, n: int):
        vt = ir.VectorType(scalar.type, n)
        one = self.b.insert_element(ir.Constant(vt, None), scalar, self.i(0))
        return self.b.shuffle_vector(
            one, ir.Constant(vt, None), ir.Constant(ir.VectorType(I32, n), [0] * n)
        )

    def ptr(self, base, index, etype=None):
        return self.b.gep(base, [index], source_etype=etype or self.ft)

    def load(self, base, index, wide: bool = False):
        """The self.L values at base[index …] (index in elements)."""
        et = F64 if wide else self.ft
        return self.b.load(
            self.ptr(base, index, et), typ=self.dvt if wide else self.vt, align=8 if wide else 4
        )

    def store(self, value, base, index) -> None:
        et = value.type.element
        self.b.store(value, self.ptr(base, index, et), align=8 if et == F64 else 4)

    def scalar(self, base, index, etype):
        return self.b.load(self.ptr(base, index, etype), typ=etype)

    def add_i(self, *terms):
        acc = terms[0]
        for t in terms[1:]:
            acc = self.b.add(acc, t if not isinstance(t, int) else self.i(t))
        return acc

    # ---- arithmetic (a · b + c may contract to one FMA) ----------------------------------
    def _flag(self, inst):
        inst.flags.extend(FLAGS)
        return inst

    def add(self, a, b):
        return self._flag(self.b.fadd(a, b))

    def sub(self, a, b):
        return self._flag(self.b.fsub(a, b))

    def mul(self, a, b):
        return self._flag(self.b.fmul(a, b))

    def div(self, a, b, estimate: bool = False):
        d = self.b.fdiv(a, b)
        if estimate:
            d.flags.extend(("arcp", "ninf"))
        return d

    def neg(self, a):
        return self.b.fneg(a)

    def select(self, cond, a, b):
        return self.b.select(cond, a, b)

    def cmp(self, op: str, a, b):
        return self.b.fcmp_ordered(op, a, b)

    def intrinsic(self, name: str, *args):
        vt = args[0].type
        full = f"{name}.v{self.L}{'f32' if vt.element == F32 else 'f64'}"
        fn = self.module.globals.get(full)
        if fn is None:
            fn = ir.Function(self.module, ir.FunctionType(vt, [vt] * len(args)), full)
        return self.b.call(fn, list(args))

    def sqrt(self, a):
        return self.intrinsic("llvm.sqrt", a)

    def fabs(self, a):
        return self.intrinsic("llvm.fabs", a)

    def wide(self, a):
        """float32 lanes → float64 lanes (as ATen's accumulators)."""
        return a if a.type == self.dvt else self.b.fpext(a, self.dvt)

    def narrow(self, a):
        return a if a.type == self.vt else self.b.fptrunc(a, self.vt)

    def dot(self, pairs, bias):
        """((bias + a0·b0) + a1·b1) + …, in order: one fused multiply-add per term."""
        acc = bias
        for a, b in pairs:
            acc = self.add(acc, self.mul(a, b))
        return acc

    # ---- loops ---------------------------------------------------------------------------
    @contextmanager
    def loop(self, count, start=None):
        """for index in range(start or 0, count): yields the index (i64)."""
        b = self.b
        pre = b.block
        head = self.fn.append_basic_block("loop")
        body = self.fn.append_basic_block("body")
        done = self.fn.append_basic_block("done")
        first = start if start is not None else self.i(0)
        b.cbranch(b.icmp_signed("<", first, count), head, done)
        b.position_at_end(head)
        index = b.phi(I64)
        index.add_incoming(first, pre)
        b.branch(body)
        b.position_at_end(body)
        yield index
        nxt = b.add(index, self.i(1))
        index.add_incoming(nxt, b.block)
        b.cbranch(b.icmp_signed("<", nxt, count), head, done)
        b.position_at_end(done)

    def alloca(self, wide: bool = False):
        """A vector variable (in the entry block, so that LLVM keeps it in a register)."""
        with self.b.goto_block(self.entry):
            self.b.position_at_start(self.entry)
            return self.b.alloca(self.dvt if wide else self.vt)

    # ---- elementwise functions ------------------------------------------------------------
    def expm1_parts(self, u):
        """(s, p) with exp(u) = s · (1 + p), s = 2^k, p = expm1(u - k ln 2), for u ≤ 0 clamped by
        the caller to the normal range; expm1(u) = s·p + (s - 1)."""
        f64 = self.ft == F64
        if f64:  # ln 2 split so that k · LN2_HI is exact (Cephes); 1.5 · 2^52 rounds to integer
            l2e, hi, lo, magic = (
                1.4426950408889634,
                6.93145751953125e-1,
                1.42860682030941723212e-6,
                6755399441055744.0,
            )
            fact = (
                2,
                6,
                24,
                120,
                720,
                5040,
                40320,
                362880,
                3628800,
                39916800,
                479001600,
                6227020800,
                87178291200,
            )
            ity, bias, shift = ir.VectorType(I64, self.L), 1023, 52
        else:
            l2e, hi, lo, magic = 1.44269504088896341, 0.693359375, -2.12194440e-4, 12582912.0
            fact = (2, 6, 24, 120, 720, 5040, 40320)
            ity, bias, shift = ir.VectorType(I32, self.L), 127, 23
        c = self.const
        k = self.sub(self.add(self.b.fmul(u, c(l2e)), c(magic)), c(magic))  # round to nearest
        r = self.sub(self.sub(u, self.b.fmul(k, c(hi))), self.b.fmul(k, c(lo)))  # |r| ≤ ln 2 / 2
        p = c(1.0 / fact[-1])
        for f in reversed(fact[:-1]):
            p = self.add(self.mul(p, r), c(1.0 / f))
        p = self.add(self.mul(self.mul(p, r), r), r)  # expm1(r), Taylor polynomial
        n = self.b.fptosi(k, ity)
        bits = self.b.shl(
            self.b.add(n, ir.Constant(ity, [bias] * self.L)), ir.Constant(ity, [shift] * self.L)
        )
        return self.b.bitcast(bits, self.vt), p

    def tanh(self, x):
        if self.ft == F32:
            return self.tanh_rational(x)
        c = self.const
        u = self.neg(self.mul(c(2.0), self.fabs(x)))
        u = self.select(self.cmp("<", u, c(-40.0)), c(-40.0), u)  # tanh(±20) rounds to ±1; NaN kept
        s, p = self.expm1_parts(u)
        e = self.add(self.mul(s, p), self.sub(s, c(1.0)))  # expm1(-2|x|)
        # tanh |x| = -expm1(-2|x|) / (2 + expm1(-2|x|))
        t = self.div(self.neg(e), self.add(c(2.0), e), estimate=True)
        return self.select(self.cmp(">=", x, c(0.0)), t, self.neg(t))

    def tanh_rational(self, x):
        """float32 tanh as |x| P(x²) / Q(x²) with the sign of x: a rational minimax fit with
        positive coefficients (so that Q ≥ 1 and Horner's rule adds no cancellation), |x|
        clamped to TANH_CLAMP and the result to 1; NaN stays NaN (each select keeps it)."""
        c = self.const
        a = self.fabs(x)
        a = self.select(self.cmp("<", c(TANH_CLAMP), a), c(TANH_CLAMP), a)  # NaN stays NaN
        z = self.mul(a, a)

        def horner(coefs):
            acc = c(coefs[-1])
            for k in reversed(coefs[:-1]):
                acc = self.add(self.mul(acc, z), c(k))
            return acc

        t = self.div(self.mul(a, horner(TANH_P)), horner(TANH_Q), estimate=True)
        t = self.select(self.cmp("<", c(1.0), t), c(1.0), t)  # never above 1
        return self.intrinsic("llvm.copysign", t, x)

    def sigmoid(self, x):
        c = self.const
        cap = 700.0 if self.ft == F64 else 87.0
        u = self.neg(self.fabs(x))
        u = self.select(self.cmp("<", u, c(-cap)), c(-cap), u)
        s, p = self.expm1_parts(u)
        t = self.add(self.mul(s, p), s)  # exp(-|x|)
        one_t = self.add(c(1.0), t)
        return self.select(self.cmp(">=", x, c(0.0)), self.div(c(1.0), one_t), self.div(t, one_t))


def module(name: str) -> ir.Module:
    """An empty llvmlite module for this process's target."""
    m = ir.Module(name)
    m.triple = llvm.get_process_triple()
    return m


_elementwise: dict[tuple[str, str], object] = {}  # (function, dtype) → its compiled loop
_elementwise_lock = threading.Lock()


def elementwise(name: str, x: np.ndarray) -> np.ndarray:
    """The kernels' ``tanh`` or ``sigmoid`` on an array (padded to L)."""
    dtype = x.dtype.name
    key, L = (name, dtype), LANES[dtype]
    with _elementwise_lock:
        if key not in _elementwise:

            def build():
                m = module(f"{name}_{dtype}")
                fn = ir.Function(m, ir.FunctionType(ir.VoidType(), [PTR, PTR, I64]), "apply")
                bd = Builder(m, fn, dtype)
                src, dst, n = fn.args
                with bd.loop(n) as k:
                    at = bd.b.mul(k, bd.i(L))
                    bd.store(getattr(bd, name)(bd.load(src, at)), dst, at)
                bd.b.ret_void()
                return m

            addr = jit.address(build, "apply", ("elementwise", name, dtype))
            proto = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
            _elementwise[key] = proto(addr)
        cfn = _elementwise[key]
    n = -(-x.size // L)
    src = np.zeros(n * L, x.dtype)
    src[: x.size] = x.ravel()
    dst = np.empty_like(src)
    cfn(src.ctypes.data, dst.ctypes.data, n)
    return dst[: x.size].reshape(x.shape)
