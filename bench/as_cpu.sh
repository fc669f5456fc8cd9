#!/usr/bin/env bash
# Runs a command as if on another x86-64 CPU, on this one: every library that picks its code by
# the CPU is told to use no more than the instruction set named, and bnlr's fused kernel is
# compiled for it (BNLR_CPU). What changes is which code runs, its rounding and its speed; the
# machine's cores and caches stay what they are.
#
#   bash bench/as_cpu.sh avx2 python -m pytest        # an AVX2 CPU without AVX-512 (Haswell…Zen 3)
#   bash bench/as_cpu.sh baseline python -m bnlr info # x86-64 with SSE2 only (the kernel), SSE4
#   bash bench/as_cpu.sh zen3 python -m pytest tests/test_engines.py   # an emulated AMD EPYC
#
# zen3 runs the command's Python under qemu-user (Debian's qemu-user) as an AMD EPYC Milan: AVX2
# and FMA, no AVX-512. There every library reads that CPU from CPUID and picks its code for it, as
# on such a machine, about 13 times slower; a child process (a test's server) runs natively, and
# /proc/cpuinfo (bnlr info's "cpu" line) still names the host's CPU.
#
# Check what it took with `python -m bnlr info` (kernel CPU, torch's instructions) and
# `python -c "import numpy; numpy.show_runtime()"`.
set -euo pipefail
case "${1:-}" in
avx2)
    export BNLR_CPU=haswell ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 \
        ONEDNN_MAX_CPU_ISA=AVX2 NUMBA_CPU_NAME=haswell NUMBA_CPU_FEATURES= \
        NPY_DISABLE_CPU_FEATURES="X86_V4 AVX512_ICL AVX512_SPR"
    ;;
baseline)
    export BNLR_CPU=x86-64 ATEN_CPU_CAPABILITY=default MKL_ENABLE_INSTRUCTIONS=SSE4_2 \
        ONEDNN_MAX_CPU_ISA=SSE41 NUMBA_CPU_NAME=generic NUMBA_CPU_FEATURES= \
        NPY_DISABLE_CPU_FEATURES="X86_V3 X86_V4 AVX512_ICL AVX512_SPR"
    ;;
zen3)
    shift
    if [ "${1:-}" = python ]; then  # the interpreter itself (a pyenv shim is a shell script)
        shift
        set -- "$(python -c 'import sys; print(sys.executable)')" "$@"
    fi
    exec qemu-x86_64 -cpu EPYC-Milan-v1 "$@" 2> >(grep -v "TCG doesn't support requested feature" >&2)
    ;;
*)
    echo "usage: bash bench/as_cpu.sh avx2|baseline|zen3 COMMAND [ARGS…]" >&2
    exit 2
    ;;
esac
shift
exec "$@"
