"""The MLP's memory-light training path (GELU and fc2 keeping only GELU's input) equals timm's
op-by-op MLP: exactly in float64, within round-off in fp32 (the fused C++ pass and torch's ops;
with oneDNN, fc1, GELU and fc2 as one autograd function whose GELU pass also sums fc1's bias
gradient), and under bf16 autocast; it keeps one hidden map where the op-by-op path keeps two."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

import harness.light_mlp as light_mlp
import variants._linear
from harness.light_mlp import LightMlp
from harness.measure import saved_bytes
from harness.mlp import Mlp

needs_library = pytest.mark.skipif(
    light_mlp.library() is None, reason="no C++ compiler: the fused GELU pass is not built"
)


def _pair(dtype=torch.float32) -> tuple[Mlp, Mlp]:
    torch.manual_seed(0)
    light = Mlp(32, 128).to(dtype).train()
    plain = copy.deepcopy(light)
    plain._light_backward = lambda: False  # instance attribute: the op-by-op path
    return light, plain


def _outputs_and_grads(mlp: Mlp, x: torch.Tensor) -> list[torch.Tensor]:
    x = x.detach().requires_grad_(True)
    y = mlp(x)
    weights = torch.linspace(-1, 1, y.numel(), dtype=torch.float64).view_as(y)
    (y.double() * weights).sum().backward()
    return [y.detach(), x.grad, *(p.grad for p in mlp.parameters())]


def _close(got: list[torch.Tensor], want: list[torch.Tensor], **tolerance) -> None:
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, **tolerance)


def test_light_mlp_equals_op_by_op_in_float64():
    light, plain = _pair(torch.float64)
    x = torch.randn(3, 49, 32, dtype=torch.float64)
    _close(_outputs_and_grads(light, x), _outputs_and_grads(plain, x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("grad_on_mkl", [False, True])
@pytest.mark.parametrize("fused", [True, False])
def test_light_mlp_equals_op_by_op_in_fp32(monkeypatch, fused, grad_on_mkl):
    if fused and light_mlp.library() is None:
        pytest.skip("no C++ compiler: the fused GELU pass is not built")
    if not fused:
        monkeypatch.setattr(light_mlp, "library", lambda: None)
    monkeypatch.setattr(variants._linear, "INPUT_GRAD_ON_MKL", grad_on_mkl)
    light, plain = _pair()
    x = 2 * torch.randn(3, 49, 32)
    _close(_outputs_and_grads(light, x), _outputs_and_grads(plain, x), rtol=1e-5, atol=1e-5)


def test_light_mlp_under_bf16_autocast_equals_op_by_op():
    light, plain = _pair()
    x = torch.randn(3, 49, 32)
    results = []
    for mlp in (light, plain):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            results.append(_outputs_and_grads(mlp, x))
    assert results[0][0].dtype == torch.bfloat16
    _close(*results, rtol=1e-2, atol=1e-3)


def test_light_mlp_keeps_one_hidden_map_not_two():
    light, plain = _pair()
    x = torch.randn(2, 49, 32)
    hidden_map = 2 * 49 * 128 * 4  # bytes of one [tokens, 4C] fp32 map
    assert saved_bytes(plain, x) - saved_bytes(light, x) == hidden_map


def test_dropout_between_gelu_and_fc2_takes_the_op_by_op_path():
    light, plain = _pair()
    light.drop1.p = plain.drop1.p = 0.5
    x = torch.randn(2, 49, 32)
    assert saved_bytes(light, x) == saved_bytes(plain, x)


@needs_library
@pytest.mark.parametrize("threads", [1, 3])
def test_fused_gelu_pass_is_within_round_off_of_float64(threads):
    torch.manual_seed(0)
    n = 16 * 37 + 5  # a partial last vector, and blocks shared unevenly between threads
    h, da = 4 * torch.randn(n), torch.randn(n)
    want_a = F.gelu(h.double())
    want_dh = torch.ops.aten.gelu_backward(da.double(), h.double())
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, dh = light_mlp.gelu_and_grad(h, da.clone())
    finally:
        torch.set_num_threads(previous)
    torch.testing.assert_close(a.double(), want_a, rtol=0, atol=2e-6)
    torch.testing.assert_close(dh.double(), want_dh, rtol=0, atol=2e-6)


@needs_library
def test_a_second_derivative_is_refused_not_silently_wrong():
    light, _ = _pair()
    x = torch.randn(4, 32, requires_grad=True)
    (grad,) = torch.autograd.grad(light(x).square().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        grad.sum().backward()


@needs_library
@pytest.mark.skipif(not variants._linear.HAS_ONEDNN_LINEAR, reason="torch built without oneDNN")
def test_fp32_training_runs_fc1_gelu_and_fc2_as_one_function():
    light, _ = _pair()
    y = light(torch.randn(2, 49, 32, requires_grad=True))
    assert type(y.grad_fn).__name__ == "LightMlpBackward"


@needs_library
def test_hidden_rows_off_the_vector_width_take_the_two_function_path():
    torch.manual_seed(0)
    light = Mlp(32, 40).train()  # 40 hidden channels: not a multiple of 16 floats
    plain = copy.deepcopy(light)
    plain._light_backward = lambda: False
    x = torch.randn(2, 49, 32)
    assert not LightMlp.applies(x, 40)
    assert type(light(x.requires_grad_()).grad_fn).__name__ == "GeluLinearBackward"
    _close(_outputs_and_grads(light, x), _outputs_and_grads(plain, x), rtol=1e-5, atol=1e-5)


@needs_library
@pytest.mark.parametrize("threads", [1, 3])
def test_fused_pass_sums_the_gradient_over_rows_within_round_off(threads):
    torch.manual_seed(0)
    rows, width = 300, 48  # blocks of 128 rows and a partial one, shared unevenly by threads
    h, da = 4 * torch.randn(rows, width), torch.randn(rows, width)
    want_dh = torch.ops.aten.gelu_backward(da.double(), h.double())
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        fused = light_mlp.gelu_grad_and_bias_grad(h, da.clone())
        # 40 floats a row, off the vector width: gelu_and_grad's pass, then torch's sum
        narrow = light_mlp.gelu_grad_and_bias_grad(h[:, :40].contiguous(), da[:, :40].clone())
    finally:
        torch.set_num_threads(previous)
    for (a, dh, db), cols in ((fused, slice(None)), (narrow, slice(0, 40))):
        torch.testing.assert_close(a.double(), F.gelu(h[:, cols].double()), rtol=0, atol=2e-6)
        torch.testing.assert_close(dh.double(), want_dh[:, cols], rtol=0, atol=2e-6)
        torch.testing.assert_close(db.double(), want_dh[:, cols].sum(0), rtol=0, atol=1e-4)


@needs_library
@pytest.mark.skipif(not variants._linear.HAS_ONEDNN_LINEAR, reason="torch built without oneDNN")
def test_backward_alone_under_a_flop_counter_takes_torchs_ops_and_agrees():
    from torch.utils.flop_counter import FlopCounterMode

    light, _ = _pair()
    x = 2 * torch.randn(3, 49, 32)
    want = _outputs_and_grads(light, x)
    light.zero_grad(set_to_none=True)
    x = x.detach().requires_grad_(True)
    y = light(x)  # forward outside the counter: the one-function path
    assert type(y.grad_fn).__name__ == "LightMlpBackward"
    weights = torch.linspace(-1, 1, y.numel(), dtype=torch.float64).view_as(y)
    with FlopCounterMode(display=False):  # the fused pass declines under a dispatch mode
        (y.double() * weights).sum().backward()
    _close([y.detach(), x.grad, *(p.grad for p in light.parameters())], want, rtol=1e-5, atol=1e-5)
