"""Named model presets, registered in timm's model registry.

``import harness.models`` once, then ``timm.create_model("vit_lsla_t", num_classes=102)`` works, and
so does ``harness.models.create("vit_lsla_t", attn="swin")``: any preset accepts another attention
variant (``attn``), switch overrides (``attn_switches``) and any ``BackboneConfig`` field.

| preset            | stem    | attention | mlp | params (102 cls) | note                         |
|-------------------|---------|-----------|-----|------------------|------------------------------|
| swin_t_ref        | patch 4 | swin      | 4   | 27.60M           | == timm swin_tiny_patch4_w7  |
| vit_lsla_t        | conv    | lsla      | 4   | 23.36M           | Swin-T layout, conv stem     |
| vit_lsla_t_r3     | conv    | lsla      | 3   | 19.04M           | nearest the paper's 18.9M    |
| vit_lsla_t_swin   | conv    | swin      | 4   | 27.64M           | same-layout QKV control      |
| vit_lsla_t_qkv    | conv    | lsla_qkv  | 4   | 27.68M           | LSLA switches, form qkv      |
| vit_lsla_t_qxv    | conv    | lsla_qxv  | 4   | 25.52M           | LSLA switches, form qxv      |
| vit_lsla_nano     | conv    | lsla      | 2   | small            | CPU ablations at 28-64 px    |
| vit_lsla_micro    | conv    | lsla      | 4   | small            | fast CPU tests               |
| vit_lsla_probe    | patch 4 | swin      | 2   | tiny, 1 stage    | positive controls (``marks``)|
"""

from __future__ import annotations

import functools
from typing import Any

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import Tensor, nn

from harness.backbone import Backbone, BackboneConfig
from harness.timm_compat import convert_timm_swin_state_dict
from variants._config import check_fields, suggest

SWIN_T = dict(depths=(2, 2, 6, 2), dims=(96, 192, 384, 768), heads=(3, 6, 12, 24), window_size=7)
NANO = dict(  # two blocks in stage 1 so that 32 px inputs still get a shifted-window block
    depths=(2, 2, 2, 1),
    dims=(32, 64, 128, 256),
    heads=(1, 2, 4, 8),
    window_size=4,
    mlp_ratio=2.0,
    drop_path_rate=0.05,
    img_size=32,
)
MICRO = dict(
    depths=(1, 1, 1, 1),
    dims=(16, 32, 64, 128),
    heads=(1, 2, 4, 8),
    window_size=4,
    drop_path_rate=0.0,
    img_size=32,
)

PROBE = dict(  # one stage of 4x4-token windows: four windows per 32 px image in every block
    stem="patch4",
    depths=(2,),
    dims=(32,),
    heads=(2,),
    window_size=4,
    mlp_ratio=2.0,
    drop_path_rate=0.0,
    img_size=32,
)

PRESETS: dict[str, dict[str, Any]] = {
    "swin_t_ref": dict(SWIN_T, stem="patch4", attn="swin", drop_path_rate=0.2),
    "vit_lsla_t": dict(SWIN_T, attn="lsla", drop_path_rate=0.2),
    "vit_lsla_t_r3": dict(SWIN_T, attn="lsla", mlp_ratio=3.0, drop_path_rate=0.2),
    "vit_lsla_t_swin": dict(SWIN_T, attn="swin", drop_path_rate=0.2),
    "vit_lsla_t_qkv": dict(SWIN_T, attn="lsla_qkv", drop_path_rate=0.2),
    "vit_lsla_t_qxv": dict(SWIN_T, attn="lsla_qxv", drop_path_rate=0.2),
    "vit_lsla_nano": dict(NANO, attn="lsla"),
    "vit_lsla_micro": dict(MICRO, attn="lsla"),
    "vit_lsla_probe": dict(PROBE, attn="swin"),
}

PAPER = "ViT-LSLA: Vision Transformer with Light Self-Limited-Attention"


def _pretrained_cfg(preset: str) -> dict[str, Any]:
    """timm's data and head metadata for ``preset`` (``resolve_data_config`` reads it)."""
    layout = PRESETS[preset]
    size = layout.get("img_size", 224)
    return dict(
        url="",
        num_classes=1000,
        input_size=(3, size, size),
        pool_size=(max(size // (4 * 2 ** (len(layout["depths"]) - 1)), 1),) * 2,
        crop_pct=0.875 if size >= 224 else 1.0,  # harness.transforms' eval crop
        interpolation="bicubic",
        fixed_input_size=False,  # window geometry follows the input; any size runs
        mean=IMAGENET_DEFAULT_MEAN,
        std=IMAGENET_DEFAULT_STD,
        first_conv="patch_embed.proj" if layout.get("stem") == "patch4" else "patch_embed.conv1",
        classifier="head.fc",
        license="mit",
        paper_ids="arXiv:2210.17115",
        paper_name=PAPER,
        notes=(
            "No released weights: train with the harness, then load a run's model.safetensors.",
        ),
    )


default_cfgs = generate_default_cfgs({name: _pretrained_cfg(name) for name in PRESETS})


def preset_config(name: str, **overrides: Any) -> BackboneConfig:
    """``BackboneConfig`` of preset ``name`` with field overrides; bad names/fields are named."""
    if name not in PRESETS:
        raise KeyError(
            f"unknown model preset {name!r}{suggest(name, PRESETS)}; presets: {', '.join(PRESETS)}"
        )
    checked = check_fields(BackboneConfig, overrides, f"preset {name!r}: ", what="model option")
    return BackboneConfig(**check_fields(BackboneConfig, {**PRESETS[name], **checked}))


def _has_weights_file(kwargs: dict[str, Any]) -> bool:
    overlay = kwargs.get("pretrained_cfg_overlay") or {}
    cfg = kwargs.get("pretrained_cfg") or {}
    cfg = cfg if isinstance(cfg, dict) else {}
    return any(source.get(k) for source in (overlay, cfg) for k in ("file", "state_dict"))


def _filter_weights(state_dict: dict[str, Tensor], model: Backbone) -> dict[str, Tensor]:
    """Weights in timm Swin's key names (a timm checkpoint for swin_t_ref) are renamed."""
    if any(k.endswith("attn.relative_position_bias_table") for k in state_dict):
        return convert_timm_swin_state_dict(state_dict)
    return state_dict


def create(name: str, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """Build preset ``name`` as ``timm.create_model`` does (``features_only``, ``pretrained_cfg``).

    No weights ship and nothing is downloaded: ``pretrained=True`` needs a local file, given as
    ``pretrained_cfg_overlay=dict(file=path)`` (a run's ``model.safetensors`` or ``checkpoint.pt``).
    """
    if pretrained and not _has_weights_file(kwargs):
        raise ValueError(
            f"no pretrained weights exist for {name!r} (none are published); pass "
            "pretrained_cfg_overlay=dict(file='runs/EXP/ARM/model.safetensors'), or "
            "checkpoint_path=... to timm.create_model"
        )
    preset_config(name)  # an unknown preset is named before timm sees it
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    features = kwargs.get("features_only", False)
    stages = len(PRESETS[name]["depths"])
    return build_model_with_cfg(
        functools.partial(_backbone, name),
        name,
        pretrained,
        pretrained_filter_fn=_filter_weights,
        feature_cfg=dict(flatten_sequential=True, out_indices=tuple(range(stages))),
        **({"num_classes": 0} if features and "num_classes" not in kwargs else {}),
        **kwargs,
    )


def _backbone(preset: str, **overrides: Any) -> Backbone:
    return Backbone(preset_config(preset, **overrides))


def _make_entrypoint(preset: str):
    def entrypoint(pretrained: bool = False, **kwargs: Any) -> nn.Module:
        return create(preset, pretrained=pretrained, **kwargs)

    entrypoint.__name__ = preset
    entrypoint.__qualname__ = preset
    entrypoint.__doc__ = f"ViT-LSLA harness preset {preset!r} (see harness.models)."
    entrypoint.__module__ = __name__
    return entrypoint


for _name in PRESETS:
    globals()[_name] = register_model(_make_entrypoint(_name))
