"""Which kernel an LSLA-family layer runs, and the tables each kernel reads.

``KernelPaths`` is mixed into ``variants.lsla.LSLAAttention``: flex_attention on CUDA
(``_lsla_flex``), the fused CPU kernel (``_lsla_cpu``), the explicit core (``LSLACore`` with
autograd, ``attend_no_grad`` without; ``GlobalCore`` in global attention, with or without),
each with its tables: gathered per call under autograd, combined once per geometry without it,
per offset (read through strided views) in global attention.
"""

# No ``from __future__ import annotations``: TorchScript needs real annotation objects.
import torch
from torch import Tensor

from variants import _lsla_cpu, _lsla_flex
from variants._eager import plain_cpu_fp32
from variants._lsla_core import LSLACore, Tables, attend_no_grad, outer_term
from variants._lsla_flex import FlexGaveUp, attend_flex, attend_flex_global
from variants._lsla_geometry import Geometry, padded_rows
from variants._lsla_global import GlobalCore
from variants._versions import kept
from variants._window import offset_table


class KernelPaths:
    """The fused (flex) and explicit core paths of the host ``LSLAAttention``."""

    @torch.jit.unused
    def _flex_applies(self, q: Tensor) -> bool:
        """flex_attention is the fused path on CUDA (no dropout in it, no weights to record)."""
        return (
            self.flex_capable
            and q.is_cuda
            and not self.recording
            and not (self.training and self.attn_drop.p > 0)
            and not torch.compiler.is_exporting()
            and _lsla_flex.usable()
        )

    @torch.jit.unused
    def _flex(self, q: Tensor, k: Tensor, v: Tensor, geo: Geometry) -> Tensor:
        """flex_attention, recorded as "flex"; the explicit path once flex has given up."""
        try:
            if geo.index is None:  # global: the tables per offset, never [h, L, L]
                offsets = self._offset_tables(geo.grid)
                out = attend_flex_global(q, k, v, *offsets, geo.grid, self.scale_div)
            else:
                at = (geo.index, geo.grid)
                scale = self.dyn_scale(*at) if self.dyn_scale is not None else None
                inner = self.inner_bias(*at) if self.inner_bias is not None else None
                outer = outer_term(*self._outer_parts(geo), outer_mul=False)  # where it applies
                out = attend_flex(q, k, v, scale, inner, geo.neg, outer, self.scale_div)
        except FlexGaveUp:
            return self._explicit_any(q, k, v, geo)
        self.kernels_used.add("flex")
        return out

    @torch.jit.unused
    def _offset_tables(
        self, grid: tuple[int, int], dtype: torch.dtype | None = None
    ) -> tuple[Tensor | None, ...]:
        """S, B_i and B_o per offset of ``grid``, ``[h, 2H-1, 2W-1]``, in ``dtype`` where given
        (None: absent): global attention's tables, no ``L x L`` tensor."""
        tables = (self.dyn_scale, self.inner_bias, self.outer_bias)
        return tuple(
            None
            if t is None
            else offset_table(t.relative_position_bias_table, t.window, grid).to(dtype)
            for t in tables
        )

    @torch.jit.unused
    def _explicit_any(self, q: Tensor, k: Tensor, v: Tensor, geo: Geometry) -> Tensor:
        """The explicit path, recorded as such: the core where it applies, else op by op."""
        self.kernels_used.add("explicit")
        if self._core_applies(q):
            return self._explicit_core(q, k, v, geo)
        return self._explicit(q, k, v, self._additive_bias(geo, q.shape[0]), geo)

    @torch.jit.unused
    def _outer_parts(self, geo: Geometry) -> tuple[Tensor | None, Tensor | None]:
        """B_o ``[1, h, N, N]`` and where it applies ``[nW, 1, N, N]`` (None: absent / all)."""
        if self.outer_bias is None:
            return None, None
        bo = self.outer_bias(geo.index, geo.grid).unsqueeze(0)
        return bo, (geo.keep if geo.keep is not None and self.mask_outer else None)

    @torch.jit.unused
    def _core_applies(self, q: Tensor) -> bool:
        """The core paths (``LSLACore`` with autograd, ``attend_no_grad`` without) need one
        dtype throughout (no autocast), no attention dropout, nothing recorded or captured."""
        return (
            not self.recording
            and not (self.training and self.attn_drop.p > 0)
            and not torch.is_autocast_enabled(q.device.type)
            and not torch.compiler.is_compiling()
            and not torch.compiler.is_exporting()
        )

    @torch.jit.unused
    def _global_core_applies(self, q: Tensor, geo: Geometry) -> bool:
        """Global attention with a relative bias on CPU: the explicit core, a few query rows
        at a time over views of the tables (``_lsla_global``), where SDPA would need the bias
        as an ``[h, L, L]`` tensor (1.9 GB per layer at 448 px, most of its time spent
        building it): swin_t_ref's global forward at 448 px ran 9.2x as fast this way (3
        interleaved rounds), its training step at 224 px 1.04-1.26x (medians of three runs of
        9 rounds) with a quarter to a third of SDPA's peak memory."""
        return self._global_with_bias(geo) and q.device.type == "cpu" and self._core_applies(q)

    @torch.jit.unused
    def _global_with_bias(self, geo: Geometry) -> bool:
        return geo.index is None and self.inner_bias is not None

    @torch.jit.unused
    def _global_bias_elsewhere(self, q: Tensor, geo: Geometry) -> bool:
        """Global attention with a relative bias skips SDPA, which would take the bias as an
        ``[h, L, L]`` tensor, wherever a path reading it per offset applies: the explicit core
        on CPU, flex on CUDA. So Swin's global baseline is built as LSLA's is, on every
        device, and no comparison of the two credits LSLA with Swin's bias tensor."""
        return self._global_with_bias(geo) and (
            self._flex_applies(q) or self._global_core_applies(q, geo)
        )

    @torch.jit.unused
    def _cpu_kernel_applies(self, q: Tensor, geo: Geometry) -> bool:
        """The fused CPU kernel (``_lsla_cpu``) takes fp32 on CPU, with or without autograd,
        windows of at most 64 tokens, unless the ``fused`` switch is off (every arm on the
        explicit path). It runs outside torch's dispatcher: only in plain eager execution
        (``variants._eager``)."""
        return (
            self.cfg.fused
            and plain_cpu_fp32(q)
            and geo.index is not None
            and self._core_applies(q)
            and _lsla_cpu.supports(q.shape[-2], q.shape[-1])
            and _lsla_cpu.library() is not None
        )

    @torch.jit.unused
    def _cpu_fused(self, q: Tensor, k: Tensor, v: Tensor, geo: Geometry) -> Tensor:
        neg, keep = self._kernel_masks(geo)
        n_windows = neg.shape[0] if neg is not None else 1
        qscale = 1.0 if self.dyn_scale is not None else self.head_dim**-0.5
        flags = _lsla_cpu.Flags(n_windows, qscale, self.scale_div, self.outer_mul)
        if not torch.is_grad_enabled():  # the padded tables kept between calls

            def build() -> tuple:
                return _lsla_cpu.kernel_tables(*self._window_tables(geo), neg, keep)

            return _lsla_cpu.attend_no_grad(q, k, v, self._kept(geo, "kernel", build), flags)
        s, inner, bo = self._window_tables(geo)
        return _lsla_cpu.attend(q, k, v, s, inner, bo, neg, keep, flags)

    @torch.jit.unused
    def _window_tables(self, geo: Geometry) -> tuple[Tensor | None, ...]:
        """S, B_i and B_o ``[h, N, N]`` gathered for this window (None: absent)."""
        at = (geo.index, geo.grid)
        tables = (self.dyn_scale, self.inner_bias, self.outer_bias)
        return tuple(None if t is None else t(*at) for t in tables)

    @torch.jit.unused
    def _kernel_masks(self, geo: Geometry) -> tuple[Tensor | None, Tensor | None]:
        """The shift mask (0 / -inf) and where B_o applies (1 / 0) in the kernel's layout
        ``[nW, N, NP]`` (the storage the geometry keeps them in); None without a shift (keep:
        also where B_o is absent or not masked)."""
        if geo.neg is None or geo.keep is None:
            return None, None
        keep = self.outer_bias is not None and self.mask_outer
        return padded_rows(geo.neg), (padded_rows(geo.keep.squeeze(1)) if keep else None)

    @torch.jit.unused
    def _explicit_core(self, q: Tensor, k: Tensor, v: Tensor, geo: Geometry) -> Tensor:
        if k is v and not torch.is_grad_enabled():  # qxx: keys and values are X's channel
            k = v = k.contiguous()  # slices; one copy serves both (autograd would keep it)
        nW = geo.neg.shape[0] if geo.neg is not None else 1
        if nW > 1:  # per-window terms: attend in [B, nW, h, N, d], every table broadcasts
            q, k, v = (t.unflatten(0, (t.shape[0] // nW, nW)) for t in (q, k, v))
        div, mul = self.scale_div, self.outer_mul
        if self.dyn_scale is None:
            q = q * self.head_dim**-0.5  # timm's order of operations
        if geo.index is None:  # global: tables per offset, never [h, L, L]
            offsets = self._offset_tables(geo.grid, q.dtype)
            out = GlobalCore.apply(q, k, v, *offsets, geo.grid, div, mul)
        elif torch.is_grad_enabled():
            out = LSLACore.apply(q, k, v, *self._grad_tables(geo), div, mul)
        else:
            out = attend_no_grad(q, k, v, self._no_grad_tables(geo, q.dtype), div, mul)
        return out.flatten(0, 1) if nW > 1 else out

    @torch.jit.unused
    def _grad_tables(self, geo: Geometry) -> tuple[Tensor | None, ...]:
        """S, B_i, the -inf mask, B_o and where B_o applies, for ``LSLACore`` (None: absent)."""
        at = (geo.index, geo.grid)
        s = self.dyn_scale(*at) if self.dyn_scale is not None else None
        inner = self.inner_bias(*at).unsqueeze(0) if self.inner_bias is not None else None
        neg = geo.neg.unsqueeze(1) if geo.neg is not None else None  # [nW, 1, N, N]
        if inner is not None and neg is not None:
            inner = inner.float()  # as _compact_bias does
        return (s, inner, neg, *self._outer_parts(geo))

    @torch.jit.unused
    def _no_grad_tables(self, geo: Geometry, dtype: torch.dtype) -> Tables:
        return self._kept(geo, ("tables", dtype), lambda: self._combine_tables(geo, dtype))

    @torch.jit.unused
    def _kept(self, geo: Geometry, kind, build):
        """Tables built once per geometry without autograd and kept while the parameters they
        come from are unchanged (``variants._versions``: an optimiser step or a load rebuilds
        them; parameters made under inference mode, which keep no version, every call)."""
        tables = [t for t in (self.dyn_scale, self.inner_bias, self.outer_bias) if t is not None]
        neg_at = geo.neg.data_ptr() if geo.neg is not None else 0
        assert geo.index is not None
        key = (kind, geo.index.data_ptr(), neg_at)
        return kept(self._cache, key, [t.relative_position_bias_table for t in tables], build)

    @torch.jit.unused
    def _combine_tables(self, geo: Geometry, dtype: torch.dtype) -> Tables:
        scale = self.dyn_scale(geo.index, geo.grid) if self.dyn_scale is not None else None
        bias = self._compact_bias(geo)
        outer = outer_term(*self._outer_parts(geo), outer_mul=self.outer_mul)
        return Tables(*(None if t is None else t.to(dtype) for t in (scale, bias, outer)))
