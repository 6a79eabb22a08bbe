"""Hierarchical Swin-style backbone whose attention comes from the ``variants`` registry.

Module names mirror timm's ``SwinTransformer`` (``patch_embed``, ``layers.i.downsample``,
``layers.i.blocks.j.{norm1,attn,norm2,mlp}``, ``norm``, ``head.fc``) so that Swin checkpoints load
with a thin key map (``harness.timm_compat``). Activations stay NHWC throughout, as in timm.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import torch
from timm.layers import (
    ClassifierHead,
    DropPath,
    PatchEmbed,
    register_notrace_module,
    trunc_normal_,
)
from timm.models import checkpoint_seq
from torch import Tensor, nn

import variants
from harness.mlp import Mlp
from harness.stem import ConvStem
from harness.timm_api import TimmModelApi
from variants._config import ConfigError, Range, validate
from variants._linear import Linear

Positive = Annotated[int, Range(1)]


@dataclass(frozen=True)
class BackboneConfig:
    """Everything that defines a backbone layout; presets live in ``harness.models``."""

    stem: Literal["patch4", "conv"] = "conv"
    depths: tuple[int, ...] = (2, 2, 6, 2)
    dims: tuple[int, ...] = (96, 192, 384, 768)
    heads: tuple[int, ...] = (3, 6, 12, 24)
    window_size: Positive = 7
    mlp_ratio: Annotated[float, Range(0.0)] = 4.0
    attn: str = "lsla"
    attn_switches: Mapping[str, Any] = field(default_factory=dict)
    num_classes: Annotated[int, Range(0)] = 1000
    in_chans: Positive = 3
    img_size: Positive = 224
    drop_rate: Annotated[float, Range(0.0, 0.99)] = 0.0
    drop_path_rate: Annotated[float, Range(0.0, 0.99)] = 0.1
    global_pool: Literal["avg", "max", "avgmax", "catavgmax", ""] = "avg"

    def __post_init__(self) -> None:
        validate(self, "model option ")
        if not (len(self.depths) == len(self.dims) == len(self.heads)) or not self.depths:
            raise ConfigError(
                f"depths {self.depths}, dims {self.dims} and heads {self.heads} "
                "must be non-empty and of equal length (one entry per stage)"
            )


class PatchMerging(nn.Module):
    """Swin patch merging: 2x2 neighbours concatenated (timm's channel order), LN, linear 4C->2C."""

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = Linear(4 * dim, out_dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        B, H, W, C = x.shape
        x = nn.functional.pad(x, (0, 0, 0, W % 2, 0, H % 2))
        H, W = x.shape[1], x.shape[2]
        x = x.reshape(B, H // 2, 2, W // 2, 2, C).permute(0, 1, 3, 4, 2, 5).flatten(3)
        return self.reduction(self.norm(x))


class Block(nn.Module):
    """Pre-norm transformer block: x + DropPath(Attn(LN(x))), x + DropPath(MLP(LN(x)))."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int,
        shift_size: int,
        cfg: BackboneConfig,
        drop_path: float,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = variants.create(
            cfg.attn, dim, num_heads, window_size, shift_size, **dict(cfg.attn_switches)
        )
        # an attention layer shapes its windows from the input size, which FX cannot trace:
        # timm's FX feature extraction keeps it whole, as a leaf (as timm does for such layers)
        register_notrace_module(type(self.attn))
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio))
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        if not torch.jit.is_scripting() and self.training:
            x = residual_add(x, self.attn(self.norm1(x)), self.drop_path1)
            return residual_add(x, self.mlp(self.norm2(x)), self.drop_path2)
        x = x + self.drop_path1(self.attn(self.norm1(x)))
        return x + self.drop_path2(self.mlp(self.norm2(x)))


def residual_add(x: Tensor, branch: Tensor, drop_path: nn.Module) -> Tensor:
    """``x + drop_path(branch)``; with timm's ``DropPath`` active, its per-image factor and the
    add as one ``addcmul``: timm's draws, its result within one rounding (timm rounds the
    product to the branch's dtype, bf16 under autocast, before the add), one pass over the map
    instead of two. The 24 residual adds of a training step at batch 4, forward and backward:
    1.30x (IQR 1.24-1.42, 21 interleaved rounds, 1 thread), about 6 ms of a 770 ms step."""
    if not (isinstance(drop_path, DropPath) and drop_path.training and drop_path.drop_prob > 0):
        return x + drop_path(branch)
    keep = 1.0 - drop_path.drop_prob
    factor = branch.new_empty((branch.shape[0],) + (1,) * (branch.ndim - 1)).bernoulli_(keep)
    if keep > 0.0 and drop_path.scale_by_keep:
        factor.div_(keep)
    return torch.addcmul(x, branch, factor)


class Stage(nn.Module):
    def __init__(
        self,
        in_dim: int,
        dim: int,
        depth: int,
        num_heads: int,
        cfg: BackboneConfig,
        dpr: Sequence[float],
        downsample: bool,
    ) -> None:
        super().__init__()
        self.downsample = PatchMerging(in_dim, dim) if downsample else nn.Identity()
        shift = cfg.window_size // 2
        self.blocks = nn.Sequential(
            *[
                Block(
                    dim,
                    num_heads,
                    cfg.window_size,
                    shift_size=0 if i % 2 == 0 else shift,
                    cfg=cfg,
                    drop_path=dpr[i],
                )
                for i in range(depth)
            ]
        )
        self.grad_checkpointing = False

    def forward(self, x: Tensor) -> Tensor:
        x = self.downsample(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.blocks, x)
        return self.blocks(x)


class Backbone(TimmModelApi, nn.Module):
    """Stem, hierarchical stages, final LayerNorm, pooling and linear head (timm's model API)."""

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_classes = cfg.num_classes
        self.in_chans = cfg.in_chans
        self.global_pool = cfg.global_pool
        self.output_fmt = "NHWC"
        self.num_features = cfg.dims[-1]
        self.feature_info = [
            dict(num_chs=dim, reduction=4 * 2**i, module=f"layers.{i}")
            for i, dim in enumerate(cfg.dims)
        ]
        if cfg.stem == "patch4":
            self.patch_embed = PatchEmbed(
                cfg.img_size,
                4,
                cfg.in_chans,
                cfg.dims[0],
                norm_layer=nn.LayerNorm,
                strict_img_size=False,
                output_fmt="NHWC",
            )
        else:
            self.patch_embed = ConvStem(cfg.in_chans, cfg.dims[0])
        dpr = torch.linspace(0, cfg.drop_path_rate, sum(cfg.depths)).tolist()
        stages, start = [], 0
        for i, (depth, dim, heads) in enumerate(zip(cfg.depths, cfg.dims, cfg.heads, strict=True)):
            in_dim = cfg.dims[i - 1] if i else dim
            stage = Stage(
                in_dim, dim, depth, heads, cfg=cfg, dpr=dpr[start : start + depth], downsample=i > 0
            )
            stages.append(stage)
            start += depth
        self.layers = nn.Sequential(*stages)
        self.norm = nn.LayerNorm(self.num_features)
        self.head = ClassifierHead(
            self.num_features,
            cfg.num_classes,
            pool_type=cfg.global_pool,
            drop_rate=cfg.drop_rate,
            input_fmt=self.output_fmt,
        )
        self.head_hidden_size = self.head.num_features
        self.apply(_init_weights)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.norm(self.layers(self.patch_embed(x)))

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        return self.head(x, pre_logits=True) if pre_logits else self.head(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    @torch.jit.ignore
    def attention_modules(self) -> list[tuple[str, nn.Module]]:
        """``(name, module)`` of every attention layer, in depth order."""
        return [(n, m) for n, m in self.named_modules() if n.endswith(".attn")]

    @torch.jit.ignore
    def attention_kernels(self) -> list[str]:
        """The kernels the attention layers have run so far ("fused_cpu", "sdpa", "flex",
        "explicit"); empty for a variant that does not say."""
        used = [getattr(m, "kernels_used", set()) for _, m in self.attention_modules()]
        return sorted(set().union(*used))


def _init_weights(module: nn.Module) -> None:
    """timm's Swin init: trunc-normal(0.02) linear weights, zero biases."""
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
