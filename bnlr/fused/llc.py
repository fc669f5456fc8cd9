"""LLVM IR in, this machine's object code out: ``bnlr.fused`` compiles each kernel here.

Run as a script (``python bnlr/fused/llc.py CPU FEATURES < kernel.ll > kernel.o``: the target the
parent's cache key names, so that parent and child agree even where they see different CPUs, as
under an emulator) it is a child process that imports llvmlite only, so everything LLVM allocates
while optimising a kernel goes back to the system when it exits; compiled in the server itself,
each kernel kept 3–6 MB of it for good (measured: 20–60 KB of the object code is all the kernel
needs). ``emit`` is also importable, for compiling in-process where no child process can be
started.
"""

from __future__ import annotations

import os
import sys

import llvmlite.binding as llvm

# tanh's division may use the CPU's reciprocal estimate refined by Newton steps (1 for float32,
# 2 for float64: within the ulps tests/test_fused.py allows)
RECIPROCAL = '"reciprocal-estimates"="vec-divf:1,vec-divd:2,divf:1,divd:2"'


def target() -> tuple[str, str]:
    """The CPU the kernels are compiled for, and its features: this host's, or the LLVM CPU
    named by ``BNLR_CPU`` (``haswell``: AVX2 without AVX-512; ``x86-64``: SSE2 only), to try
    on one machine what another CPU would run."""
    named = os.environ.get("BNLR_CPU", "").strip()
    if named:
        return named, ""
    return llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()


def emit(text: str, cpu: str | None = None, features: str | None = None) -> bytes:
    """Optimises the IR ``text`` at -O3 for ``cpu`` and ``features`` (``target()`` by default)
    and returns the object file."""
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    if cpu is None:
        cpu, features = target()
    tm = llvm.Target.from_default_triple().create_target_machine(cpu=cpu, features=features, opt=3)
    mod = llvm.parse_assembly(text, context=llvm.create_context())
    mod.verify()
    pb = llvm.create_pass_builder(tm, llvm.create_pipeline_tuning_options(speed_level=3))
    pb.getModulePassManager().run(mod, pb)
    return tm.emit_object(mod)


if __name__ == "__main__":  # the parent names the target: the one its cache key was made for
    sys.stdout.buffer.write(emit(sys.stdin.read(), *sys.argv[1:3]))
