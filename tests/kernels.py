"""Which attention kernel a CPU layer is expected to run on this machine; flex's backward on CPU."""

from __future__ import annotations

from variants import _lsla_cpu


def fused_cpu_or(fallback: str) -> str:
    """The fused CPU kernel, or ``fallback`` on a machine that cannot build it (no C++
    compiler: the layers then run SDPA or the explicit path)."""
    return "fused_cpu" if _lsla_cpu.library() is not None else fallback


def allow_flex_backward_on_cpu(monkeypatch) -> None:
    """Lift torch's entry check that refuses flex_attention's backward on CPU, so that its
    eager maths (which the compiled CUDA kernels implement) can be checked under autograd here.
    A torch without that check under this name keeps refusing: callers skip on its error."""
    from torch.nn.attention import flex_attention as flex_module

    monkeypatch.setattr(flex_module, "_validate_device", lambda *tensors: None, raising=False)
