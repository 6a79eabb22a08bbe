"""Each attention layer's kernel: the automatic choice, what it records, the flex path's maths.

flex_attention is the fused LSLA path on CUDA; on CPU torch compiles it for the forward only, so
here its compiled forward is checked against the explicit path, and its backward through flex's
eager maths (``test_gpu.py`` checks the compiled backward on CUDA).
"""

from __future__ import annotations

import pytest
import torch

import variants
from harness.attn_stats import recording
from tests.kernels import (
    FLEX_CASES,
    FLEX_GEOMETRIES,
    allow_flex_backward_on_cpu,
    fused_cpu_or,
    results_by_path,
)
from tests.perturb import away_from_init
from variants.lsla import LSLAAttention


@pytest.mark.slow
@pytest.mark.parametrize("switches", [dict(shift_size=2), dict(window="global")])
def test_flex_forward_equals_the_explicit_path_on_cpu(switches, monkeypatch):
    """S, B_i and the shift mask as flex's score_mod, B_o V after (one compile, 10-40 s):
    padded, shifted windows (mask and masked B_o in play), and global attention (tables per
    offset, clipped beyond +-3). Each compiles afresh: a second shape would compile with
    dynamic shapes, which inductor's C++ flex template fails at (``docs/gpu.md``)."""
    from variants import _lsla_flex

    torch._dynamo.reset()
    monkeypatch.setattr(_lsla_flex, "_compiled", None)
    torch.manual_seed(1)
    m = away_from_init(variants.create("lsla", 32, 2, 4, **switches).eval())
    x = torch.randn(2, 9, 10, 32)
    m._cpu_kernel_applies = lambda q, geo: False  # compared with the explicit path
    with torch.inference_mode():
        explicit = m(x)
        m._flex_applies = lambda q: True  # CPU: forced, the automatic choice is CUDA only
        flex = m(x)
    assert m.kernels_used == {"explicit", "flex"}
    torch.testing.assert_close(flex, explicit, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("name", "geometry"), FLEX_CASES)
def test_flex_gradients_equal_the_explicit_path_through_flex_eager_maths(
    name, geometry, monkeypatch
):
    """The CUDA path's maths under autograd, on CPU: flex's eager reference, whose gradients
    the compiled CUDA kernels implement, for x and every table (S, B_i learn through the
    score_mod's captured tables, B_o through the product after). torch refuses flex's backward
    on CPU at its entry check alone, which is lifted here; Triton's code itself is
    ``test_gpu.py``'s."""
    import warnings

    from torch.nn.attention.flex_attention import flex_attention

    from variants import _lsla_flex

    allow_flex_backward_on_cpu(monkeypatch)
    monkeypatch.setattr(_lsla_flex, "_flex", lambda: flex_attention)
    torch.manual_seed(0)
    m = away_from_init(variants.create(name, 48, 3, 7, **FLEX_GEOMETRIES[geometry]))
    m._cpu_kernel_applies = lambda q, geo: False  # compared with the explicit path
    x = torch.randn(2, 15, 13, 48)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # flex's "called without torch.compile"
        try:
            results = results_by_path(m, x)
        except NotImplementedError as e:  # a torch whose CPU check moved elsewhere
            pytest.skip(f"flex's backward is refused on CPU by this torch: {e}")
    assert m.kernels_used == {"flex", "explicit"}
    for a, b in zip(*results, strict=True):
        assert a is not None and b is not None
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)  # sums of many terms


@pytest.mark.parametrize(
    ("name", "flex"),
    [("lsla", True), ("lsla_qkv", True), ("lsla_outer_mul", False), ("swin_ds", True)],
)
def test_flex_takes_every_variant_whose_maths_it_can_express(name, flex):
    """``P * (1 + B_o)`` needs the softmax itself: that variant stays explicit on CUDA."""
    m = variants.create(name, 32, 2, 4, 2)
    assert isinstance(m, LSLAAttention) and m.flex_capable is flex
    assert not variants.create(name, 32, 2, 4, 2, fused=False).flex_capable


def test_kernels_used_records_what_ran():
    x = torch.randn(1, 8, 8, 32)
    swin, lsla = (variants.create(n, 32, 2, 4, 2) for n in ("swin", "lsla"))
    swin(x).sum().backward()
    with torch.inference_mode():
        lsla(x)
    assert swin.kernels_used == {fused_cpu_or("sdpa")}
    assert lsla.kernels_used == {fused_cpu_or("explicit")}
    with torch.inference_mode(), recording(swin):  # weights are only kept on the explicit path
        swin(x)
    assert swin.kernels_used == {fused_cpu_or("sdpa"), "explicit"}
    narrow = variants.create("swin", 32, 4, 4, 2)  # head_dim 8: the CPU kernel declines it
    narrow(x).sum().backward()
    assert narrow.kernels_used == {"sdpa"}
    explicit = variants.create("swin", 32, 2, 4, 2, fused=False)
    explicit(x)
    with torch.inference_mode():
        explicit(x)
    assert explicit.kernels_used == {"explicit"}


def _run_config(*overrides: str):
    from harness.config import load_experiment

    text = '[model]\npreset = "vit_lsla_micro"\nvariant = "swin"\n'
    return load_experiment(text=text, overrides=list(overrides))[0]


def test_kernel_explicit_puts_every_arm_on_the_explicit_path():
    from harness.run import build_model

    x = torch.randn(2, 3, 32, 32)
    for kernel, used in (("auto", [fused_cpu_or("sdpa")]), ("explicit", ["explicit"])):
        model = build_model(_run_config(f"model.kernel='{kernel}'"), num_classes=10)
        model(x).sum().backward()  # training: the fused CPU kernel, or the explicit path
        with torch.inference_mode():
            model(x)
        assert model.attention_kernels() == used


def test_kernel_explicit_with_a_fused_switch_on_is_one_clear_error():
    from variants._config import ConfigError

    with pytest.raises(ConfigError) as err:
        _run_config("model.kernel='explicit'", "model.switches.fused=true")
    message = str(err.value)
    assert "model.kernel='explicit'" in message and "fused=true" in message
    assert "\n" not in message
    with pytest.raises(ConfigError, match="model.kernel='fast' is not valid"):
        _run_config("model.kernel='fast'")


def test_global_attention_with_a_bias_takes_the_chunked_core_on_cpu():
    """SDPA would need the bias as an ``[h, L, L]`` tensor; the core reads views of the table,
    with autograd or without. Without a bias (``msa``), SDPA stays the choice."""
    torch.manual_seed(0)
    swin = away_from_init(variants.create("swin_global", 32, 2, 4).eval())
    x = torch.randn(2, 9, 10, 32)
    results = []
    for core in (True, False):
        swin._global_core_applies = lambda q, geo, core=core: core  # False: SDPA, as before
        swin.zero_grad()
        xi = x.clone().requires_grad_(True)
        with torch.no_grad():
            inference = swin(x)
        swin(xi).sum().backward()
        results.append([inference, xi.grad, *(p.grad for p in swin.parameters())])
        assert swin.kernels_used == ({"explicit"} if core else {"sdpa"})
        swin.kernels_used.clear()
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)  # fp32 sums in other orders
    del swin._global_core_applies
    swin(x).sum().backward()
    msa = variants.create("msa", 32, 2, 4).eval()
    with torch.inference_mode():
        msa(x)
    msa(x).sum().backward()
    assert swin.kernels_used == {"explicit"} and msa.kernels_used == {"sdpa"}


@pytest.mark.parametrize("name", ["lsla", "swin"])
def test_flex_global_attention_builds_no_table_over_every_pair(name, monkeypatch):
    """On the flex path global attention reads S, B_i and B_o per offset: no ``[h, L, L]``
    table is built (1.9 GB each per stage-1 layer at 448 px), and every table still learns.
    Swin's too, which SDPA took with its bias as such a table while LSLA's went to flex."""
    import warnings

    from torch.nn.attention.flex_attention import flex_attention

    from variants import _lsla_flex
    from variants._window import RelPosTable

    def refuse(*args):
        raise AssertionError("an [h, L, L] table was built")

    allow_flex_backward_on_cpu(monkeypatch)
    monkeypatch.setattr(_lsla_flex, "_flex", lambda: flex_attention)
    monkeypatch.setattr(RelPosTable, "over_grid", refuse)
    m = variants.create(name, 32, 2, 4, window="global")
    m._flex_applies = lambda q: True  # as on CUDA, where the CPU's explicit core does not apply
    m._global_core_applies = lambda q, geo: False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # flex's "called without torch.compile"
        try:
            m(torch.randn(2, 9, 10, 32)).sum().backward()
        except NotImplementedError as e:
            pytest.skip(f"flex's backward is refused on CPU by this torch: {e}")
    assert m.kernels_used == {"flex"}
    tables = [t for t in (m.dyn_scale, m.inner_bias, m.outer_bias) if t is not None]
    assert len(tables) == (3 if name == "lsla" else 1)
    for table in tables:
        assert table.relative_position_bias_table.grad.abs().sum() > 0


def test_global_outer_product_keeps_no_chunk_of_the_outer_bias_for_backward(monkeypatch):
    """B_o V in global attention, query rows a chunk at a time: equal to the product with the
    whole ``[h, L, L]`` table in value and gradients; no op, forward or backward, makes more
    than a chunk of it, and what autograd keeps is far smaller (each chunk is recomputed)."""
    from tests.allocations import LargestAllocation
    from variants import _lsla_flex
    from variants._window import RelPosTable, offset_table

    torch.manual_seed(0)
    table = away_from_init(RelPosTable(4, 3, "zeros"))
    v = torch.randn(2, 3, 9 * 10, 8)
    grid, L = (9, 10), 90
    monkeypatch.setattr(_lsla_flex, "OUTER_CHUNK_ELEMENTS", 3 * 2 * 10 * L)  # 2 rows a chunk
    results, kept = [], {}

    def keep(t):  # the memory autograd holds: each storage once, views of it counted whole
        kept[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    for chunked in (True, False):
        table.zero_grad()
        vi = v.clone().requires_grad_(True)
        with LargestAllocation() as seen:
            with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
                if chunked:
                    offsets = offset_table(table.relative_position_bias_table, 4, grid)
                    out = _lsla_flex.global_outer_product(offsets, vi, grid)
                else:
                    kept.clear()
                    out = table(None, grid) @ vi
            (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        results.append([out.detach(), vi.grad, table.relative_position_bias_table.grad])
        if chunked:
            chunked_kept, chunked_made = sum(kept.values()), seen.nbytes
    whole_table = 3 * L * L * 4
    assert chunked_kept < whole_table / 4 and sum(kept.values()) >= whole_table
    chunk = 3 * 2 * 10 * L * 4  # 2 rows of queries, fp32
    assert chunked_made <= 2 * chunk and seen.nbytes >= whole_table  # 2: a chunk per image
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
