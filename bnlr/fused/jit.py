"""From an llvmlite module to a function address: compiled in a child process (``llc.py``), kept
in an on-disk cache between processes, loaded into one shared engine."""

from __future__ import annotations

import functools
import hashlib
import os
import pathlib
import re
import subprocess
import sys
import threading
import warnings
from contextlib import suppress

try:  # (without llvmlite the batched engine keeps its torch path; nothing here is called)
    import llvmlite
    import llvmlite.binding as llvm

    from . import llc
except ImportError:  # pragma: no cover - exercised by environments without llvmlite
    llvm = None

CACHE_FILES = 256  # kernels kept in the on-disk cache (the most recently written)
_engine = None  # one MCJIT engine for every kernel, holding machine code only
_loaded: dict[str, int] = {}  # a kernel's cache digest (``digest``) → its address in _engine
_lock = threading.Lock()


def address(build, name: str, key) -> int:
    """The address of the function ``name`` of the llvmlite module ``build()`` returns, compiled
    for this machine's CPU; ``key`` names the module (the code that writes it is part of the
    cache key). The IR is optimised and turned into object code in a child process
    (``llc.py``), or read from the on-disk cache (``cache_dir``) without writing the IR at
    all; only the machine code comes back, added to one shared engine."""
    global _engine
    _init_llvm()
    key_digest = digest(key)
    symbol = f"{name}_{key_digest[:24]}"
    with _lock:
        if key_digest in _loaded:
            return _loaded[key_digest]

    def text() -> str:
        ir_text = re.sub(r'(define void @"\w+"\([^)]*\))', r"\1 #77", str(build()))
        ir_text += f"\nattributes #77 = {{ {llc.RECIPROCAL} }}\n"
        return ir_text.replace(f'@"{name}"', f'@"{symbol}"')

    obj = _object_code(text, key_digest)
    with _lock:
        if key_digest not in _loaded:  # (another thread may have loaded it meanwhile)
            if _engine is None:
                cpu, features = llc.target()
                tm = llvm.Target.from_default_triple().create_target_machine(
                    cpu=cpu, features=features
                )
                _engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), tm)
            _engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
            _engine.finalize_object()
            _loaded[key_digest] = _engine.get_function_address(symbol)
        return _loaded[key_digest]


def digest(key) -> str:
    """What a kernel's machine code depends on: what it is (``key``), the code that writes and
    compiles it, this CPU, the compiler."""
    return hashlib.sha256(repr(key).encode() + _machine()).hexdigest()


@functools.cache
def _machine() -> bytes:
    _init_llvm()
    # Every module of this package: those that write or compile a kernel (a few others come
    # along, at the price of a recompile when they change; a new module cannot be forgotten).
    sources = sorted(pathlib.Path(__file__).parent.glob("*.py"))
    parts = (
        *((p.name, p.read_bytes()) for p in sources),
        llc.target(),
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


def in_cache(key) -> bool:
    """True when the on-disk cache holds the kernel named ``key`` (as ``address`` names it)."""
    where = cache_dir()
    return bool(where) and os.path.exists(os.path.join(where, f"{digest(key)}.o"))


def _object_code(text, key_digest: str) -> bytes:
    """The kernel's object code: from the cache, else ``llc.emit(text())`` in a child process
    (in this one if none can be started), then written to the cache. A cache that cannot be read
    or written is skipped."""
    where = cache_dir()
    path = os.path.join(where, f"{key_digest}.o") if where else None
    if path:
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError:
            pass
    text = text()  # (the IR is written only on a cache miss)
    try:
        done = subprocess.run(
            [sys.executable, "-I", llc.__file__, *llc.target()],
            input=text.encode(),
            capture_output=True,
            check=True,
        )
        obj = done.stdout
    except (OSError, subprocess.CalledProcessError) as e:
        warnings.warn(f"compiling in-process: the compiler process failed ({e})", stacklevel=2)
        obj = llc.emit(text)
    if path:
        try:
            os.makedirs(where, exist_ok=True)
            tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
            with open(tmp, "wb") as f:
                f.write(obj)
            os.replace(tmp, path)  # (atomic: a reader never sees half a file)
            prune(where)
        except OSError:
            pass
    return obj


def prune(where: str) -> None:
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
