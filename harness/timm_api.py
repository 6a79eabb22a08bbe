"""The model contract every timm model keeps, as timm's own ``SwinTransformer`` implements it.

A mixin for ``harness.backbone.Backbone``: feature taps (``feature_info``,
``forward_intermediates``, ``prune_intermediate_layers``), optimiser hooks (``no_weight_decay``,
``group_matcher``), gradient checkpointing, classifier reset and ``set_input_size``. It reads the
backbone's ``patch_embed``, ``layers`` (stages with ``blocks`` and a ``grad_checkpointing`` flag),
``norm`` and ``head``.

Unlike timm's Swin, whose shift masks are sized for one input, every layer here derives its window
geometry from the input it is given, so any input size runs without ``set_input_size``; the call
records the new nominal size (timm's data config reads it) and may resize the window.
"""

from __future__ import annotations

from typing import Any

import torch
from timm.layers import resize_rel_pos_bias_table
from timm.models._features import feature_take_indices
from timm.models._input import update_model_input_size
from torch import Tensor, nn

OUTPUT_FMTS = ("NCHW", "NHWC")


class TimmModelApi:
    """timm's model interface over a stem, ``layers`` of stages, a final ``norm`` and a ``head``.

    (No class-level annotations of those attributes: TorchScript would read them as types.)
    """

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """Relative-position tables (B_i, S, B_o) are not decayed, as Swin's table is not."""
        return {n for n, _ in self.named_parameters() if "relative_position_bias_table" in n}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """Parameter groups by depth, for timm's layer-wise lr decay (same rule as Swin)."""
        return dict(
            stem=r"^patch_embed",
            blocks=r"^layers\.(\d+)"
            if coarse
            else [
                (r"^layers\.(\d+).downsample", (0,)),
                (r"^layers\.(\d+)\.\w+\.(\d+)", None),
                (r"^norm", (99999,)),
            ],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block in backward instead of keeping its activations."""
        for stage in self.layers:
            stage.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """New head of ``num_classes`` (0: none); ``global_pool=''`` keeps the feature map."""
        self.num_classes = num_classes
        self.head.reset(num_classes, pool_type=global_pool)
        self.head_hidden_size = self.head.num_features
        if global_pool is not None:
            self.global_pool = global_pool

    def forward_intermediates(
        self,
        x: Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[Tensor] | tuple[Tensor, list[Tensor]]:
        """Stage outputs (``indices``: last n if an int, all if None) and the final features."""
        if output_fmt not in OUTPUT_FMTS:
            raise ValueError(f"output_fmt {output_fmt!r} is not one of {', '.join(OUTPUT_FMTS)}")
        take_indices, max_index = feature_take_indices(len(self.layers), indices)
        stages = self.layers if not stop_early else self.layers[: max_index + 1]
        last = len(self.layers) - 1
        intermediates, i = [], 0
        x = self.patch_embed(x)
        for i, stage in enumerate(stages):
            x = stage(x)
            if i in take_indices:
                tap = self.norm(x) if norm and i == last else x
                intermediates.append(tap.permute(0, 3, 1, 2) if output_fmt == "NCHW" else tap)
        if intermediates_only:
            return intermediates
        if i == last:
            x = self.norm(x)  # the final norm is sized for the last stage only
        return x, intermediates

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop the stages (and norm/head) that the taps ``indices`` do not need."""
        take_indices, max_index = feature_take_indices(len(self.layers), indices)
        prune_end = max_index < len(self.layers) - 1
        if prune_norm or prune_end:
            self.norm = nn.Identity()
        self.layers = self.layers[: max_index + 1]
        if prune_end:
            self.num_features = self.head_hidden_size = self.feature_info[max_index]["num_chs"]
        if prune_head or prune_end:
            self.reset_classifier(0, "")
        return take_indices

    @torch.jit.ignore
    def set_input_size(
        self,
        img_size: int | tuple[int, int] | None = None,
        patch_size: int | tuple[int, int] | None = None,
        window_size: int | None = None,
        window_ratio: int | None = None,
        always_partition: bool | None = None,
    ) -> None:
        """Record a new nominal input size; ``window_size`` resizes every relative-position
        table (timm's resampling). Patch size, window ratio and always-partition are fixed."""
        fixed = dict(
            patch_size=patch_size, window_ratio=window_ratio, always_partition=always_partition
        )
        named = [f"{k}={v!r}" for k, v in fixed.items() if v is not None]
        if named:
            raise ValueError(
                f"set_input_size: {', '.join(named)} is not supported by this model; "
                "valid: img_size and window_size"
            )
        if window_size is not None:
            for _, attn in self.attention_modules():
                _resize_tables(attn, window_size)
        if img_size is not None:
            size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
            if hasattr(self.patch_embed, "set_input_size"):
                self.patch_embed.set_input_size(img_size=size)
            update_model_input_size(self, size, window_size=window_size)


def _resize_tables(attn: nn.Module, window_size: int) -> None:
    """Resample each ``(2M-1)^2 x h`` table of ``attn`` to the new window, as timm does for Swin."""
    if not hasattr(attn, "window_size"):
        raise ValueError(f"set_input_size: {type(attn).__name__} has no window to resize")
    side = 2 * window_size - 1
    for table_owner in attn.modules():
        table = getattr(table_owner, "relative_position_bias_table", None)
        if isinstance(table, nn.Parameter) and table.shape[0] != side * side:
            resized = resize_rel_pos_bias_table(
                table.data,
                new_window_size=(window_size,) * 2,
                new_bias_shape=(side * side, table.shape[1]),
            )
            table_owner.relative_position_bias_table = nn.Parameter(resized)
            table_owner.window = window_size
    attn.window_size = window_size
    attn.shift_size = window_size // 2 if attn.shift_size else 0
    if hasattr(attn, "_cache"):
        attn._cache.clear()
