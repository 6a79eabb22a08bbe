"""Which attention kernel a CPU layer is expected to run on this machine."""

from __future__ import annotations

from variants import _lsla_cpu


def fused_cpu_or(fallback: str) -> str:
    """The fused CPU kernel, or ``fallback`` on a machine that cannot build it (no C++
    compiler: the layers then run SDPA or the explicit path)."""
    return "fused_cpu" if _lsla_cpu.library() is not None else fallback
