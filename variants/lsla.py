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

Shapes: input and output ``[B, H, W, C]``; inside, windows are ``[B*nW, N=M*M, C]``. Where the
tokens go is ``_lsla_geometry``; which kernel runs (the fused CPU kernel in fp32 on CPU, SDPA
where the maths allows, flex_attention on CUDA, else the exact explicit core) and the tables
each reads is ``_lsla_kernels``.
"""

# No ``from __future__ import annotations``: TorchScript needs real annotation objects.
from dataclasses import dataclass
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from variants._config import Range, validate
from variants._contract import AttentionRecord, AttentionRecorder, Capabilities
from variants._inference_chunks import chunked, rows_per_chunk
from variants._linear import Linear, onednn_applies
from variants._lsla_geometry import Geometry, WindowGeometry, valid_queries
from variants._lsla_kernels import KernelPaths
from variants._lsla_reference import reference_forward
from variants._registry import register
from variants._window import RelPosTable


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
class LSLAAttention(WindowGeometry, KernelPaths, AttentionRecorder, nn.Module):
    """Window attention with LSLA's switchable form, scale and inner/outer position biases."""

    Config = LSLAConfig
    capabilities = Capabilities(
        records_attention=True,
        shifts=_shifts,
        respects_mask=_respects_mask,
        reference=reference_forward,
        fused_switch="fused",
    )

    # TorchScript reads these lists: Python-only members a scripted copy leaves out
    __jit_unused_properties__ = ["proj_name"]  # noqa: RUF012
    __jit_ignored_attributes__ = ["_cache", "cfg", "record", "kernels_used"]  # noqa: RUF012

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
        # plain copies of the switches the forward reads, so that TorchScript can compile it
        self.global_mode = cfg.window == "global"
        self.fused = cfg.fused and cfg.scale == "fixed" and not cfg.outer_bias  # SDPA
        # flex_attention on CUDA: S, B_i and the mask as a score_mod, B_o V added after
        self.flex_capable = cfg.fused and not (cfg.outer_bias and cfg.outer_op == "mul")
        # the ops that apply: a fixed scale is never divided, an absent B_o never multiplies
        self.scale_div = cfg.scale == "dynamic" and cfg.scale_op == "div"
        self.outer_mul = cfg.outer_bias and cfg.outer_op == "mul"
        self.mask_outer = cfg.mask_outer_bias
        self.recording = False
        n_proj = {"qkv": 3, "qxv": 2, "qxx": 1}[cfg.form]
        in_proj = Linear(dim, n_proj * dim, bias=cfg.qkv_bias)
        self.qkv = in_proj if cfg.form == "qkv" else None
        self.qv = in_proj if cfg.form == "qxv" else None
        self.q = in_proj if cfg.form == "qxx" else None
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
        self.proj = Linear(dim, dim)
        self.proj_drop = nn.Dropout(cfg.proj_drop)
        self._cache = {}  # geometry tensors by (kind, shape, device); see _cached
        self.kernels_used: set[str] = set()  # "fused_cpu", "sdpa", "flex", "explicit": what ran

    @property
    def proj_name(self) -> str:
        return {"qkv": "qkv", "qxv": "qv", "qxx": "q"}[self.cfg.form]

    # ---------------------------------------------------------------- forward
    def forward(self, x: Tensor) -> Tensor:
        B, H, W, C = x.shape
        if not torch.jit.is_scripting():
            images = self._images_per_group(x)
            if images is not None:
                return chunked(self.forward, x, images)
        if self.global_mode:
            geo = Geometry((H, W), None, None, None, None, None)  # tables need no index
            return self._attend(x.reshape(B, H * W, C), geo).view(B, H, W, C)

        window, shift = self.window_and_shift(H, W)
        shifted = shift[0] > 0 or shift[1] > 0
        pad_h, pad_w = (-H) % window[0], (-W) % window[1]
        Hp, Wp = H + pad_h, W + pad_w
        # cyclic shift (windows straddle the previous layer's borders), then timm's unmasked
        # zero padding, then the partition: one gather of the tokens, undone by one more
        gather, scatter = self._order((H, W), window, shift, x.device)
        tokens = x.reshape(B, H * W, C)
        if pad_h or pad_w:
            tokens = F.pad(tokens, (0, 0, 0, 1))  # the zero row that padding slots read
        # unpadded, gather and scatter are two permutations, each the other's inverse
        permutes = not (pad_h or pad_w or torch.jit.is_scripting())
        if permutes:
            windows = self._permute(tokens, gather, scatter)
        else:
            windows = tokens.index_select(1, gather)
        windows = windows.view(-1, window[0] * window[1], C)
        mask: Tensor | None = None
        neg: Tensor | None = None
        keep: Tensor | None = None
        if shifted:
            mask, neg, keep = self._mask((Hp, Wp), window, shift, x.device)
        valid: Tensor | None = None
        if self.recording:
            valid = valid_queries(B, (H, W), (Hp, Wp), window, x.device)
        geo = Geometry(window, self._index(window, x.device), mask, neg, keep, valid)
        out = self._attend(windows, geo)  # [B*nW, N, C]
        out = out.view(B, -1, C)
        if permutes:
            return self._permute(out, scatter, gather).view(B, H, W, C)
        return out.index_select(1, scatter).view(B, H, W, C)

    @torch.jit.unused
    def _images_per_group(self, x: Tensor) -> int | None:
        """In fp32 CPU inference, images per group where the input projection's map of the whole
        batch would be mapped fresh (``variants._inference_chunks``; Swin's C -> 3C map at batch
        16 in stage 1, not LSLA's C -> C one); None: the batch at once."""
        if self.global_mode or self.recording or not onednn_applies(x):
            return None
        projected = getattr(self, self.proj_name).out_features  # channels of the map
        per_image = x.element_size() * projected * x.shape[1] * x.shape[2]
        return rows_per_chunk(x.shape[0], per_image)

    def _project(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Queries, keys, values as ``[B_, h, N, d]``; keys/values may be X's channel slices."""
        B_, N, C = x.shape
        h, d = self.num_heads, self.head_dim
        x_heads = x.view(B_, N, h, d).transpose(1, 2)  # head j reads channel slice j of X
        if self.qkv is not None:
            qkv = self.qkv(x).view(B_, N, 3, h, d).permute(2, 0, 3, 1, 4)
            return qkv[0], qkv[1], qkv[2]
        if self.qv is not None:
            qv = self.qv(x).view(B_, N, 2, h, d).permute(2, 0, 3, 1, 4)
            return qv[0], x_heads, qv[1]
        assert self.q is not None
        return self.q(x).view(B_, N, h, d).transpose(1, 2), x_heads, x_heads

    def _attend(self, x: Tensor, geo: Geometry) -> Tensor:
        B_, N, C = x.shape
        q, k, v = self._project(x)
        if not torch.jit.is_scripting() and self._cpu_kernel_applies(q, geo):
            self.kernels_used.add("fused_cpu")
            out = self._cpu_fused(q, k, v, geo)
        elif (
            self.fused
            and not self.recording
            and (torch.jit.is_scripting() or not self._global_bias_elsewhere(q, geo))
        ):
            if not torch.jit.is_scripting():
                self.kernels_used.add("sdpa")
            bias = self._additive_bias(geo, B_)  # fp32 [B_ or 1, h, N, N]
            if bias is not None:
                bias = bias.to(q.dtype)  # SDPA wants q's dtype
            p = self.attn_drop.p if self.training else 0.0
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=p)
        elif not torch.jit.is_scripting() and self._flex_applies(q):
            out = self._flex(q, k, v, geo)  # records "flex", or "explicit" where flex gave up
        elif not torch.jit.is_scripting():
            out = self._explicit_any(q, k, v, geo)
        else:
            out = self._explicit(q, k, v, self._additive_bias(geo, B_), geo)
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(B_, N, C)))

    def _additive_bias(self, geo: Geometry, B_: int) -> Tensor | None:
        """Inner bias plus the shift mask as -inf, ``[B_ or 1, h, N, N]``, kept in fp32 in every
        block. (Under bf16 autocast, rounding it to the logits' dtype in shifted blocks only
        would make W and SW blocks compute differently.)"""
        bias = self._compact_bias(geo)
        if bias is None or bias.shape[0] == 1:
            return bias
        nW, N = bias.shape[0], bias.shape[-1]
        return bias.unsqueeze(0).expand(B_ // nW, nW, self.num_heads, N, N).reshape(B_, -1, N, N)

    def _compact_bias(self, geo: Geometry) -> Tensor | None:
        """The same additive term once per window position: ``[nW or 1, h or 1, N, N]``."""
        bias: Tensor | None = None
        if self.inner_bias is not None:
            bias = self.inner_bias(geo.index, geo.grid).unsqueeze(0)
        neg = geo.neg
        if neg is None:
            return bias
        neg = neg.unsqueeze(1)  # [nW, 1, N, N]
        return neg if bias is None else bias.float() + neg

    def _explicit(self, q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None, geo: Geometry):
        """The un-fused path, op by op: needed for S, B_o and for recording the weights."""
        index, grid, mask = geo.index, geo.grid, geo.mask
        if self.dyn_scale is None:
            logits = (q * self.head_dim**-0.5) @ k.transpose(-2, -1)  # timm's order of operations
        else:
            s = self.dyn_scale(index, grid).unsqueeze(0)  # [1, h, N, N]
            qk = q @ k.transpose(-2, -1)
            logits = qk / s if self.scale_div else qk * s
        if bias is not None:
            logits = logits + bias
        attn = softmax = logits.softmax(dim=-1)

        if self.outer_bias is not None:
            # rows no longer sum to 1 after this; the paper does not renormalise
            bo = self.outer_bias(index, grid).unsqueeze(0).to(attn.dtype)  # [1, h, N, N]
            if mask is not None and self.mask_outer:
                nW = mask.shape[0]
                bo = bo.unsqueeze(0) * mask.unsqueeze(0).unsqueeze(2)  # [1, nW, h, N, N]
                bo = bo.expand(attn.shape[0] // nW, -1, -1, -1, -1).reshape(attn.shape)
            attn = attn * (1.0 + bo) if self.outer_mul else attn + bo
        if self.recording:
            self._keep(attn, softmax, geo)
        return self.attn_drop(attn) @ v

    @torch.jit.unused
    def _keep(self, attn: Tensor, softmax: Tensor, geo: Geometry) -> None:
        pre = softmax.detach() if self.outer_bias is not None else None
        self.keep_record(AttentionRecord(attn.detach(), pre, geo.grid, geo.valid))

    def extra_repr(self) -> str:
        c = self.cfg
        return (
            f"dim={self.dim}, heads={self.num_heads}, window={self.window_size}, "
            f"shift={self.shift_size}, form={c.form}, scale={c.scale}/{c.scale_op}, "
            f"inner={c.inner_bias}, outer={c.outer_bias}/{c.outer_op}, mode={c.window}"
        )
