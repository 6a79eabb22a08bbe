"""timm's model tests (tests/test_models.py upstream), run over every preset.

timm's own ``swin_tiny_patch4_window7_224`` goes through the same tests as the reference: a preset
must pass wherever it does. Sizes follow timm's (forward at the default size up to 384, backward
at up to 128, features at up to 96).
"""

from __future__ import annotations

import warnings

import pytest
import timm
import torch
from timm.layers import create_feature_extractor, get_graph_node_names

from harness.models import PRESETS

REFERENCE = "swin_tiny_patch4_window7_224"
MODELS = [*PRESETS, REFERENCE]
TARGET_BWD_SIZE = 128
TARGET_FFEAT_SIZE = 96
TARGET_JIT_SIZE = 128


def _input_size(model, target: int | None = None) -> tuple[int, int, int]:
    """timm's rule: a fixed-size model gets its size; others are shrunk to ``target``."""
    cfg = model.pretrained_cfg
    size = cfg["input_size"]
    if cfg.get("fixed_input_size") or target is None:
        return size
    return tuple(min(s, target) for s in size)


def _create(name: str, **kwargs):
    return timm.create_model(name, pretrained=False, **kwargs)


@pytest.mark.parametrize("name", MODELS)
def test_model_forward(name):
    model = _create(name).eval()
    x = torch.randn(1, *_input_size(model))
    with torch.no_grad():
        out = model(x)
    assert out.shape == (1, model.num_classes)
    assert not torch.isnan(out).any()


@pytest.mark.parametrize("name", MODELS)
def test_model_backward(name):
    model = _create(name, num_classes=42).train()
    x = torch.randn(2, *_input_size(model, TARGET_BWD_SIZE))
    out = model(x)
    out.mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"no gradient for {missing[:3]}"
    assert out.shape == (2, 42) and not torch.isnan(out).any()


@pytest.mark.parametrize("name", MODELS)
def test_model_default_cfgs(name):
    model = _create(name).eval()
    cfg, state = model.pretrained_cfg, model.state_dict()
    for key in ("input_size", "mean", "std", "crop_pct", "interpolation", "license", "num_classes"):
        assert cfg.get(key) is not None, key
    assert model.default_cfg is model.pretrained_cfg
    x = torch.randn(1, *cfg["input_size"])
    pool = tuple(cfg["pool_size"])
    with torch.no_grad():
        feats = model.forward_features(x)  # NHWC, as timm's Swin
        assert tuple(feats.shape[1:3]) == pool and feats.shape[-1] == model.num_features
        model.reset_classifier(0)
        assert model(x).shape == (1, model.num_features) == (1, model.head_hidden_size)
        model.reset_classifier(0, "")
        assert tuple(model(x).shape[1:3]) == pool
    assert cfg["classifier"] + ".weight" in state
    assert cfg["first_conv"] + ".weight" in state


@pytest.mark.parametrize("name", MODELS)
def test_model_forward_torchscript(name):
    model = _create(name).eval()
    x = torch.randn(1, *_input_size(model, TARGET_JIT_SIZE))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script is deprecated
        scripted = torch.jit.script(model)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), model(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_model_forward_features(name):
    model = _create(name, features_only=True).eval()
    channels, reductions = model.feature_info.channels(), model.feature_info.reduction()
    stages = len(PRESETS[name]["depths"]) if name in PRESETS else 4
    assert len(channels) == stages and reductions == [4, 8, 16, 32][:stages]
    size = _input_size(model, TARGET_FFEAT_SIZE)
    with torch.no_grad():
        outs = model(torch.randn(1, *size))
    assert len(outs) == len(channels)
    for c, r, o in zip(channels, reductions, outs, strict=True):  # NHWC, as timm's Swin
        assert o.shape == (1, size[1] // r, size[2] // r, c)
        assert not torch.isnan(o).any()


@pytest.mark.parametrize("name", MODELS)
def test_model_forward_intermediates(name):
    model = _create(name).eval()
    info = timm.models.FeatureInfo(model.feature_info, range(len(model.feature_info)))
    size = _input_size(model, TARGET_FFEAT_SIZE)
    x = torch.randn(1, *size)
    with torch.no_grad():
        final, inter = model.forward_intermediates(x)
        torch.testing.assert_close(final, model.forward_features(x))
        for c, r, o in zip(info.channels(), info.reduction(), inter, strict=True):
            assert o.shape == (1, c, size[1] // r, size[2] // r)  # NCHW by default
        last = min(2, len(inter))
        only = model.forward_intermediates(x, indices=last, intermediates_only=True)
        assert [o.shape for o in only] == [o.shape for o in inter[-last:]]
        tap = min(1, len(inter) - 1)
        kept = model.prune_intermediate_layers(indices=[tap], prune_head=True)
        pruned = model.forward_intermediates(x, indices=kept, intermediates_only=True)
    assert kept == [tap] and len(model.layers) == tap + 1
    torch.testing.assert_close(pruned[0], inter[tap])


@pytest.mark.parametrize("name", MODELS)
def test_model_forward_fx(name):
    """timm's FX feature extractor (its leaf modules and wrapped functions) traces the model."""
    model = _create(name).eval()
    x = torch.randn(1, *_input_size(model, TARGET_FFEAT_SIZE if name in PRESETS else None))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torchvision's train/eval node note
        last = get_graph_node_names(model)[1][-1]
        fx_model = create_feature_extractor(model, [last])
    with torch.no_grad():
        assert torch.equal(next(iter(fx_model(x).values())), model(x))


@pytest.mark.filterwarnings("ignore:NOTE. The nodes obtained:UserWarning")
@pytest.mark.parametrize("name", MODELS)
def test_model_features_fx(name):
    model = _create(name, features_only=True, feature_cls="fx").eval()
    size = _input_size(model, TARGET_FFEAT_SIZE if name in PRESETS else None)
    with torch.no_grad():
        outs = model(torch.randn(1, *size))
    assert [o.shape[-1] for o in outs] == model.feature_info.channels()


@pytest.mark.parametrize("name", MODELS)
def test_model_export_without_warnings(name):
    """``torch.export`` sees no stray tensor attributes, before or after an eager forward."""
    model = _create(name).eval()
    x = torch.randn(1, *_input_size(model, 64 if name in PRESETS else None))
    # the second export runs with the eager geometry and table caches filled: once per kernel
    # family (explicit LSLA core, SDPA), whose caches every preset of the family shares
    for _ in range(2 if name in ("vit_lsla_t", "swin_t_ref") else 1):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            program = torch.export.export(model, (x,))
        with torch.no_grad():
            torch.testing.assert_close(program.module()(x), model(x))
