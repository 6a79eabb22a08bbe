"""The fused CPU kernel of the LSLA family (``_lsla_cpu.cpp``), forward and backward in fp32:
one pass per (window, head) tile, its N x N maps kept in cache and recomputed in backward, so
nothing N x N is stored for autograd.

Built on first use with the machine's C++ compiler (``_cpu_build``: ``$CXX``, else ``c++``,
``g++`` or ``clang++``; about a second, cached per source, compiler and CPU) and called
through ctypes. Without a compiler the layers run the explicit path and a warning says so once;
``LSLA_CPU_KERNEL=0`` turns the kernel off (``why_unavailable()`` then says so).
"""

from __future__ import annotations

import ctypes
import os
import warnings
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable
from torch.profiler import record_function

from variants._cpu_build import SWITCH, BuildError, build_and_load, disabled
from variants._lsla_geometry import padded_width

SOURCE = Path(__file__).with_name("_lsla_cpu.cpp")
MAX_TOKENS = 64  # tokens per window the kernel takes; head_dim a multiple of 16, up to 64


class Flags(NamedTuple):
    """How the tables apply: windows per image (mask row of window b: b % n_windows), the
    fixed scale multiplied into Q (1 with a scale table), S divides, B_o multiplies."""

    n_windows: int
    qscale: float
    scale_div: bool
    outer_mul: bool


def supports(tokens: int, head_dim: int) -> bool:
    return 1 <= tokens <= MAX_TOKENS and head_dim % 16 == 0 and 16 <= head_dim <= 64


def why_unavailable() -> str | None:
    """None when the kernel is loaded, else the reason in one line."""
    return _load()[1]


def library() -> ctypes.CDLL | None:
    lib, reason = _load()
    if lib is None and reason is not None and not disabled():
        _warn_once(reason)
    return lib


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
    if disabled():
        return None, f"{SWITCH}={os.environ[SWITCH]} turns it off"
    try:
        lib = build_and_load(SOURCE)
    except BuildError as err:
        return None, str(err)
    p, i, f = ctypes.c_void_p, ctypes.c_int, ctypes.c_float
    tables = [p] * 5 + [f, i, i]  # s, inner, neg, outer, keep; qscale, scale_div, outer_mul
    lib.lsla_window_forward.argtypes = [p] * 5 + [ctypes.c_long] + [i] * 4 + tables + [i]
    lib.lsla_window_backward.argtypes = [p] * 8 + [ctypes.c_long] + [i] * 4 + tables + [p] * 3
    lib.lsla_window_backward.argtypes += [i]
    lib.lsla_window_forward.restype = lib.lsla_window_backward.restype = i
    lib.lsla_offsets_fold.argtypes = [p, p] + [i] * 6
    lib.lsla_offsets_fold.restype = i
    return lib, None


def fold_onto_offsets(grad: Tensor, into: Tensor, grid: tuple[int, int], r0: int) -> bool:
    """``into[:, r0 + yk, c + xk] += grad[:, r, c, yk, xk]`` for ``grad [h, R, W, H, W]`` and a
    table per offset ``into [h, 2H-1, 2W-1]`` (contiguous fp32): global attention's table
    gradients, one pass over ``grad`` (torch's ``unfold_backward`` twice took a quarter of
    vit_lsla_t's global training step). False, with nothing done, where the kernel cannot
    take them (another dtype or layout, or no kernel)."""
    H, W = grid
    ok = grad.dtype == into.dtype == torch.float32 and grad.is_contiguous()
    ok = ok and into.is_contiguous() and grad.device.type == "cpu"
    if not ok or r0 + grad.shape[1] + H - 1 > into.shape[1] or library() is None:
        return False
    at = into[:, r0:]  # from row r0 of each head's plane; planes of into.shape[1] - r0 rows
    with record_function("lsla_cpu::offsets_fold"):
        status = _lib().lsla_offsets_fold(
            grad.data_ptr(), at.data_ptr(), grad.shape[0], grad.shape[1], H, W,
            into.shape[1], torch.get_num_threads(),
        )  # fmt: skip
    return status == 0


def pad_rows(table: Tensor | None, fill: float = 0.0) -> Tensor | None:
    """``[..., N, N] -> [..., N, NP]`` contiguous fp32, NP = N rounded up to 16: the kernel's
    layout (S padded with 1, everything else with 0; the kernel masks padding itself)."""
    if table is None:
        return None
    n = table.shape[-1]
    out = table.new_full((*table.shape[:-1], padded_width(n)), fill, dtype=torch.float32)
    out[..., :n] = table
    return out


def kernel_tables(s, inner, bo, neg, keep) -> tuple[Tensor | None, ...]:
    """The kernel's five tables in its argument order, the per-head ones padded; rebuilt in
    backward rather than saved (they are small, and the unpadded ones are saved anyway), kept
    by the layer between calls without autograd (``attend_no_grad``)."""
    return pad_rows(s, 1.0), pad_rows(inner), neg, pad_rows(bo), keep


def attend(q: Tensor, k: Tensor, v: Tensor, s, inner, bo, neg, keep, flags: Flags) -> Tensor:
    """``A V`` for ``q, k, v [B*nW, h, N, d]`` with S, B_i, B_o ``[h, N, N]`` (None: absent)
    and the padded masks ``neg``, ``keep`` ``[nW, N, NP]`` (None: no shift / B_o everywhere);
    differentiable in q, k, v and the three tables. The result ``[B*nW, h, N, d]`` is a view of
    a ``[B*nW, N, h, d]`` buffer, so merging the heads back is free. The caller has checked
    :func:`supports` and :func:`library`."""
    out = FusedWindowAttention.apply(q, k, v, s, inner, bo, neg, keep, flags)
    return out.transpose(1, 2)


def attend_no_grad(q: Tensor, k: Tensor, v: Tensor, tables: tuple, flags: Flags) -> Tensor:
    """:func:`attend` without autograd, from tables already in the kernel's layout
    (:func:`kernel_tables`): a layer keeps them while its parameters are unchanged."""
    return _forward(q, k, v, tables, flags).transpose(1, 2)


def _forward(q: Tensor, k: Tensor, v: Tensor, tables: tuple, flags: Flags) -> Tensor:
    """The kernel's forward: ``[B*nW, N, h, d]``."""
    q, k, v = (_unit_last(x) for x in (q, k, v))
    windows, heads, n, d = q.shape
    out = q.new_empty(windows, n, heads, d)
    with record_function("lsla_cpu::window_forward"):  # named in torch.profiler's tables
        status = _lib().lsla_window_forward(
            _ptr(q), _ptr(k), _ptr(v), _ptr(out),
            (ctypes.c_long * 12)(*_strides(q, k, v, out.transpose(1, 2))),
            windows, heads, n, d, flags.n_windows, *map(_ptr, tables),
            flags.qscale, int(flags.scale_div), int(flags.outer_mul), torch.get_num_threads(),
        )  # fmt: skip
    _check(status, q)
    return out


def _strides(*xs: Tensor | None) -> list[int]:
    """(window, head, row) strides of each ``[windows, heads, n, d]`` tensor (0s for None)."""
    return [s for x in xs for s in (x.stride()[:3] if x is not None else (0, 0, 0))]


def _ptr(x: Tensor | None):
    return None if x is None else x.data_ptr()


def _unit_last(x: Tensor) -> Tensor:
    return x if x.stride(-1) == 1 else x.contiguous()


class FusedWindowAttention(torch.autograd.Function):
    """The kernel under autograd: saves q, k, v and the small tables, nothing N x N."""

    @staticmethod
    def forward(ctx, q, k, v, s, inner, bo, neg, keep, flags: Flags):
        ctx.shared = k is v  # LSLA's keys and values: X's channel slices, one tensor
        q, k = _unit_last(q), _unit_last(k)
        v = k if ctx.shared else _unit_last(v)
        out = _forward(q, k, v, kernel_tables(s, inner, bo, neg, keep), flags)
        ctx.save_for_backward(q, k, v, s, inner, bo, neg, keep)
        ctx.flags = flags
        return out

    @staticmethod
    @once_differentiable  # a second derivative would miss the kernel's ops: say so
    def backward(ctx, dout):
        q, k, v, s, inner, bo, neg, keep = ctx.saved_tensors
        flags: Flags = ctx.flags
        windows, heads, n, d = q.shape
        dout = _unit_last(dout).transpose(1, 2)  # [windows, heads, n, d]
        dq, dk = (q.new_empty(windows, n, heads, d).transpose(1, 2) for _ in range(2))
        # one tensor's keys and values: the kernel adds dK onto dV in one buffer, where autograd
        # would add two (the stage-1 sum alone: a 4.8 MB pass at batch 4)
        dv = dk if ctx.shared else q.new_empty(windows, n, heads, d).transpose(1, 2)
        threads = max(1, min(torch.get_num_threads(), windows * heads))
        wants = ctx.needs_input_grad[3:6]
        grads = [
            torch.zeros(threads, heads, n, padded_width(n)) if t is not None and want else None
            for t, want in zip((s, inner, bo), wants, strict=True)
        ]
        tables = kernel_tables(s, inner, bo, neg, keep)
        with record_function("lsla_cpu::window_backward"):
            status = _lib().lsla_window_backward(
                _ptr(q), _ptr(k), _ptr(v), _ptr(dout), _ptr(dq), _ptr(dk), _ptr(dv),
                (ctypes.c_long * 24)(*_strides(q, k, v, None, dout, dq, dk, dv)),
                windows, heads, n, d, flags.n_windows, *map(_ptr, tables),
                flags.qscale, int(flags.scale_div), int(flags.outer_mul), *map(_ptr, grads),
                threads,
            )  # fmt: skip
        _check(status, q)
        ds, dinner, dbo = (None if g is None else g.sum(0)[..., :n] for g in grads)
        dv = None if ctx.shared else dv  # shared: dk holds both gradients
        return dq, dk, dv, ds, dinner, dbo, None, None, None


def _lib() -> ctypes.CDLL:
    lib = library()
    assert lib is not None, "callers check library() first"
    return lib


def _check(status: int, q: Tensor) -> None:
    if status != 0:
        raise RuntimeError(f"{SOURCE.name} declined q {tuple(q.shape)} (status {status})")
