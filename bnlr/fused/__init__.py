"""The fused kernel of the batched engine: one compiled call trains a group of runs for one epoch.

A group is R runs of one network shape and optimizer kind (``batched._Group``). Its parameters,
gradients, optimizer state and BatchNorm running statistics are kept as blocks of ``LANES`` runs:
every number of a block is a row of ``LANES`` contiguous values, one lane per run. For each
network shape (input width, hidden widths, activation, BN placement, optimizer, dtype) this module
writes a kernel in LLVM IR, with llvmlite (numba's code generator), in which every value is a
vector of ``LANES`` runs and every unit of every layer is unrolled: a sample's forward and
backward pass is straight-line SIMD code in registers, one instruction advancing 8 or 16 runs.
The evaluation passes take two samples at once, as the two halves of a vector of 2 · ``LANES``
lanes: one sample's forward pass is a long chain of dependent operations, and two independent
chains keep the CPU's units busy (in training, the same measured 2 % faster for 15 % more
compile time, so training takes one sample at a time). A lane never reads another lane: a
diverged run cannot disturb its neighbours, and a run's numbers do not depend on which runs
train beside it.

One call does an epoch, block by block: per mini-batch the forward pass, MSELoss's gradient, the
backward pass (split into passes over the batch only where BatchNorm needs the batch's
statistics), the weight gradients (per Linear, Σ over the batch of d loss / d output · input, in
sample order, summed in registers), the optimizer update with this step's lr and momentum /
beta1 per run; then the train and test MSE in eval mode. Python calls it once per epoch, so
cancel(), progress and ReduceLROnPlateau stay in ``_Group.train``.

The formulas are torch's, in the experiment's dtype: BatchNorm1d's batch statistics accumulated
in float64 as ATen's CPU kernel does, the biased variance to normalise and the unbiased one for
the running variance, ``x * alpha + beta`` with alpha = invstd · gamma, ATen's batch-norm backward;
MSELoss's mean; torch.optim's SGD (weight decay, momentum buffer = grad on first use, dampening,
nesterov), Adam and AdamW (lerp, bias corrections from the step's beta1, in float64 as torch
does in Python). In float64, tanh and sigmoid use an expm1 written out in arithmetic (range
reduction by ln 2, a Taylor polynomial, the power of two built from its bits), accurate to 4 ulp;
in float32, sigmoid does too and tanh is a rational minimax fit, accurate to 6 ulp with half the
instructions (``tests/test_fused.py``; torch's own float32 tanh is within 1 ulp). a · b + c may
be one fused multiply-add; a dot product adds from its bias in input order, a batch sum in
sample order, the evaluation MSE as two running sums (even and odd samples) then added (torch's
BLAS may add in another order: last-bit differences); NaN and inf propagate as in IEEE
arithmetic.

A kernel compiles in about a second the first time its shape trains on a machine: its object
code is kept on disk (``cache_dir``) and loaded in milliseconds by later processes. The fast path
covers networks up to ``MAX_UNITS`` hidden units and ``MAX_PARAMETERS`` parameters (beyond that
the unrolled code grows long and the torch path's matrix products are efficient); without
llvmlite, with ``BNLR_KERNEL=torch``, or for larger networks,
the batched engine keeps its torch path.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import pathlib
import re
import subprocess
import sys
import threading
import time
import warnings
from contextlib import contextmanager, suppress
from dataclasses import dataclass

import numpy as np
import torch

try:  # llvmlite comes with numba; without it the batched engine keeps its torch path
    import llvmlite
    import llvmlite.binding as llvm
    import llvmlite.ir as ir

    from . import llc as _llc
except ImportError:  # pragma: no cover - exercised by environments without llvmlite
    llvm = ir = None
AVAILABLE = llvm is not None

# runs per block: one AVX-512 register (two AVX2 registers) of either dtype
LANES = {"float32": 16, "float64": 8}
GRAD_REGISTERS = 24  # weight-gradient sums kept in registers at once (of 32 vector registers)
MAX_UNITS = 64  # hidden units in all, for the fast path
MAX_PARAMETERS = 256  # compile time grows with the unrolled code (~1 s for the article's nets)
BN_EPS = 1e-5  # nn.BatchNorm1d's default
LEAKY_SLOPE = 0.01  # F.leaky_relu's default
FLAGS = ("contract",)  # a · b + c may fuse; no reassociation, NaN and inf kept
# float32 tanh (``_Builder.tanh_rational``): |x| P(x²) / Q(x²), coefficients from a minimax fit
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


def scratch_rows(in_features: int, hidden: int) -> int:
    """Rows of a sample's scratch: features, target, z, a, q and g per hidden unit, g of the
    output."""
    return in_features + 1 + 4 * hidden + 1


def wanted() -> bool:
    """True when the fused kernel should run: llvmlite is importable and ``BNLR_KERNEL`` is not
    ``torch``."""
    choice = os.environ.get("BNLR_KERNEL", "auto").strip().lower()
    if choice not in ("auto", "fused", "torch"):
        raise ValueError(f"BNLR_KERNEL must be auto, fused or torch, got {choice!r}")
    if choice == "fused" and not AVAILABLE:
        raise RuntimeError("BNLR_KERNEL=fused but llvmlite cannot be imported")
    return AVAILABLE and choice != "torch"


def n_parameters(sizes: tuple[int, ...], bn: str) -> int:
    """Parameters of an MLP with layer sizes (in, widths…, 1), BN gamma and beta included."""
    params = sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))
    return params + (2 * sum(sizes[1:-1]) if bn != "none" else 0)


def supported(widths: tuple[int, ...], in_features: int, bn: str) -> bool:
    """True when the fused kernel covers a network of this shape."""
    sizes = (in_features, *widths, 1)
    return sum(widths) <= MAX_UNITS and n_parameters(sizes, bn) <= MAX_PARAMETERS


@dataclass(frozen=True)
class Shape:
    """What a kernel is specialised to."""

    sizes: tuple[int, ...]  # in_features, widths…, 1
    activation: str
    bn: str  # none | pre | post
    optimizer: str  # sgd | adam | adamw
    dtype: str  # float32 | float64
    momentum: bool = False  # SGD: some run has momentum at some step
    nesterov: bool = False
    weight_decay: bool = False

    @property
    def widths(self) -> tuple[int, ...]:
        return self.sizes[1:-1]

    @property
    def hoff(self) -> list[int]:
        """Each hidden layer's first unit among all hidden units."""
        return [int(v) for v in np.cumsum([0, *self.widths])]

    def linear_rows(self) -> list[int]:
        """Each Linear's first row in the parameter block ([W | b] row-major), then the end."""
        offs, off = [], 0
        for a, b in zip(self.sizes[:-1], self.sizes[1:]):
            offs.append(off)
            off += (a + 1) * b
        return [*offs, off]

    @property
    def n_params(self) -> int:
        return n_parameters(self.sizes, self.bn)

    # Rows of the parameter block, in theta's order (``batched._Group``): each Linear as [W | b]
    # (out, in + 1) row-major, then BN gamma_l, beta_l per hidden layer.
    def w(self, l: int, o: int, i: int) -> int:
        """Linear l's weight [o, i]; i = its in_features is the bias."""
        return self.linear_rows()[l] + o * (self.sizes[l] + 1) + i

    def gamma(self, l: int, j: int) -> int:
        return self.linear_rows()[-1] + 2 * self.hoff[l] + j

    def beta(self, l: int, j: int) -> int:
        return self.gamma(l, j) + self.widths[l]


if AVAILABLE:
    I1, I8, I32, I64 = (ir.IntType(n) for n in (1, 8, 32, 64))
    F32, F64 = ir.FloatType(), ir.DoubleType()
    PTR = ir.PointerType()


class _Builder:
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


_engine = None  # one MCJIT engine for every kernel, holding machine code only
_loaded: dict[str, int] = {}  # a kernel's cache digest (``_digest``) → its address in _engine
CACHE_FILES = 256  # kernels kept in the on-disk cache (the most recently written)


def _jit(build, name: str, key) -> int:
    """The address of the function ``name`` of the llvmlite module ``build()`` returns, compiled
    for this machine's CPU; ``key`` names the module (the code that writes it is part of the
    cache key). The IR is optimised and turned into object code in a child process
    (``bnlr/_llc.py``), or read from the on-disk cache (``cache_dir``) without writing the IR at
    all; only the machine code comes back, added to one shared engine."""
    global _engine
    _init_llvm()
    digest = _digest(key)
    symbol = f"{name}_{digest[:24]}"
    with _lock:
        if digest in _loaded:
            return _loaded[digest]

    def text() -> str:
        ir_text = re.sub(r'(define void @"\w+"\([^)]*\))', r"\1 #77", str(build()))
        ir_text += f"\nattributes #77 = {{ {_llc.RECIPROCAL} }}\n"
        return ir_text.replace(f'@"{name}"', f'@"{symbol}"')

    obj = _object_code(text, digest)
    with _lock:
        if digest not in _loaded:  # (another thread may have loaded it meanwhile)
            if _engine is None:
                tm = llvm.Target.from_default_triple().create_target_machine(
                    cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten()
                )
                _engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), tm)
            _engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
            _engine.finalize_object()
            _loaded[digest] = _engine.get_function_address(symbol)
        return _loaded[digest]


def _digest(key) -> str:
    """What a kernel's machine code depends on: what it is (``key``), the code that writes and
    compiles it, this CPU, the compiler."""
    return hashlib.sha256(repr(key).encode() + _machine()).hexdigest()


@functools.cache
def _machine() -> bytes:
    _init_llvm()
    parts = (
        pathlib.Path(__file__).read_bytes(),
        pathlib.Path(_llc.__file__).read_bytes(),
        llvm.get_host_cpu_name(),
        llvm.get_host_cpu_features().flatten(),
        llvm.llvm_version_info,
        llvmlite.__version__,
        sys.version,
    )
    return hashlib.sha256(repr(parts).encode()).digest()


def cache_dir() -> str | None:
    """Where compiled kernels are kept between processes: ``BNLR_KERNEL_CACHE`` (a directory,
    or ``off``), by default ``$XDG_CACHE_HOME/bnlr/kernels`` (``~/.cache/bnlr/kernels``)."""
    choice = os.environ.get("BNLR_KERNEL_CACHE", "").strip()
    if choice.lower() in ("off", "0", "no", "false"):
        return None
    if choice:
        return choice
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "bnlr", "kernels")


def _object_code(text, digest: str) -> bytes:
    """The kernel's object code: from the cache, else ``_llc.emit(text())`` in a child process
    (in this one if none can be started), then written to the cache. A cache that cannot be read
    or written is skipped."""
    where = cache_dir()
    path = os.path.join(where, f"{digest}.o") if where else None
    if path:
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError:
            pass
    text = text()  # (the IR is written only on a cache miss)
    try:
        done = subprocess.run(
            [sys.executable, "-I", _llc.__file__],
            input=text.encode(),
            capture_output=True,
            check=True,
        )
        obj = done.stdout
    except (OSError, subprocess.CalledProcessError) as e:
        warnings.warn(f"compiling in-process: the compiler process failed ({e})", stacklevel=2)
        obj = _llc.emit(text)
    if path:
        try:
            os.makedirs(where, exist_ok=True)
            tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
            with open(tmp, "wb") as f:
                f.write(obj)
            os.replace(tmp, path)  # (atomic: a reader never sees half a file)
            _prune(where)
        except OSError:
            pass
    return obj


def _prune(where: str) -> None:
    """Keeps the CACHE_FILES most recently written kernels."""
    files = [e for e in os.scandir(where) if e.name.endswith(".o")]
    if len(files) > CACHE_FILES:
        files.sort(key=lambda e: e.stat().st_mtime)
        for e in files[: len(files) - CACHE_FILES]:
            with suppress(OSError):
                os.remove(e.path)


_llvm_ready = False


def _init_llvm() -> None:
    global _llvm_ready
    if not _llvm_ready:
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        _llvm_ready = True


def _module(name: str):
    module = ir.Module(name)
    module.triple = llvm.get_process_triple()
    return module


# ---- elementwise functions on arrays, for the tests -------------------------------------


_elementwise: dict[tuple[str, str], object] = {}


def elementwise(name: str, x: np.ndarray) -> np.ndarray:
    """The kernels' ``tanh`` or ``sigmoid`` on an array (padded to L)."""
    dtype = x.dtype.name
    key, L = (name, dtype), LANES[dtype]
    with _lock:
        if key not in _elementwise:

            def build():
                module = _module(f"{name}_{dtype}")
                fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [PTR, PTR, I64]), "apply")
                bd = _Builder(module, fn, dtype)
                src, dst, n = fn.args
                with bd.loop(n) as k:
                    at = bd.b.mul(k, bd.i(L))
                    bd.store(getattr(bd, name)(bd.load(src, at)), dst, at)
                bd.b.ret_void()
                return module

            addr = _jit(build, "apply", ("elementwise", name, dtype))
            cfn = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)(addr)
            _elementwise[key] = (None, cfn)
        _, cfn = _elementwise[key]
    n = -(-x.size // L)
    src = np.zeros(n * L, x.dtype)
    src[: x.size] = x.ravel()
    dst = np.empty_like(src)
    cfn(src.ctypes.data, dst.ctypes.data, n)
    return dst[: x.size].reshape(x.shape)


# ---- the kernel of one network shape ------------------------------------------------------

# Arguments of every kernel: arrays (pointers), then scalars.
ARRAYS = (
    "P",
    "G",
    "M1",
    "M2",
    "HB",
    "ST",
    "S",
    "T",
    "order",
    "lane_order",
    "XY",
    "XYte",
    "coef",
    "loss",
)
SCALARS = ("wd", "damp1", "beta2", "omb2", "eps", "mom", "nblk", "bs", "N", "Nte", "Rp")
STATS = ("mean", "invstd", "alpha", "shift", "kc", "gm")  # per BN unit, per block: T's rows


class _Pass:
    """One loop over the samples of a batch (or of an eval split) for one block: the values its
    body already holds, by name. Values from an earlier pass are loaded from the sample's scratch
    row (or recomputed from it)."""

    def __init__(self, k: _Kernel, train: bool, o=None, inputs=None):
        self.k, self.train, self.o, self.env = k, train, o, {}
        self.inputs = inputs  # eval: the sample's features and target (broadcast)

    def let(self, name: str, value):
        self.env[name] = value
        return value

    def stash(self, name: str, kind: str, u: int) -> None:
        """Stores a value in the sample's scratch row for a later pass."""
        k = self.k
        k.bd.store(self.env[name], k.a["S"], k.bd.add_i(self.o, k.row(kind, u) * k.L))

    def get(self, name: str):
        if name in self.env:
            return self.env[name]
        k, bd = self.k, self.k.bd
        kind, rest = name[0], name[1:]
        if kind in "xy":
            if not self.train:
                return self.let(name, self.inputs[name])
            row = int(rest) if kind == "x" else k.F
            return self.let(name, bd.load(k.a["S"], bd.add_i(self.o, row * k.L)))
        l, j = map(int, rest.split("_"))
        u = k.shape.hoff[l] + j
        if kind in "zaq":
            return self.let(name, bd.load(k.a["S"], bd.add_i(self.o, k.row(kind, u) * k.L)))
        if kind in "nv":  # BN output: n (pre, of z) or v (post, of a), x · alpha + shift
            x = self.get(("z" if kind == "n" else "a") + rest)
            return self.let(name, bd.add(bd.mul(x, k.t("alpha", u)), k.t("shift", u)))
        raise KeyError(name)


class _Kernel:
    """Writes the epoch kernel of one ``Shape`` in LLVM IR."""

    def __init__(self, shape: Shape):
        self.shape = shape
        self.F = shape.sizes[0]
        self.H = sum(shape.widths)
        self.module = _module("bnlr_fused")
        ft = F32 if shape.dtype == "float32" else F64
        scalar_types = [ft] * 5 + [F64] + [I64] * 5
        self.fn = ir.Function(
            self.module, ir.FunctionType(ir.VoidType(), [PTR] * len(ARRAYS) + scalar_types), "epoch"
        )
        for arg in self.fn.args[: len(ARRAYS)]:
            arg.add_attribute("noalias")
        self.bd = _Builder(self.module, self.fn, shape.dtype)
        self.L = self.bd.L
        names = [*ARRAYS, *SCALARS]
        self.a = dict(zip(names, self.fn.args))

    # rows of the per-sample scratch S: inputs, target, then z, a, q, g per hidden unit, and g of
    # the output (g: d loss / d a unit's pre-activation, for the weight gradients)
    def row(self, kind: str, u: int) -> int:
        return self.F + 1 + "zaqg".index(kind) * self.H + u

    @property
    def rows(self) -> int:
        return scratch_rows(self.F, self.H)

    def t(self, what: str, u: int):
        """A per-block statistic of hidden unit u (T's rows)."""
        return self.bd.load_shared(
            self.a["T"], self.bd.i((STATS.index(what) * self.H + u) * self.L)
        )

    def set_t(self, what: str, u: int, value) -> None:
        self.bd.store(value, self.a["T"], self.bd.i((STATS.index(what) * self.H + u) * self.L))

    def p(self, row: int):
        return self.bd.load_shared(self.a["P"], self.bd.add_i(self.pb, row * self.L))

    # ---- the network, in a pass ------------------------------------------------------------
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

    def layer_inputs(self, ps: _Pass, l: int) -> list:
        if l == 0:
            return [ps.get(f"x{i}") for i in range(self.F)]
        kind = "v" if self.shape.bn == "post" else "a"
        return [ps.get(f"{kind}{l - 1}_{j}") for j in range(self.shape.widths[l - 1])]

    def linear(self, ps: _Pass, l: int, inputs: list, width: int, prefix: str) -> list:
        sh = self.shape
        n = len(inputs)
        return [
            ps.let(
                f"{prefix}{l}_{o}",
                self.bd.dot(
                    [(self.p(sh.w(l, o, i)), x) for i, x in enumerate(inputs)],
                    self.p(sh.w(l, o, n)),
                ),
            )
            for o in range(width)
        ]

    def forward(self, ps: _Pass, barrier):
        """The forward pass up to the prediction; ``barrier`` (training with BN) ends a pass
        where the batch statistics are needed and returns the next."""
        sh = self.shape
        train = ps.train
        for l, width in enumerate(sh.widths):
            inputs = self.layer_inputs(ps, l)
            self.linear(ps, l, inputs, width, "z")
            if sh.bn == "pre" and train:
                for j in range(width):
                    ps.stash(f"z{l}_{j}", "z", sh.hoff[l] + j)
                ps = barrier(ps, ("stats", l, "z"))
            for j in range(width):
                pre = ps.get(f"n{l}_{j}" if sh.bn == "pre" else f"z{l}_{j}")
                ps.let(f"a{l}_{j}", self.act(pre))
                if train:  # (read by the next pass, or by the weight gradients)
                    ps.stash(f"a{l}_{j}", "a", sh.hoff[l] + j)
                    if sh.bn == "post" and sh.activation == "leaky_relu":  # its backward reads z
                        ps.stash(f"z{l}_{j}", "z", sh.hoff[l] + j)
            if sh.bn == "post" and train:
                ps = barrier(ps, ("stats", l, "a"))
        last = len(sh.widths)
        (pred,) = self.linear(ps, last, self.layer_inputs(ps, last), 1, "out")
        return ps, pred

    def keep_grads(self, ps: _Pass, l: int, gz: list) -> None:
        """Stashes this sample's d loss / d (layer l's outputs) for ``weight_grads``."""
        for o, g in enumerate(gz):
            self.bd.store(
                g, self.a["S"], self.bd.add_i(ps.o, self.row("g", self.unit(l, o)) * self.L)
            )

    def unit(self, l: int, o: int) -> int:
        """Output o of Linear l among the rows g: a hidden unit, or the network's output."""
        return self.shape.hoff[l] + o if l < len(self.shape.widths) else self.H

    def weight_grads(self) -> None:
        """G of every Linear's weight and bias: per block of outputs, Σ over the batch of
        g · input, in sample order, accumulated in registers and stored once (the same sums in
        the same order as adding each sample's share into G)."""
        sh, bd = self.shape, self.bd
        for l in range(len(sh.widths) + 1):
            n_in, n_out = sh.sizes[l], sh.sizes[l + 1]
            chunk = max(1, GRAD_REGISTERS // (n_in + 1))
            for first in range(0, n_out, chunk):
                outs = range(first, min(n_out, first + chunk))
                accs = {(o, i): bd.alloca() for o in outs for i in range(n_in + 1)}
                for acc in accs.values():
                    bd.b.store(bd.const(0.0), acc)
                with bd.loop(self.B) as b:
                    ps = _Pass(self, True, o=self.sample_rows(b))
                    inputs = self.layer_inputs(ps, l)
                    for o in outs:
                        g = bd.load(
                            self.a["S"], bd.add_i(ps.o, self.row("g", self.unit(l, o)) * self.L)
                        )
                        for i, x in enumerate([*inputs, None]):
                            acc = accs[(o, i)]
                            term = g if x is None else bd.mul(g, x)
                            bd.b.store(bd.add(bd.b.load(acc, typ=bd.vt), term), acc)
                for (o, i), acc in accs.items():
                    at = bd.add_i(self.pb, sh.w(l, o, i) * self.L)
                    bd.store(bd.b.load(acc, typ=bd.vt), self.a["G"], at)

    def backward(self, ps: _Pass, g, barrier) -> _Pass:
        sh, bd = self.shape, self.bd
        L = len(sh.widths)
        self.keep_grads(ps, L, [g])
        ga = [bd.mul(self.p(sh.w(L, 0, j)), g) for j in range(sh.widths[-1])]
        for l in range(L - 1, -1, -1):
            width = sh.widths[l]
            if sh.bn == "post":  # ga is d loss / d v (the BN output): back through BN
                ps, ga = self.through_bn(ps, l, ga, "a", barrier)
            gz = []
            for j in range(width):
                post = ps.get(f"a{l}_{j}")
                pre = post
                if sh.activation == "leaky_relu":
                    pre = ps.get(f"n{l}_{j}" if sh.bn == "pre" else f"z{l}_{j}")
                gz.append(self.act_backward(ga[j], pre, post))
            if sh.bn == "pre":  # gz is d loss / d n (the BN output): back through BN
                ps, gz = self.through_bn(ps, l, gz, "z", barrier)
            self.keep_grads(ps, l, gz)
            if l > 0:
                ga = [
                    self.dot_rows([(self.p(sh.w(l, o, i)), gz[o]) for o in range(width)])
                    for i in range(sh.widths[l - 1])
                ]
        return ps

    def through_bn(self, ps: _Pass, l: int, grads: list, kind: str, barrier):
        """From d loss / d (layer l's BN output) to d loss / d (its input, rows ``kind``): the
        gradients are stashed, the pass ends for the batch sums, the next pass applies them."""
        h0 = self.shape.hoff[l]
        for j, g in enumerate(grads):
            ps.let(f"q{l}_{j}", g)
            ps.stash(f"q{l}_{j}", "q", h0 + j)
        ps = barrier(ps, ("back", l, kind))
        return ps, [self.bn_grad(ps, l, j, kind) for j in range(len(grads))]

    def dot_rows(self, pairs):
        bd = self.bd
        acc = bd.mul(*pairs[0])
        for a, b in pairs[1:]:
            acc = bd.add(acc, bd.mul(a, b))
        return acc

    def bn_grad(self, ps: _Pass, l: int, j: int, kind: str):
        """ATen's batch-norm backward for one sample: d loss / d (the BN input)."""
        bd, u = self.bd, self.shape.hoff[l] + j
        q, x = ps.get(f"q{l}_{j}"), ps.get(f"{kind}{l}_{j}")
        centred = bd.sub(x, self.t("mean", u))
        g = bd.sub(bd.sub(q, self.t("gm", u)), bd.mul(centred, self.t("kc", u)))
        return bd.mul(bd.mul(g, self.t("invstd", u)), self.p(self.shape.gamma(l, j)))

    # ---- between passes: batch statistics ---------------------------------------------------
    def sample_rows(self, b):
        return self.bd.b.mul(b, self.bd.i(self.rows * self.L))

    def batch_sums(self, terms) -> list:
        """Per unit, Σ over the batch of terms(o, u) (float64 lanes), for the given units."""
        bd = self.bd
        units, fn = terms
        accs = [bd.alloca(wide=True) for _ in units]
        for acc in accs:
            bd.b.store(bd.const(0.0, wide=True), acc)
        with bd.loop(self.B) as b:
            o = self.sample_rows(b)
            for acc, u in zip(accs, units):
                bd.b.store(self._wadd(bd.b.load(acc, typ=bd.dvt), fn(o, u)), acc)
        return [bd.b.load(acc, typ=bd.dvt) for acc in accs]

    def _wadd(self, a, b):
        return self.bd.b.fadd(a, b)

    def stats(self, l: int, kind: str) -> None:
        """Batch statistics of layer l's BN inputs: mean, invstd, the running statistics, and
        alpha / shift for the next pass (ATen's training-mode batch norm)."""
        sh, bd, H = self.shape, self.bd, self.H
        units = [sh.hoff[l] + j for j in range(sh.widths[l])]
        S = self.a["S"]

        def x(o, u):
            return bd.wide(bd.load(S, bd.add_i(o, self.row(kind, u) * self.L)))

        Bw = bd.splat(bd.b.sitofp(self.B, F64))
        means = [bd.b.fdiv(s, Bw) for s in self.batch_sums((units, x))]
        mean_of = dict(zip(units, means))

        def sq(o, u):
            d = bd.b.fsub(x(o, u), mean_of[u])
            return bd.b.fmul(d, d)

        var_sums = self.batch_sums((units, sq))
        mom = bd.splat(self.a["mom"])
        one_m = bd.b.fsub(bd.const(1.0, wide=True), mom)
        Bm1 = bd.b.fsub(Bw, bd.const(1.0, wide=True))
        ST = self.a["ST"]
        for j, (u, m, v) in enumerate(zip(units, means, var_sums)):
            self.set_t("mean", u, bd.narrow(m))
            inv = bd.b.fdiv(
                bd.const(1.0, wide=True),
                bd.sqrt(bd.b.fadd(bd.b.fdiv(v, Bw), bd.const(BN_EPS, wide=True))),
            )
            self.set_t("invstd", u, bd.narrow(inv))
            for row, stat in ((u, m), (H + u, bd.b.fdiv(v, Bm1))):
                at = bd.add_i(self.sb, row * self.L)
                old = bd.wide(bd.load(ST, at))
                bd.store(bd.narrow(bd.b.fadd(bd.b.fmul(mom, stat), bd.b.fmul(one_m, old))), ST, at)
            alpha = bd.mul(self.t("invstd", u), self.p(sh.gamma(l, j)))
            self.set_t("alpha", u, alpha)
            self.set_t("shift", u, bd.sub(self.p(sh.beta(l, j)), bd.mul(self.t("mean", u), alpha)))

    def stats_back(self, l: int, kind: str) -> None:
        """Sums over the batch for BN's backward; d gamma and d beta into G."""
        sh, bd = self.shape, self.bd
        units = [sh.hoff[l] + j for j in range(sh.widths[l])]
        S = self.a["S"]

        def q(o, u):
            return bd.wide(bd.load(S, bd.add_i(o, self.row("q", u) * self.L)))

        def dotp(o, u):
            x = bd.load(S, bd.add_i(o, self.row(kind, u) * self.L))
            return bd.b.fmul(bd.wide(bd.sub(x, self.t("mean", u))), q(o, u))

        sums = self.batch_sums((units, q))
        dots = self.batch_sums((units, dotp))
        Bw = bd.splat(bd.b.sitofp(self.B, F64))
        for j, (u, s, dp) in enumerate(zip(units, sums, dots)):
            inv = bd.wide(self.t("invstd", u))
            bd.store(
                bd.narrow(bd.b.fmul(dp, inv)),
                self.a["G"],
                bd.add_i(self.pb, sh.gamma(l, j) * self.L),
            )
            bd.store(bd.narrow(s), self.a["G"], bd.add_i(self.pb, sh.beta(l, j) * self.L))
            self.set_t("kc", u, bd.narrow(bd.b.fdiv(bd.b.fmul(bd.b.fmul(dp, inv), inv), Bw)))
            self.set_t("gm", u, bd.narrow(bd.b.fdiv(s, Bw)))

    # ---- the optimizer ------------------------------------------------------------------
    def coef(self, which: int):
        """This step's per-run coefficient ``which`` (coef is (K, steps, Rp))."""
        bd, a = self.bd, self.a
        at = bd.add_i(
            bd.b.mul(bd.add_i(bd.b.mul(bd.i(which), self.nsteps), self.s), a["Rp"]), self.lb
        )
        return bd.load(a["coef"], at)

    def update(self) -> None:
        sh, bd, a = self.shape, self.bd, self.a
        lr, second = self.coef(0), self.coef(1)
        zero = bd.const(0.0)
        if sh.optimizer == "sgd":
            m = second
            use = bd.cmp("!=", m, zero)
            hb_at = bd.ptr(a["HB"], self.lb, I8)
            hb = bd.b.icmp_unsigned(
                "!=",
                bd.b.load(hb_at, typ=ir.VectorType(I8, self.L), align=1),
                ir.Constant(ir.VectorType(I8, self.L), [0] * self.L),
            )
        else:
            bc2s, w1 = self.coef(1), self.coef(2)
            decay = self.coef(3) if sh.optimizer == "adamw" else None
        wd, damp1 = bd.splat(a["wd"]), bd.splat(a["damp1"])
        with bd.loop(bd.i(sh.n_params)) as k:
            at = bd.add_i(self.pb, bd.b.mul(k, bd.i(self.L)))
            p = bd.load(a["P"], at)
            g = bd.load(a["G"], at)
            if sh.optimizer == "sgd":
                if sh.weight_decay:
                    g = bd.add(g, bd.mul(wd, p))
                if sh.momentum:
                    old = bd.load(a["M1"], at)
                    buf = bd.select(hb, bd.add(bd.mul(old, m), bd.mul(damp1, g)), g)
                    bd.store(bd.select(use, buf, old), a["M1"], at)
                    step = bd.add(g, bd.mul(m, buf)) if sh.nesterov else buf
                    g = bd.select(use, step, g)
                bd.store(bd.sub(p, bd.mul(lr, g)), a["P"], at)
            else:
                self.adam(p, g, at, lr, bc2s, w1, decay, wd)
        if sh.optimizer == "sgd" and sh.momentum:
            bd.b.store(bd.b.zext(bd.b.or_(hb, use), ir.VectorType(I8, self.L)), hb_at, align=1)

    def adam(self, p, g, at, lr, bc2s, w1, decay, wd) -> None:
        """torch.optim.Adam / AdamW's update of one parameter row."""
        sh, bd, a = self.shape, self.bd, self.a
        if sh.optimizer == "adam":
            if sh.weight_decay:
                g = bd.add(g, bd.mul(wd, p))
        else:
            p = bd.mul(p, decay)
        m1 = bd.load(a["M1"], at)
        # torch's lerp: m + w (g - m) for |w| < 0.5, else g - (g - m)(1 - w)
        small = bd.cmp("<", bd.fabs(w1), bd.const(0.5))
        diff = bd.sub(g, m1)
        m1 = bd.select(
            small, bd.add(m1, bd.mul(w1, diff)), bd.sub(g, bd.mul(diff, bd.sub(bd.const(1.0), w1)))
        )
        bd.store(m1, a["M1"], at)
        v = bd.add(
            bd.mul(bd.load(a["M2"], at), bd.splat(a["beta2"])),
            bd.mul(bd.mul(bd.splat(a["omb2"]), g), g),
        )
        bd.store(v, a["M2"], at)
        den = bd.add(bd.div(bd.sqrt(v), bc2s), bd.splat(a["eps"]))
        bd.store(bd.sub(p, bd.mul(lr, bd.div(m1, den))), a["P"], at)

    # ---- the whole kernel -----------------------------------------------------------------
    def build(self):
        sh, bd, a = self.shape, self.bd, self.a
        b = bd.b
        N = a["N"]
        self.nsteps = b.sdiv(b.sub(b.add(N, a["bs"]), bd.i(1)), a["bs"])
        with bd.loop(a["nblk"]) as blk:
            self.pb = b.mul(blk, bd.i(sh.n_params * self.L))
            self.sb = b.mul(blk, bd.i(2 * self.H * self.L))
            self.lb = b.mul(blk, bd.i(self.L))
            with bd.loop(self.nsteps) as s:
                self.s = s
                start = b.mul(s, a["bs"])
                rest = b.sub(N, start)
                self.B = b.select(b.icmp_signed("<", rest, a["bs"]), rest, a["bs"])
                self.gather(start)
                self.train_step()
                self.weight_grads()  # (G: every row is stored, none accumulated)
                self.update()
            self.eval_mode()
            for split, (XY, n) in enumerate(((a["XY"], N), (a["XYte"], a["Nte"]))):
                self.eval_split(split, XY, n)
        b.ret_void()
        return self.module

    def gather(self, start) -> None:
        """This batch's samples, per run (each lane its own batch order), into the scratch rows.
        ``order`` is (distinct orders, N) int32 for this epoch, ``lane_order`` (Rp,) int32 the
        row of each lane; ``XY`` is (N, F + 1): features, then target."""
        bd, a, b, L = self.bd, self.a, self.bd.b, self.L
        width = self.F + 1
        size = 4 if bd.ft == F32 else 8
        ivt, i64v = ir.VectorType(I32, L), ir.VectorType(I64, L)
        pvt, mask = ir.VectorType(PTR, L), ir.Constant(ir.VectorType(I1, L), [1] * L)
        name = f"llvm.masked.gather.v{L}{'f32' if bd.ft == F32 else 'f64'}.v{L}p0"
        gather = self.module.globals.get(name) or ir.Function(
            self.module, ir.FunctionType(bd.vt, [pvt, I32, mask.type, bd.vt]), name
        )
        base = bd.splat(b.ptrtoint(a["XY"], I64))
        # each lane's batch order: row lane_order[lane] of order (distinct orders, N) int32
        lane_rows = b.load(bd.ptr(a["lane_order"], self.lb, I32), typ=ivt, align=4)
        order_at = b.add(
            bd.splat(b.ptrtoint(a["order"], I64)),
            b.mul(b.sext(lane_rows, i64v), bd.splat(b.mul(a["N"], bd.i(4)))),
        )
        iname = f"llvm.masked.gather.v{L}i32.v{L}p0"
        igather = self.module.globals.get(iname) or ir.Function(
            self.module, ir.FunctionType(ivt, [pvt, I32, mask.type, ivt]), iname
        )
        with bd.loop(self.B) as s:
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
                bd.store(col, a["S"], bd.add_i(o, i * L))

    def train_step(self) -> None:
        """The passes of one mini-batch, written by walking the network once: a sample loop is
        open while the network is walked; where BatchNorm needs the batch's statistics
        (forward) or sums (backward), the loop is closed, the statistics are computed, and the
        next loop opens."""
        bd = self.bd
        state = {}

        def open_loop():
            cm = bd.loop(self.B)
            b = cm.__enter__()
            state["cm"] = cm
            return _Pass(self, True, o=self.sample_rows(b))

        def close(ps, what):
            state["cm"].__exit__(None, None, None)
            kind, l, src = what
            (self.stats if kind == "stats" else self.stats_back)(l, src)
            return open_loop()

        ps = open_loop()
        ps, pred = self.forward(ps, close)
        g = bd.mul(bd.sub(pred, ps.get("y")), bd.splat(self.norm()))
        self.backward(ps, g, close)
        state["cm"].__exit__(None, None, None)

    def norm(self):
        """MSELoss's backward: 2 (pred - y) / B, with 2 / B computed in float64 as ATen does."""
        b, bd = self.bd.b, self.bd
        two_b = b.fdiv(ir.Constant(F64, 2.0), b.sitofp(self.B, F64))
        return two_b if bd.ft == F64 else b.fptrunc(two_b, F32)

    def eval_mode(self) -> None:
        """alpha and shift per BN unit from the running statistics (eval mode)."""
        sh, bd = self.shape, self.bd
        if sh.bn == "none":
            return
        for l, width in enumerate(sh.widths):
            for j in range(width):
                u = sh.hoff[l] + j
                rm = bd.load(self.a["ST"], bd.add_i(self.sb, u * self.L))
                rv = bd.load(self.a["ST"], bd.add_i(self.sb, (self.H + u) * self.L))
                inv = bd.div(bd.const(1.0), bd.sqrt(bd.add(rv, bd.const(BN_EPS))))
                alpha = bd.mul(inv, self.p(sh.gamma(l, j)))
                self.set_t("alpha", u, alpha)
                self.set_t("shift", u, bd.sub(self.p(sh.beta(l, j)), bd.mul(rm, alpha)))

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

                inputs = {f"x{i}": column(i) for i in range(self.F)}
                inputs["y"] = column(self.F)
                ps = _Pass(self, False, inputs=inputs)
                ps, pred = self.forward(ps, None)
                d = bd.sub(pred, ps.get("y"))
                counted = bd.per_sample([ir.Constant(I1, 1), b.icmp_signed("<", second, n)])
                sq = bd.select(counted, bd.wide(bd.mul(d, d)), bd.const(0.0, wide=True))
                b.store(b.fadd(b.load(acc, typ=bd.dvt), sq), acc)
            total = bd.halves_sum(b.load(acc, typ=bd.dvt))
        mean = b.fdiv(total, bd.splat(b.sitofp(n, F64)))
        at = bd.add_i(b.mul(bd.i(split), self.a["Rp"]), self.lb)
        b.store(mean, bd.ptr(self.a["loss"], at, F64), align=8)


_kernels: dict[Shape, object] = {}
_pending: list[Shape] = []  # shapes waiting for the background compiler, oldest first
_lock = threading.Condition()
_C = {"float32": ctypes.c_float, "float64": ctypes.c_double}
# False (the library, its tests, the CLI, the benches): a shape's kernel compiles when the shape
# first trains. True (the app, ``ui.runner``): a shape new to the process trains on the torch
# path while one background thread compiles its kernel, so no request waits for a compile; at
# most MAX_PENDING shapes wait for that thread (others take the torch path and may queue on a
# later request), so one link asking for many shapes cannot keep a core compiling.
BACKGROUND = False
MAX_PENDING = 4
MAX_KERNELS = 48  # in the background mode; each kernel keeps ~2–5 MB (machine code, LLVM state)
# The background compiler waits until this returns True (the app: no training is running), so
# that a compile never slows a request down.
IDLE = None
_worker: threading.Thread | None = None


def kernel(shape: Shape):
    """The compiled epoch kernel of ``shape`` (compiled on its first use in this process)."""
    with _lock:
        entry = _kernels.get(shape)
    if entry is None:  # compiled outside the lock: other shapes' requests need not wait
        addr = _jit(lambda: _Kernel(shape).build(), "epoch", ("epoch", shape))
        engine = None
        ft = _C[shape.dtype]
        types_ = (
            [ctypes.c_void_p] * len(ARRAYS) + [ft] * 5 + [ctypes.c_double] + [ctypes.c_int64] * 5
        )
        with _lock:
            entry = _kernels.setdefault(shape, (engine, ctypes.CFUNCTYPE(None, *types_)(addr)))
    return entry[1]


def ready(shape: Shape) -> bool:
    """True when the kernel of ``shape`` can train now. Unless ``BACKGROUND``, it is compiled
    here if need be; with ``BACKGROUND``, a shape not compiled yet is queued for the background
    compiler (if fewer than MAX_PENDING wait) and False is returned: the caller takes the torch
    path this time — unless the kernel is in the on-disk cache, then it is loaded here."""
    with _lock:
        if shape in _kernels:
            return True
    if not BACKGROUND or in_cache(("epoch", shape)):  # (a cached kernel loads in milliseconds)
        kernel(shape)
        return True
    prepare([shape])
    return False


def in_cache(key) -> bool:
    """True when the on-disk cache holds the kernel named ``key`` (as ``_jit`` names it)."""
    where = cache_dir()
    return bool(where) and os.path.exists(os.path.join(where, f"{_digest(key)}.o"))


def prepare(shapes, limit: int | None = None) -> None:
    """Queues shapes for the background compiler (up to ``limit`` waiting, MAX_PENDING by
    default); the server's start-up queues its default pages' shapes this way."""
    global _worker
    with _lock:
        for shape in shapes:
            new = shape not in _kernels and shape not in _pending
            room = len(_kernels) + len(_pending) < MAX_KERNELS
            if new and room and len(_pending) < (limit or MAX_PENDING):
                _pending.append(shape)
        if _pending and _worker is None:
            _worker = threading.Thread(target=_compile_pending, name="bnlr-compile", daemon=True)
            _worker.start()
        _lock.notify_all()


def _compile_pending() -> None:
    """The background compiler: one shape at a time, oldest first; exits when none wait."""
    global _worker
    while True:
        with _lock:
            if not _pending:
                _worker = None  # (under the lock: a shape queued from now starts a new one)
                return
            shape = _pending[0]
        while IDLE is not None and not IDLE():
            time.sleep(0.1)
        try:
            kernel(shape)
        finally:
            with _lock:
                _pending.remove(shape)
                _lock.notify_all()


def wait_for_compiles(timeout: float = 120.0) -> bool:
    """Blocks until the background compiler has nothing left (tests, benches); True if so."""
    with _lock:
        return _lock.wait_for(lambda: not _pending, timeout)


def shape_of(model, in_features: int, optimizer, dtype: str, momentum: bool) -> Shape:
    """The kernel shape of a group: ``model`` (ModelConfig), ``optimizer`` (OptimizerConfig);
    ``momentum``: some run has SGD momentum at some step (a schedule may cycle it)."""
    sgd = optimizer.name == "sgd"
    return Shape(
        (in_features, *model.widths, 1),
        model.activation,
        model.bn,
        optimizer.name,
        dtype,
        momentum=sgd and momentum,
        nesterov=sgd and optimizer.nesterov,
        weight_decay=optimizer.resolved_weight_decay != 0 and optimizer.name != "adamw",
    )  # (AdamW decays through its per-step coefficient)


def path(model, in_features: int, optimizer_name: str, dtype: str) -> str:
    """Which path a group of this network takes now: "fused" (its kernel is compiled, or in
    the on-disk cache),
    "compile" (the kernel will be compiled first, then run), or "torch"."""
    if not (wanted() and supported(model.widths, in_features, model.bn)):
        return "torch"
    sizes = (in_features, *model.widths, 1)
    want = (sizes, model.activation, model.bn, optimizer_name, dtype)
    with _lock:
        if any((k.sizes, k.activation, k.bn, k.optimizer, k.dtype) == want for k in _kernels):
            return "fused"
    if BACKGROUND and in_cache(("epoch", Shape(*want))):  # (loaded on use; plain SGD's shape)
        return "fused"
    return "torch" if BACKGROUND else "compile"


def llvm_ir(shape: Shape) -> str:
    """The kernel's LLVM IR before optimisation (for reading)."""
    return str(_Kernel(shape).build())


class FusedGroup:
    """A ``batched._Group``'s parameters, BatchNorm statistics and optimizer state as blocks of
    ``self.L`` runs, trained one epoch per ``epoch`` call by the kernel of its shape."""

    def __init__(self, group, shape: Shape):
        self.group, self.shape = group, shape
        R, model, opt = group.R, group.model, group.opt_cfg
        dtype = shape.dtype
        self.L = LANES[dtype]
        self.R, self.nblk = R, -(-R // self.L)
        self.Rp = Rp = self.nblk * self.L  # the runs, then idle lanes (zero weights, lr 0)
        self.dt = dt = np.dtype(dtype)
        d = group.data
        wd = opt.resolved_weight_decay
        sgd = opt.name == "sgd"
        self.kernel = kernel(self.shape)
        self.P = self.to_lanes(self.theta_matrix())
        self.G = np.zeros_like(self.P)
        self.M1 = np.zeros_like(self.P)  # SGD's momentum buffer / Adam's exp_avg
        self.M2 = np.zeros_like(self.P) if not sgd else np.zeros(self.L, dt)  # exp_avg_sq
        self.HB = np.zeros(Rp, dtype=np.uint8)  # SGD: a run's momentum buffer exists
        H = sum(model.widths)
        if model.bn != "none":
            stats = torch.cat([*group.running_mean, *group.running_var], dim=1)  # (R, 2H)
            self.ST = self.to_lanes(stats.numpy(), fill=np.r_[np.zeros(H), np.ones(H)])
        else:
            self.ST = np.zeros(self.L, dt)
        rows = scratch_rows(d.X_train.shape[1], H)
        self.S = np.zeros(group.exp.batch_size * rows * self.L, dt)  # one batch's scratch rows
        self.T = np.zeros(len(STATS) * H * self.L, dt)
        # the distinct batch orders, (E, distinct, N), and each lane's (an idle lane: the first)
        self.orders = np.ascontiguousarray(group.orders.numpy().transpose(1, 0, 2), dtype=np.int32)
        self.lane_order = np.zeros(Rp, dtype=np.int32)
        self.lane_order[:R] = group.order_of
        self.XY, self.XYte = (
            np.ascontiguousarray(torch.cat([X, y], dim=1).numpy(), dtype=dt)
            for X, y in ((d.X_train, d.y_train), (d.X_test, d.y_test))
        )
        beta2 = opt.betas[1]
        self.scalars = (wd, 1 - opt.dampening, beta2, 1 - beta2, opt.eps, float(model.bn_momentum))
        self.t = 0  # Adam's step count
        self.loss = np.zeros((2, Rp), dtype=np.float64)
        # the kernel's arrays but this epoch's order and coefficients (ARRAYS' order), kept
        # alive by self; they are only ever changed in place
        fixed = (self.P, self.G, self.M1, self.M2, self.HB, self.ST, self.S, self.T,
                 self.lane_order, self.XY, self.XYte, self.loss)  # fmt: skip
        self.pointers = tuple(a.ctypes.data for a in fixed)

    def theta_matrix(self) -> np.ndarray:
        """The group's theta as (R, parameters), each run's parameters in theta's block order."""
        g = self.group
        parts, off = [], 0
        for shape in g.shapes:
            n = int(np.prod(shape))
            parts.append(g.theta[off : off + n].view(g.R, -1).numpy())
            off += n
        return np.concatenate(parts, axis=1)

    def to_lanes(self, m: np.ndarray, fill=0.0) -> np.ndarray:
        """(R, rows) → the kernel's flat layout (block, row, lane); idle lanes get ``fill``."""
        rows = m.shape[1]
        full = np.empty((self.Rp, rows), dtype=self.dt)
        full[: self.R] = m
        full[self.R :] = fill
        return np.ascontiguousarray(
            full.reshape(self.nblk, self.L, rows).transpose(0, 2, 1)
        ).ravel()

    def from_lanes(self, flat: np.ndarray) -> np.ndarray:
        """The kernel's flat layout → (R, rows)."""
        rows = flat.size // self.Rp
        return (
            flat.reshape(self.nblk, rows, self.L)
            .transpose(0, 2, 1)
            .reshape(self.Rp, rows)[: self.R]
        )

    def write_theta(self) -> None:
        """Copies the parameters back into the group's theta (for ``record``)."""
        g, m = self.group, torch.from_numpy(np.ascontiguousarray(self.from_lanes(self.P)))
        off = col = 0
        for shape in g.shapes:
            n, size = int(np.prod(shape)), int(np.prod(shape[1:]))
            g.theta[off : off + n].view(g.R, -1).copy_(m[:, col : col + size])
            off, col = off + n, col + size

    def epoch(
        self, epoch: int, lr: np.ndarray, momentum: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Trains one epoch with lr and momentum / beta1 (R, S) per run and step (float64; lr 0
        for a diverged run); returns the train and test MSE per run (float64)."""
        R, Rp = self.R, self.Rp
        pad = np.zeros((Rp - R, lr.shape[1]))
        lr, mom = (np.concatenate([a, pad]).T for a in (lr, momentum))  # (S, lanes)
        if self.shape.optimizer == "sgd":
            coef = np.stack([lr, mom])
        else:  # torch.optim.Adam's scalars, computed in float64 as torch does in Python
            cfg, S = self.group.opt_cfg, lr.shape[0]
            t = (self.t + 1 + np.arange(S, dtype=np.float64))[:, None]
            self.t += S
            step_size = lr / (1 - mom**t)
            bc2_sqrt = np.broadcast_to((1 - cfg.betas[1] ** t) ** 0.5, lr.shape)
            coef = np.stack([step_size, bc2_sqrt, 1 - mom, 1 - lr * cfg.resolved_weight_decay])
        coef = np.ascontiguousarray(coef, dtype=self.dt)
        self.kernel(
            *self.pointers[:8], self.orders[epoch].ctypes.data, *self.pointers[8:11],
            coef.ctypes.data, self.pointers[11], *self.scalars,
            self.nblk, self.group.exp.batch_size, len(self.XY), len(self.XYte), Rp,
        )  # fmt: skip
        return self.loss[0, :R].copy(), self.loss[1, :R].copy()

    def quarantine(self, dead: np.ndarray) -> None:
        """Zero a diverged run's weights and state: its lane then computes harmless zeros."""
        lanes = np.flatnonzero(dead)
        blk, lane = lanes // self.L, lanes % self.L
        for flat in (self.P, self.G, self.M1) + ((self.M2,) if self.M2.size > self.L else ()):
            flat.reshape(self.nblk, -1, self.L)[blk, :, lane] = 0
        if self.ST.size > self.L:
            view = self.ST.reshape(self.nblk, 2, -1, self.L)
            view[blk, 0, :, lane] = 0
            view[blk, 1, :, lane] = 1
