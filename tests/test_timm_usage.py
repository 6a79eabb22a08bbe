"""What a timm user does with a preset: data config, optimiser factory, checkpointing, resizing,
and loading weights (timm's Swin checkpoints, a finished run's files)."""

from __future__ import annotations

import pytest
import timm
import torch
from safetensors import safe_open
from timm.data import resolve_data_config
from timm.models._input import get_model_input_config
from timm.optim import create_optimizer_v2

from harness.run import execute
from tests.test_train import tiny


def test_data_config_follows_each_preset():
    nano = resolve_data_config({}, model=timm.create_model("vit_lsla_nano"))
    full = resolve_data_config({}, model=timm.create_model("vit_lsla_t"))
    assert nano["input_size"] == (3, 32, 32) and nano["crop_pct"] == 1.0
    assert full["input_size"] == (3, 224, 224) and full["crop_pct"] == 0.875
    assert full["interpolation"] == "bicubic"


def test_optimizer_factory_skips_tables_and_applies_layer_decay():
    model = timm.create_model("vit_lsla_micro")
    tables = model.no_weight_decay()
    assert tables and all(n.endswith("relative_position_bias_table") for n in tables)
    opt = create_optimizer_v2(model, "adamw", lr=1e-3, weight_decay=0.05, layer_decay=0.7)
    scales = {g["lr_scale"] for g in opt.param_groups}
    assert len(scales) >= 5  # stem, four stages, head: each its own depth
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    params = dict(model.named_parameters())
    assert not any(id(params[n]) in decayed for n in tables)


def test_grad_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    model = timm.create_model("vit_lsla_micro", num_classes=5).eval()
    x = torch.randn(2, 3, 32, 32)

    def grads():
        model.zero_grad()
        model(x).square().sum().backward()
        return [p.grad.clone() for p in model.parameters()]

    plain = grads()
    model.set_grad_checkpointing(True)
    assert all(stage.grad_checkpointing for stage in model.layers)
    for a, b in zip(plain, grads(), strict=True):
        torch.testing.assert_close(a, b)


def test_set_input_size_records_size_and_resizes_windows():
    model = timm.create_model("vit_lsla_micro").eval()
    model.set_input_size(img_size=48, window_size=3)
    assert get_model_input_config(model)["input_size"] == (3, 48, 48)  # as timm's Swin does
    attn = model.layers[0].blocks[0].attn
    assert attn.window_size == 3 and attn.inner_bias.relative_position_bias_table.shape[0] == 25
    with torch.no_grad():
        assert model(torch.randn(1, 3, 48, 48)).shape == (1, 1000)
    with pytest.raises(ValueError, match="patch_size=8 is not supported"):
        model.set_input_size(patch_size=8)


def test_pretrained_without_a_file_is_refused_with_the_way_out():
    with pytest.raises(ValueError, match="pretrained_cfg_overlay=dict\\(file="):
        timm.create_model("vit_lsla_t", pretrained=True)


def test_timm_swin_weights_load_through_pretrained_cfg_overlay(tmp_path):
    torch.manual_seed(0)
    swin = timm.create_model("swin_tiny_patch4_window7_224").eval()
    path = tmp_path / "swin_tiny.pth"
    torch.save(swin.state_dict(), path)
    ours = timm.create_model(
        "swin_t_ref", pretrained=True, pretrained_cfg_overlay=dict(file=str(path))
    ).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), swin(x), rtol=1e-4, atol=1e-5)


def test_finished_run_weights_load_into_timm(tmp_path):
    cfg = tiny(tmp_path, "train.ema=true", "train.epochs=1", "measure.throughput=false")[0]
    record = execute(cfg)
    assert record["weights"] == {"file": "model.safetensors", "weights": "ema"}
    weights = cfg.run_dir.path / "model.safetensors"
    with safe_open(str(weights), "pt") as f:
        assert f.metadata()["weights"] == "ema" and f.metadata()["arch"] == "vit_lsla_micro"
    payload = torch.load(cfg.run_dir.checkpoint, weights_only=True)  # no pickled objects
    ema = payload["state_dict_ema"]
    kw = dict(num_classes=10)
    from_file = timm.create_model("vit_lsla_micro", checkpoint_path=str(weights), **kw)
    from_ckpt = timm.create_model(
        "vit_lsla_micro",
        pretrained=True,
        # the run's head has 10 classes; without num_classes here timm re-initialises the
        # head, as it does whenever pretrained weights meet a new number of classes
        pretrained_cfg_overlay=dict(file=str(cfg.run_dir.checkpoint), num_classes=10),
        **kw,
    )
    for model in (from_file, from_ckpt):
        for key, value in model.state_dict().items():
            assert torch.equal(value, ema[key]), key
    assert not all(torch.equal(ema[k], payload["state_dict"][k]) for k in ema)  # EMA differs
