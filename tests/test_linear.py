"""The backbone's linear layers: fp32 on CPU through oneDNN, inference and training, equals
``nn.Linear`` (and timm's ``Mlp``) within fp32 round-off; everything else takes ``nn.Linear``'s
own path."""

from __future__ import annotations

import pytest
import torch
from timm.layers import Mlp as TimmMlp
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import harness.mlp
import variants._linear
from harness.mlp import Mlp
from variants._linear import HAS_ONEDNN_LINEAR, Linear

needs_onednn = pytest.mark.skipif(not HAS_ONEDNN_LINEAR, reason="torch built without oneDNN")


def _pair(bias: bool = True):
    torch.manual_seed(0)
    ours = Linear(96, 288, bias=bias)
    plain = nn.Linear(96, 288, bias=bias)
    plain.load_state_dict(ours.state_dict())
    return ours, plain


def _spy(monkeypatch, module) -> list[int]:
    calls: list[int] = []
    real = module.onednn_linear

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "onednn_linear", counted)
    return calls


@needs_onednn
@pytest.mark.parametrize("bias", [True, False])
def test_inference_through_onednn_equals_nn_linear(monkeypatch, bias):
    ours, plain = _pair(bias)
    calls = _spy(monkeypatch, variants._linear)
    x = torch.randn(2, 7, 9, 96)
    for inp in (x, x.transpose(1, 2), x[:1, 0]):  # 4-D, non-contiguous, 2-D
        with torch.inference_mode():
            torch.testing.assert_close(ours(inp), plain(inp), rtol=1e-5, atol=1e-5)
    assert len(calls) == 3


@needs_onednn
def test_mlp_fuses_gelu_into_fc1_and_equals_timm(monkeypatch):
    torch.manual_seed(0)
    ours = Mlp(64, 256)
    timm_mlp = TimmMlp(64, 256, act_layer=nn.GELU)
    assert ours.state_dict().keys() == timm_mlp.state_dict().keys()
    timm_mlp.load_state_dict(ours.state_dict())
    calls = _spy(monkeypatch, harness.mlp)
    x = torch.randn(3, 5, 5, 64)
    with torch.inference_mode():
        torch.testing.assert_close(ours(x), timm_mlp(x), rtol=1e-5, atol=1e-5)
    assert len(calls) == 1  # fc1 with its GELU; fc2 goes through Linear


@needs_onednn
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("grad_on_mkl", [False, True])
def test_training_through_onednn_equals_nn_linear(monkeypatch, bias, grad_on_mkl):
    """Forward on oneDNN, the input's gradient on oneDNN or MKL (the CPU's faster), the
    weight's on torch.mm."""
    monkeypatch.setattr(variants._linear, "INPUT_GRAD_ON_MKL", grad_on_mkl)
    ours, plain = _pair(bias)
    calls = _spy(monkeypatch, variants._linear)
    x = torch.randn(2, 7, 9, 96).transpose(1, 2)  # non-contiguous, 4-D
    grad = torch.randn(2, 7, 9, 288).transpose(1, 2)  # the output gradient non-contiguous too
    inputs = [x.clone().requires_grad_() for _ in range(2)]
    for layer, xi in zip((ours, plain), inputs, strict=True):
        (layer(xi) * grad).sum().backward()
    assert len(calls) == (1 if grad_on_mkl else 2)  # the forward (and the input's gradient)
    torch.testing.assert_close(inputs[0].grad, inputs[1].grad, rtol=1e-5, atol=1e-5)
    for got, want in zip(ours.parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(got.grad, want.grad, rtol=1e-5, atol=1e-5)


def test_the_input_gradient_takes_mkl_on_intel_cpus_only(monkeypatch):
    monkeypatch.setattr(variants._linear, "_cpu_vendor", lambda: "GenuineIntel")
    assert variants._linear._input_grad_on_mkl() == torch.backends.mkl.is_available()
    monkeypatch.setattr(variants._linear, "_cpu_vendor", lambda: "AuthenticAMD")
    assert not variants._linear._input_grad_on_mkl()


def test_the_records_name_the_input_gradients_library(monkeypatch):
    for on_mkl, name in ((True, "input gradient MKL"), (False, "input gradient oneDNN")):
        monkeypatch.setattr(variants._linear, "INPUT_GRAD_ON_MKL", on_mkl)
        assert (name in variants._linear.cpu_gemms()) == HAS_ONEDNN_LINEAR


def test_other_dtypes_take_nn_linears_path(monkeypatch):
    ours, plain = _pair()
    calls = _spy(monkeypatch, variants._linear)
    x = torch.randn(4, 96).bfloat16()
    with torch.inference_mode():
        assert torch.equal(ours.bfloat16()(x), plain.bfloat16()(x))
    assert calls == []


@needs_onednn
def test_cpu_autocast_gets_its_bf16_linear_not_an_fp32_one(monkeypatch):
    ours, plain = _pair()
    calls = _spy(monkeypatch, variants._linear)
    x = torch.randn(4, 96, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, want = ours(x), plain(x)
        with torch.no_grad():
            assert ours(x).dtype == torch.bfloat16
    assert got.dtype == torch.bfloat16 and torch.equal(got, want)
    assert calls == []


def test_flop_counting_sees_the_linear():
    ours, _ = _pair()
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        ours(torch.randn(10, 96))
    assert counter.get_total_flops() == 2 * 10 * 96 * 288


def test_swapping_the_class_keeps_parameters_and_the_rng():
    torch.manual_seed(0)
    Mlp(32, 64)
    after_ours = torch.rand(1)
    torch.manual_seed(0)
    TimmMlp(32, 64, act_layer=nn.GELU)
    assert torch.equal(after_ours, torch.rand(1))  # same draws: seeds give the same models


@needs_onednn
def test_a_second_derivative_is_refused_not_silently_wrong():
    ours, _ = _pair()
    x = torch.randn(4, 96, requires_grad=True)
    (grad,) = torch.autograd.grad(ours(x).square().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        grad.sum().backward()
