"""Which attention kernel a CPU layer is expected to run on this machine; the flex checks that
CPU (``test_kernels``, ``test_flex_compiles``) and CUDA (``test_gpu``) share."""

from __future__ import annotations

import torch

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


FLEX_VARIANTS = ["lsla", "lsla_qkv", "lsla_scale_div", "swin_ds", "swin_outer"]
# the layers' geometries for the flex checks (window 7 on a 15 x 13 map): padded windows,
# shifted ones (the mask and masked B_o), and global attention (offsets clipped beyond +-6)
FLEX_GEOMETRIES = {
    "window": dict(shift_size=0),
    "shifted": dict(shift_size=3),
    "global": dict(window="global"),
}
# (variant, geometry) pairs that take flex: Swin's own fixed scale and bias take SDPA in
# windows, flex in global attention (SDPA would need its bias as an [h, L, L] tensor)
FLEX_CASES = [(name, g) for name in FLEX_VARIANTS for g in FLEX_GEOMETRIES] + [("swin", "global")]


def results_by_path(m, x, choice: str = "_flex_applies", paths=(True, False)):
    """``m`` (a layer, parameters away from init) run with its method ``choice`` answering
    each of ``paths`` in turn (by default flex, then the explicit path): for each,
    ``[output, x's gradient, every parameter's gradient]`` under one fixed weighting."""
    results = []
    for path in paths:
        setattr(m, choice, lambda *args, path=path: path)
        m.zero_grad()
        xi = x.clone().requires_grad_(True)
        y = m(xi)
        weights = torch.linspace(-1, 1, y.numel(), device=y.device, dtype=y.dtype)
        (y * weights.view_as(y)).sum().backward()
        results.append([y.detach(), xi.grad, *(p.grad for p in m.parameters())])
    return results


# (batch, training): several batch sizes, with and without autograd
TRAIN_AND_EVAL = ((4, True), (3, True), (5, True), (5, False), (4, False), (2, True))


def train_or_evaluate(model, batch: int, train: bool, device: str) -> None:
    """One step of ``model`` at 64 px under bf16 autocast: a backward pass where ``train``."""
    model.train(train)
    x = torch.randn(batch, 3, 64, 64, device=device)
    with torch.set_grad_enabled(train), torch.autocast(device, dtype=torch.bfloat16):
        loss = model(x).float().logsumexp(-1).mean()
    if train:
        loss.backward()
