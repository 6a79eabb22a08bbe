"""LSLA family: Swin window attention with the switches of ViT-LSLA (arXiv 2210.17115).

    LSLA(X) = [ softmax( (Q X^T) * S + B_i ) + B_o ] X W_O,     Q = X W_Q

The paper's code and equations are not public; the reconstruction (``docs/method.md``) and every
choice made where it is silent are listed here, each one a switch:

* ``form``: ``qkv`` is standard MSA. ``qxv`` replaces K by X (``W_Q`` absorbs ``W_Q W_K^T``; exact
  for one head). ``qxx`` replaces K and V by X and drops ``W_V``: Q is projected C->C and split
  into h heads, head j uses channel slice j of X as key and value, ``W_O`` is kept. With h > 1 this
  is a constrained model, not a re-parameterisation (tests measure the gap).
* ``scale``: ``fixed`` = ``1/sqrt(d)``; ``dynamic`` = a learnable ``(2M-1)^2 x h`` table S indexed
  by relative position, initialised so it starts equal to ``fixed``. ``scale_op``: ``mul``
  multiplies the logits by S (init ``1/sqrt(d)``); ``div`` divides them by S (init ``sqrt(d)``).
* ``inner_bias``: Swin's relative-position bias B_i inside the softmax (trunc-normal 0.02).
* ``outer_bias``: a same-shaped table B_o applied after the softmax; rows then no longer sum to
  one and the paper does not renormalise. ``outer_op``: ``add`` gives ``P + B_o``; ``mul`` gives
  ``P * (1 + B_o)`` so that both ``outer_init`` choices (``trunc_normal`` 0.02, ``zeros``) start
  near plain attention. ``mask_outer_bias``: whether the shifted-window mask also zeroes B_o
  between tokens of different image regions (the paper is silent; True keeps SW-MSA's meaning).
* ``window``: ``global`` attends over all H*W tokens (relative offsets clipped to +-(M-1) so the
  tables keep their size); ``window`` partitions into MxM windows and never shifts; ``shifted``
  partitions and applies the cyclic shift ``shift_size`` given by the backbone (alternating 0, M/2).
  Windows are clamped to the feature map and padded exactly as timm's Swin does. Like timm, the
  padding comes after the shift and is not masked: in a map that is not a multiple of M, a border
  token can see the zero padding and, through the roll, tokens wrapped in from the opposite border.
  It is kept for timm parity (timm's weights give timm's logits).

Shapes: input and output ``[B, H, W, C]``; inside, windows are ``[B*nW, N=M*M, C]``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Annotated, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from variants._config import Range, validate
from variants._contract import AttentionRecord, AttentionRecorder, Capabilities
from variants._lsla_reference import reference_forward
from variants._registry import register
from variants._window import (
    RelPosTable,
    relative_position_index,
    shift_region_mask,
    window_partition,
    window_reverse,
)


@dataclass(frozen=True)
class LSLAConfig:
    form: Literal["qkv", "qxv", "qxx"] = "qkv"
    scale: Literal["fixed", "dynamic"] = "fixed"
    scale_op: Literal["mul", "div"] = "mul"
    inner_bias: bool = True
    outer_bias: bool = False
    outer_op: Literal["add", "mul"] = "add"
    outer_init: Literal["trunc_normal", "zeros"] = "trunc_normal"
    mask_outer_bias: bool = True
    window: Literal["global", "window", "shifted"] = "shifted"
    qkv_bias: bool = True
    fused: bool = True  # use SDPA when the maths allows it (no outer bias, fixed scale)
    attn_drop: Annotated[float, Range(0.0, 0.99)] = 0.0
    proj_drop: Annotated[float, Range(0.0, 0.99)] = 0.0

    def __post_init__(self) -> None:
        validate(self, "LSLA switch ")


class _Geometry(NamedTuple):
    """Where the tokens of one forward sit: what the attention maths needs besides Q, K, V."""

    grid: tuple[int, int]  # token layout of each map (a window, or the whole map)
    index: Tensor  # [N, N] relative-position index into the tables
    mask: Tensor | None  # [nW, N, N] True where query and key share an image region
    valid: Tensor | None  # [B_, N] real (not padding) queries; only built while recording


def _shifts(cfg: LSLAConfig) -> bool:
    return cfg.window == "shifted"


def _respects_mask(cfg: LSLAConfig) -> bool:
    """An added B_o crosses the mask unless masked; ``P * (1 + B_o)`` is 0 wherever P is."""
    return not (cfg.outer_bias and cfg.outer_op == "add" and not cfg.mask_outer_bias)


@register("swin", window="shifted")
@register("msa", window="global", inner_bias=False)
@register("wmsa", inner_bias=False)
@register("qxv", form="qxv", inner_bias=False)
@register("qxx", form="qxx", inner_bias=False)
@register("lsa", form="qxx")
@register("lsa_ds", form="qxx", scale="dynamic")
@register("lsla", form="qxx", scale="dynamic", outer_bias=True)
@register("lsla_qkv", form="qkv", scale="dynamic", outer_bias=True)
@register("lsla_qxv", form="qxv", scale="dynamic", outer_bias=True)
@register("lsla_outer_mul", form="qxx", scale="dynamic", outer_bias=True, outer_op="mul")
@register("lsla_outer_zeros", form="qxx", scale="dynamic", outer_bias=True, outer_init="zeros")
@register("lsla_scale_div", form="qxx", scale="dynamic", scale_op="div", outer_bias=True)
@register(
    "lsla_outer_unmasked", form="qxx", scale="dynamic", outer_bias=True, mask_outer_bias=False
)
@register("swin_qxv", form="qxv")
@register("swin_ds", scale="dynamic")
@register("swin_outer", outer_bias=True)
@register("swin_window", window="window")
@register("swin_global", window="global")
class LSLAAttention(AttentionRecorder, nn.Module):
    """Window attention with LSLA's switchable form, scale and inner/outer position biases."""

    Config = LSLAConfig
    capabilities = Capabilities(
        records_attention=True,
        shifts=_shifts,
        respects_mask=_respects_mask,
        reference=reference_forward,
        fused_switch="fused",
    )

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int,
        shift_size: int = 0,
        cfg: LSLAConfig = LSLAConfig(),
    ) -> None:
        super().__init__()
        self.dim, self.num_heads, self.cfg = dim, num_heads, cfg
        self.head_dim = dim // num_heads
        self.window_size = window_size
        self.shift_size = shift_size if cfg.window == "shifted" else 0
        n_proj = {"qkv": 3, "qxv": 2, "qxx": 1}[cfg.form]
        setattr(self, self.proj_name, nn.Linear(dim, n_proj * dim, bias=cfg.qkv_bias))
        fs = self.head_dim**-0.5
        s_init = fs if cfg.scale_op == "mul" else 1.0 / fs
        self.dyn_scale = (
            RelPosTable(window_size, num_heads, s_init) if cfg.scale == "dynamic" else None
        )
        self.inner_bias = RelPosTable(window_size, num_heads) if cfg.inner_bias else None
        self.outer_bias = (
            RelPosTable(window_size, num_heads, cfg.outer_init) if cfg.outer_bias else None
        )
        self.attn_drop = nn.Dropout(cfg.attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(cfg.proj_drop)
        self._cache: dict[tuple, Tensor] = {}

    @property
    def proj_name(self) -> str:
        return {"qkv": "qkv", "qxv": "qv", "qxx": "q"}[self.cfg.form]

    # ---------------------------------------------------------------- geometry
    def window_and_shift(self, H: int, W: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """timm's rule: a window larger than the map shrinks to it, and then nothing shifts."""
        M, s = self.window_size, self.shift_size
        window = (min(H, M), min(W, M))
        shift = (0 if H <= M else s, 0 if W <= M else s)
        return window, shift

    def _cached(self, key: tuple, make) -> Tensor:
        """Geometry tensors, built once per shape and device.

        Built outside inference mode: a tensor made under ``torch.inference_mode`` cannot be
        saved for backward, and the first forward (a FLOP count, say) may well run there.
        """
        if key not in self._cache:
            with torch.inference_mode(False), torch.no_grad():
                self._cache[key] = make()
        return self._cache[key]

    def _index(self, grid: tuple[int, int], device: torch.device) -> Tensor:
        make = functools.partial(relative_position_index, grid, self.window_size, device)
        return self._cached(("index", grid, device), make)

    # ---------------------------------------------------------------- forward
    def forward(self, x: Tensor) -> Tensor:
        B, H, W, C = x.shape
        if self.cfg.window == "global":
            geo = _Geometry((H, W), self._index((H, W), x.device), None, None)
            return self._attend(x.reshape(B, H * W, C), geo).view(B, H, W, C)

        window, shift = self.window_and_shift(H, W)
        if any(shift):  # cyclic shift so that windows straddle the previous layer's borders
            x = torch.roll(x, shifts=(-shift[0], -shift[1]), dims=(1, 2))
        pad_h, pad_w = (-H) % window[0], (-W) % window[1]
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))  # timm pads after the shift, unmasked
        Hp, Wp = H + pad_h, W + pad_w

        windows = window_partition(x, window).reshape(-1, window[0] * window[1], C)  # [B*nW, N, C]
        mask = None
        if any(shift):
            key = ("mask", Hp, Wp, window, shift, x.device)
            mask = self._cached(key, lambda: shift_region_mask((Hp, Wp), window, shift, x.device))
        valid = None
        if self.recording:
            valid = self._valid_queries(B, (H, W), (Hp, Wp), window, x.device)
        out = self._attend(windows, _Geometry(window, self._index(window, x.device), mask, valid))

        out = window_reverse(out.reshape(-1, *window, C), window, Hp, Wp)[:, :H, :W, :]
        if any(shift):
            out = torch.roll(out, shifts=shift, dims=(1, 2))
        return out.contiguous()

    @staticmethod
    def _valid_queries(B: int, size, padded, window, device) -> Tensor:
        """``[B*nW, N]``: False for the padding tokens, which attention statistics leave out."""
        valid = torch.zeros(1, *padded, 1, dtype=torch.bool, device=device)
        valid[:, : size[0], : size[1]] = True
        per_window = window_partition(valid, window).flatten(1)  # [nW, N]
        return per_window.repeat(B, 1)

    def _project(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Queries, keys, values as ``[B_, h, N, d]``; keys/values may be X's channel slices."""
        B_, N, C = x.shape
        h, d = self.num_heads, self.head_dim
        proj = getattr(self, self.proj_name)(x)
        x_heads = x.view(B_, N, h, d).transpose(1, 2)  # head j reads channel slice j of X
        if self.cfg.form == "qkv":
            q, k, v = proj.view(B_, N, 3, h, d).permute(2, 0, 3, 1, 4).unbind(0)
        elif self.cfg.form == "qxv":
            q, v = proj.view(B_, N, 2, h, d).permute(2, 0, 3, 1, 4).unbind(0)
            k = x_heads
        else:
            q, k, v = proj.view(B_, N, h, d).transpose(1, 2), x_heads, x_heads
        return q, k, v

    def _attend(self, x: Tensor, geo: _Geometry) -> Tensor:
        B_, N, C = x.shape
        q, k, v = self._project(x)
        bias = self._additive_bias(geo, B_)  # fp32 [B_ or 1, h, N, N]

        fused_ok = self.cfg.scale == "fixed" and self.outer_bias is None
        if self.cfg.fused and fused_ok and not self.recording:
            bias = bias.to(q.dtype) if bias is not None else None  # SDPA wants q's dtype
            p = self.attn_drop.p if self.training else 0.0
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=p)
        else:
            out = self._explicit(q, k, v, bias, geo)
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(B_, N, C)))

    def _additive_bias(self, geo: _Geometry, B_: int) -> Tensor | None:
        """Inner bias plus the shift mask as -inf, kept in fp32 in every block.

        (Under bf16 autocast, rounding it to the logits' dtype in shifted blocks only would make
        W and SW blocks compute differently.)
        """
        bias = self.inner_bias(geo.index).unsqueeze(0) if self.inner_bias is not None else None
        mask = geo.mask
        if mask is None:
            return bias
        neg = self._cached(
            ("neg", tuple(mask.shape), mask.device),
            lambda: torch.zeros(mask.shape, device=mask.device).masked_fill(~mask, -math.inf),
        ).unsqueeze(1)  # [nW, 1, N, N]
        bias = neg if bias is None else bias.float() + neg
        nW, h, N = mask.shape[0], self.num_heads, mask.shape[-1]
        return bias.unsqueeze(0).expand(B_ // nW, -1, h, -1, -1).reshape(B_, h, N, N)

    def _explicit(self, q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None, geo: _Geometry):
        """The un-fused path: needed for S, B_o and for recording the weights."""
        index, mask = geo.index, geo.mask
        if self.dyn_scale is None:
            logits = (q * self.head_dim**-0.5) @ k.transpose(-2, -1)  # timm's order of operations
        else:
            s = self.dyn_scale(index).unsqueeze(0)  # [1, h, N, N]
            qk = q @ k.transpose(-2, -1)
            logits = qk * s if self.cfg.scale_op == "mul" else qk / s
        if bias is not None:
            logits = logits + bias
        attn = softmax = logits.softmax(dim=-1)

        if self.outer_bias is not None:
            # rows no longer sum to 1 after this; the paper does not renormalise
            bo = self.outer_bias(index).unsqueeze(0).to(attn.dtype)  # [1, h, N, N]
            if mask is not None and self.cfg.mask_outer_bias:
                bo = bo.unsqueeze(0) * mask[None, :, None]  # [1, nW, h, N, N]
                bo = bo.expand(attn.shape[0] // mask.shape[0], -1, -1, -1, -1).reshape(attn.shape)
            attn = attn + bo if self.cfg.outer_op == "add" else attn * (1.0 + bo)
        if self.recording:
            pre = softmax.detach() if self.outer_bias is not None else None
            self.keep_record(AttentionRecord(attn.detach(), pre, geo.grid, geo.valid))
        return self.attn_drop(attn) @ v

    def extra_repr(self) -> str:
        c = self.cfg
        return (
            f"dim={self.dim}, heads={self.num_heads}, window={self.window_size}, "
            f"shift={self.shift_size}, form={c.form}, scale={c.scale}/{c.scale_op}, "
            f"inner={c.inner_bias}, outer={c.outer_bias}/{c.outer_op}, mode={c.window}"
        )
