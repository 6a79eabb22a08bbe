"""The fused CPU kernel of the LSLA family (``_lsla_cpu.cpp``): one pass per (window, head) tile,
its N x N logits kept in cache, for inference in fp32.

It is built on first use with the machine's C++ compiler (``$CXX``, else ``c++``, ``g++`` or
``clang++``; about a second), cached under ``$LSLA_KERNEL_CACHE`` (default
``~/.cache/vit-lsla-harness``) per source, compiler and CPU (it is compiled for the CPU it runs
on, so a shared cache serves mixed nodes), and called through ctypes. Without a compiler the
layers run the explicit path and a warning says so once; ``LSLA_CPU_KERNEL=0`` turns the kernel
off (``why_unavailable()`` then says so).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from functools import lru_cache
from pathlib import Path

import torch
from torch import Tensor

from variants._lsla_core import Tables

SOURCE = Path(__file__).with_name("_lsla_cpu.cpp")
FLAGS = ("-O3", "-march=native", "-std=c++17", "-shared", "-fPIC", "-pthread")
SWITCH = "LSLA_CPU_KERNEL"
MAX_TOKENS = 64  # tokens per window the kernel takes; head_dim a multiple of 16, up to 64
BUILD_TIMEOUT_S = 300


def supports(tokens: int, head_dim: int) -> bool:
    return 1 <= tokens <= MAX_TOKENS and head_dim % 16 == 0 and 16 <= head_dim <= 64


def why_unavailable() -> str | None:
    """None when the kernel is loaded, else the reason in one line."""
    return _load()[1]


def library() -> ctypes.CDLL | None:
    lib, reason = _load()
    if lib is None and reason is not None and not _disabled():
        _warn_once(reason)
    return lib


def _disabled() -> bool:
    return os.environ.get(SWITCH, "1").strip().lower() in ("0", "false", "no", "off")


@lru_cache(maxsize=1)
def _warn_once(reason: str) -> None:
    warnings.warn(
        f"the fused CPU attention kernel is unavailable ({reason}); LSLA-family layers run the "
        f"explicit path (about 2x slower attention on CPU). Install a C++ compiler (g++ or "
        f"clang++) or point CXX at one; {SWITCH}=0 turns the kernel off without this warning.",
        RuntimeWarning,
        stacklevel=3,
    )


@lru_cache(maxsize=1)
def _load() -> tuple[ctypes.CDLL | None, str | None]:
    if _disabled():
        return None, f"{SWITCH}={os.environ[SWITCH]} turns it off"
    compiler = _compiler()
    if compiler is None:
        return None, "no C++ compiler found (tried $CXX, c++, g++, clang++)"
    try:
        path = _build(compiler)
        lib = ctypes.CDLL(str(path))
    except (OSError, subprocess.SubprocessError) as err:
        return None, f"building {SOURCE.name} with {compiler} failed: {_first_line(err)}"
    fn = lib.lsla_window_attention
    ptr, long_, int_ = ctypes.c_void_p, ctypes.c_long, ctypes.c_int
    fn.argtypes = [ptr, ptr, ptr, ptr, ptr, long_, int_, int_, int_, int_]
    fn.argtypes += [ptr, int_, ptr, int_, ptr, int_, ctypes.c_float, int_, int_, int_]
    fn.restype = int_
    return lib, None


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return name
    return None


def _first_line(err: BaseException) -> str:
    text = getattr(err, "stderr", None) or str(err)
    text = text.decode(errors="replace") if isinstance(text, bytes) else text
    lines = [line.strip() for line in text.splitlines() if "error" in line.lower()]
    return (lines or [text.strip() or type(err).__name__])[0][:200]


def _build(compiler: str) -> Path:
    """The shared library for this source, compiler and CPU: built once, then reused."""
    version = subprocess.run(
        [compiler, "--version"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    key = hashlib.sha256()
    for part in (SOURCE.read_bytes(), version.encode(), " ".join(FLAGS).encode(), _cpu_id()):
        key.update(part)
    cache = _cache_dir()
    target = cache / f"lsla_cpu_{key.hexdigest()[:16]}{_suffix()}"
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache, suffix=_suffix())  # concurrent builders: last wins
    os.close(fd)
    try:
        cmd = [compiler, *FLAGS, "-o", tmp, str(SOURCE)]
        subprocess.run(cmd, capture_output=True, timeout=BUILD_TIMEOUT_S, check=True)
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return target


def _cache_dir() -> Path:
    if os.environ.get("LSLA_KERNEL_CACHE"):
        return Path(os.environ["LSLA_KERNEL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vit-lsla-harness"


def _suffix() -> str:
    return ".dylib" if platform.system() == "Darwin" else ".so"


def _cpu_id() -> bytes:
    """What ``-march=native`` compiles for: the CPU's model and feature flags."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return f"{platform.machine()} {platform.processor()}".encode()
    wanted = ("model name", "flags", "Features", "CPU part")
    return "\n".join(sorted({ln for ln in lines if ln.startswith(wanted)})).encode()


def pad_tables(t: Tables, heads: int, tokens: int) -> Tables:
    """The kernel's tables: ``[windows or 1, heads, N, NP]`` contiguous fp32, rows padded to a
    multiple of 16 (S with 1, the bias with -inf so padding gets no weight, B_o with 0). The
    bias always exists: zeros (and the -inf padding) when the layer has none."""
    scale, bias, outer = t
    if bias is None:
        bias = torch.zeros(1, heads, tokens, tokens)
    return Tables(_pad(scale, heads, 1.0), _pad(bias, heads, float("-inf")), _pad(outer, heads, 0))


def _pad(table: Tensor | None, heads: int, fill: float) -> Tensor | None:
    if table is None:
        return None
    table = table.reshape(-1, *table.shape[-3:]) if table.dim() > 3 else table.unsqueeze(0)
    windows, n = table.shape[0], table.shape[-1]
    out = table.new_full((windows, heads, n, -(-n // 16) * 16), fill, dtype=torch.float32)
    out[..., :n] = table  # broadcasts a head-shared table (the shift mask alone) over heads
    return out


def attend(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    tables: Tables,
    n_windows: int,
    qscale: float,
    scale_div: bool,
    outer_mul: bool,
) -> Tensor:
    """``(softmax(Q K^T * S + B) + B_o) V`` for ``q, k, v [B*nW, h, N, d]`` (window ``b`` uses
    table row ``b % n_windows``) with tables from :func:`pad_tables`; the result
    ``[B*nW, h, N, d]`` is a view of a ``[B*nW, N, h, d]`` buffer (so merging the heads back is
    free). The caller has checked :func:`supports` and :func:`library`."""
    lib = library()
    assert lib is not None and supports(q.shape[-2], q.shape[-1])
    q, k, v = (x if x.stride(-1) == 1 else x.contiguous() for x in (q, k, v))
    windows, heads, n, d = q.shape
    out = q.new_empty(windows, n, heads, d).transpose(1, 2)
    strides = (ctypes.c_long * 12)(*[s for x in (q, k, v, out) for s in x.stride()[:3]])

    def ptr(x: Tensor | None):
        return None if x is None else x.data_ptr()

    def rows(x: Tensor | None) -> int:
        return 0 if x is None else x.shape[0]

    scale, bias, outer = tables
    status = lib.lsla_window_attention(
        ptr(q), ptr(k), ptr(v), ptr(out), strides, windows, heads, n, d, n_windows,
        ptr(scale), rows(scale), ptr(bias), rows(bias), ptr(outer), rows(outer),
        qscale, int(scale_div), int(outer_mul), torch.get_num_threads(),
    )  # fmt: skip
    if status != 0:
        raise RuntimeError(f"{SOURCE.name} declined q {tuple(q.shape)} (status {status})")
    return out
