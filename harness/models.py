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
"""

from __future__ import annotations

from typing import Any

from timm.models import register_model

from harness.backbone import Backbone, BackboneConfig
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

PRESETS: dict[str, dict[str, Any]] = {
    "swin_t_ref": dict(SWIN_T, stem="patch4", attn="swin", drop_path_rate=0.2),
    "vit_lsla_t": dict(SWIN_T, attn="lsla", drop_path_rate=0.2),
    "vit_lsla_t_r3": dict(SWIN_T, attn="lsla", mlp_ratio=3.0, drop_path_rate=0.2),
    "vit_lsla_t_swin": dict(SWIN_T, attn="swin", drop_path_rate=0.2),
    "vit_lsla_t_qkv": dict(SWIN_T, attn="lsla_qkv", drop_path_rate=0.2),
    "vit_lsla_t_qxv": dict(SWIN_T, attn="lsla_qxv", drop_path_rate=0.2),
    "vit_lsla_nano": dict(NANO, attn="lsla"),
    "vit_lsla_micro": dict(MICRO, attn="lsla"),
}

_TIMM_ONLY_KWARGS = ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir")


def preset_config(name: str, **overrides: Any) -> BackboneConfig:
    """``BackboneConfig`` of preset ``name`` with field overrides; bad names/fields are named."""
    if name not in PRESETS:
        raise KeyError(
            f"unknown model preset {name!r}{suggest(name, PRESETS)}; presets: {', '.join(PRESETS)}"
        )
    checked = check_fields(BackboneConfig, overrides, f"preset {name!r}: ", what="model option")
    return BackboneConfig(**check_fields(BackboneConfig, {**PRESETS[name], **checked}))


def create(name: str, pretrained: bool = False, **overrides: Any) -> Backbone:
    """Build preset ``name``. No weights ship (no network); ``pretrained=True`` is an error."""
    if pretrained:
        raise ValueError(
            f"no pretrained weights exist for {name!r}; load timm Swin weights with "
            "harness.timm_compat.load_timm_swin, or a run's checkpoint.pt with load_state_dict"
        )
    for key in _TIMM_ONLY_KWARGS:
        overrides.pop(key, None)
    return Backbone(preset_config(name, **overrides))


def _make_entrypoint(preset: str):
    def entrypoint(pretrained: bool = False, **kwargs: Any) -> Backbone:
        return create(preset, pretrained=pretrained, **kwargs)

    entrypoint.__name__ = preset
    entrypoint.__qualname__ = preset
    entrypoint.__doc__ = f"ViT-LSLA harness preset {preset!r} (see harness.models)."
    entrypoint.__module__ = __name__
    return entrypoint


for _name in PRESETS:
    globals()[_name] = register_model(_make_entrypoint(_name))
