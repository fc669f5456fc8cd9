"""When kernels compile: ``Compiler`` holds a process's compiled kernels and its policy, compile on
first use (the library) or in one background thread while the torch path trains (the app)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from . import jit
from .args import prototype
from .shape import Shape, supported, wanted


class Compiler:
    """The compiled epoch kernels of this process, by ``Shape``, and when new ones compile.

    Args:
        background: False (the library, its tests, the CLI, the benches): a shape's kernel
            compiles when the shape first trains. True (the app): a shape new to the process
            trains on the torch path while one background thread compiles its kernel, so that
            no request waits for a compile (a kernel in the on-disk cache is loaded at once).
        idle: in the background, the compiler waits until this returns True (the app: no
            training is running), so that a compile never slows a request down.
        max_pending: shapes waiting for the background thread at most (others take the torch
            path and may queue on a later request): one request asking for many shapes cannot
            keep a core compiling.
        max_kernels: kernels kept in the background mode (each keeps ~2–5 MB: machine code,
            LLVM state).

    >>> from bnlr import fused
    >>> fused.COMPILER.configure(background=True, idle=lambda: True)  # the app, at start-up
    >>> fused.COMPILER.ready(fused.Shape((2, 3, 1), "tanh", "none", "sgd", "float64"))
    False
    """

    def __init__(
        self,
        background: bool = False,
        idle: Callable[[], bool] | None = None,
        max_pending: int = 4,
        max_kernels: int = 48,
    ):
        self.background, self.idle = background, idle
        self.max_pending, self.max_kernels = max_pending, max_kernels
        self.kernels: dict[Shape, Callable] = {}  # compiled, callable with ``args.call``
        self.pending: list[Shape] = []  # shapes waiting for the background thread, oldest first
        self._lock = threading.Condition()
        self._worker: threading.Thread | None = None

    def configure(self, background: bool = False, idle: Callable[[], bool] | None = None) -> None:
        """Sets the policy (see the class): the app calls ``configure(background=True, idle=…)``
        once at start-up."""
        self.background, self.idle = background, idle

    def kernel(self, shape: Shape) -> Callable:
        """The compiled epoch kernel of ``shape`` (compiled on its first use in this process)."""
        with self._lock:
            fn = self.kernels.get(shape)
        if fn is None:  # compiled outside the lock: other shapes' requests need not wait
            from .epoch import Kernel  # (llvmlite is imported when a kernel is first written)

            addr = jit.address(lambda: Kernel(shape).build(), "epoch", ("epoch", shape))
            with self._lock:
                fn = self.kernels.setdefault(shape, prototype(shape.dtype)(addr))
        return fn

    def ready(self, shape: Shape) -> bool:
        """True when the kernel of ``shape`` can train now. Unless ``background``, it is
        compiled here if need be; in the background, a shape not compiled yet is queued (if
        fewer than ``max_pending`` wait) and False is returned: the caller takes the torch path
        this time — unless the kernel is in the on-disk cache, then it is loaded here."""
        with self._lock:
            if shape in self.kernels:
                return True
        if not self.background or jit.in_cache(("epoch", shape)):  # (loads in milliseconds)
            self.kernel(shape)
            return True
        self.prepare([shape])
        return False

    def prepare(self, shapes: Iterable[Shape], limit: int | None = None) -> None:
        """Queues shapes for the background thread (up to ``limit`` waiting, ``max_pending`` by
        default); the server's start-up queues its default pages' shapes this way."""
        with self._lock:
            for shape in shapes:
                new = shape not in self.kernels and shape not in self.pending
                room = len(self.kernels) + len(self.pending) < self.max_kernels
                if new and room and len(self.pending) < (limit or self.max_pending):
                    self.pending.append(shape)
            if self.pending and self._worker is None:
                self._worker = threading.Thread(
                    target=self._compile_pending, name="bnlr-compile", daemon=True
                )
                self._worker.start()
            self._lock.notify_all()

    def _compile_pending(self) -> None:
        """The background thread: one shape at a time, oldest first; exits when none wait."""
        while True:
            with self._lock:
                if not self.pending:
                    self._worker = None  # (under the lock: a shape queued from now starts one)
                    return
                shape = self.pending[0]
            while self.idle is not None and not self.idle():
                time.sleep(0.1)
            try:
                self.kernel(shape)
            finally:
                with self._lock:
                    self.pending.remove(shape)
                    self._lock.notify_all()

    def wait(self, timeout: float = 120.0) -> bool:
        """Blocks until the background thread has nothing left (tests, benches); True if so."""
        with self._lock:
            return self._lock.wait_for(lambda: not self.pending, timeout)

    def path(self, model, in_features: int, optimizer_name: str, dtype: str) -> str:
        """Which path a group of this network takes now: "fused" (its kernel is compiled, or in
        the on-disk cache), "compile" (the kernel will be compiled first, then run), or
        "torch"."""
        if not (wanted() and supported(model.widths, in_features, model.bn)):
            return "torch"
        sizes = (in_features, *model.widths, 1)
        want = (sizes, model.activation, model.bn, optimizer_name, dtype)
        with self._lock:
            if any(
                (k.sizes, k.activation, k.bn, k.optimizer, k.dtype) == want for k in self.kernels
            ):
                return "fused"
        if self.background and jit.in_cache(("epoch", Shape(*want))):  # (plain SGD's shape)
            return "fused"
        return "torch" if self.background else "compile"
