"""The fused CPU kernel (``variants/_lsla_cpu.cpp``): equal to the explicit path, forward and
every gradient, for every switch of the LSLA family and every window shape it takes; what it
keeps for backward, what it declines, and what happens when it cannot be built (the explicit
path, one warning line)."""

from __future__ import annotations

import warnings

import pytest
import torch

import variants
from harness.measure import saved_bytes
from tests.kernels import results_by_path
from tests.perturb import away_from_init
from variants import _cpu_build, _lsla_cpu

pytestmark = pytest.mark.skipif(
    _lsla_cpu.library() is None, reason=f"no fused CPU kernel: {_lsla_cpu.why_unavailable()}"
)

VARIANTS = [
    "lsla", "lsla_qkv", "lsla_qxv", "lsla_outer_mul", "lsla_outer_zeros", "lsla_scale_div",
    "lsla_outer_unmasked", "lsa", "lsa_ds", "qxx", "qxv", "wmsa", "swin", "swin_ds",
    "swin_outer", "swin_window",
]  # fmt: skip
# (dim, heads, window, shift, H, W): 49 tokens shifted and padded; 16 and 64 tokens; one head
# of 48 channels; a map smaller than the window (clamped, unshifted)
SHAPES = [
    (64, 2, 7, 3, 14, 14),
    (96, 3, 7, 3, 9, 10),
    (64, 4, 4, 2, 8, 8),
    (128, 2, 8, 4, 16, 16),
    (48, 1, 7, 3, 7, 7),
    (64, 2, 7, 3, 5, 6),
]


def _pair(name: str, shape: tuple[int, ...]):
    dim, heads, window, shift = shape[:4]
    torch.manual_seed(0)
    fused = away_from_init(variants.create(name, dim, heads, window, shift))
    explicit = variants.create(name, dim, heads, window, shift, fused=False)
    explicit.load_state_dict(fused.state_dict())
    return fused, explicit, torch.randn(2, shape[4], shape[5], dim)


@pytest.mark.parametrize("name", VARIANTS)
def test_fused_kernel_equals_the_explicit_path(name):
    for shape in SHAPES:
        fused, explicit, x = _pair(name, shape)
        with torch.inference_mode():
            got, want = fused(x), explicit(x)
        assert fused.kernels_used == {"fused_cpu"} and explicit.kernels_used == {"explicit"}
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5, msg=f"{name} {shape}")


@pytest.mark.parametrize("name", VARIANTS)
def test_fused_kernel_gradients_equal_the_explicit_path(name):
    """d/dx and d/d(every parameter: projections, S, B_i, B_o) under a random output grad."""
    for shape in SHAPES:
        fused, explicit, x = _pair(name, shape)
        grad = torch.randn_like(x)
        inputs = [x.clone().requires_grad_() for _ in range(2)]
        for m, xi in zip((fused, explicit), inputs, strict=True):
            (m(xi) * grad).sum().backward()
        assert fused.kernels_used == {"fused_cpu"} and explicit.kernels_used == {"explicit"}
        torch.testing.assert_close(inputs[0].grad, inputs[1].grad, rtol=1e-5, atol=1e-5)
        params = zip(fused.named_parameters(), explicit.parameters(), strict=True)
        for (pname, got), want in params:
            msg = lambda text, where=f"{name} {shape} {pname}": f"{where}: {text}"  # noqa: E731
            atol = 1e-5 * want.grad.abs().max().item()  # sums over every token: round-off
            torch.testing.assert_close(got.grad, want.grad, rtol=1e-4, atol=atol, msg=msg)


def test_backward_keeps_less_than_the_explicit_core():
    """Q, K, V and the small tables; the N x N maps are recomputed, as the explicit core does."""
    fused, explicit, x = _pair("lsla", (96, 3, 7, 3, 28, 28))
    fused_bytes, explicit_bytes = saved_bytes(fused, x), saved_bytes(explicit, x)
    assert "fused_cpu" in fused.kernels_used
    assert fused_bytes <= explicit_bytes


def test_threads_split_the_windows_without_changing_a_bit(monkeypatch):
    """The kernel's output and its q, k, v gradients are bit for bit the same at 1 and 3
    threads: each tile computes the same, whichever thread runs it. (Only the kernel's: the
    layer's weight gradient is MKL's GEMM, whose sums split by thread count on some CPUs; the
    tables' gradients are summed over the threads' accumulators, equal within round-off.)"""
    fused, _, x = _pair("lsla", (96, 3, 7, 3, 21, 21))
    calls = []
    attend = _lsla_cpu.attend
    monkeypatch.setattr(_lsla_cpu, "attend", lambda *args: calls.append(args) or attend(*args))
    fused(x).sum().backward()  # the layer's own q, k, v, tables and masks
    (q, k, v, s, inner, bo, neg, keep, flags), results = calls[0], []
    assert neg is not None and keep is not None  # shifted and padded windows
    before = torch.get_num_threads()
    try:
        for threads in (1, 3):
            torch.set_num_threads(threads)
            leaves = [t.detach().clone().requires_grad_() for t in (q, k, v, s, inner, bo)]
            out = attend(*leaves[:3], *leaves[3:], neg, keep, flags)
            out.square().sum().backward()
            results.append([out, *(t.grad for t in leaves)])
    finally:
        torch.set_num_threads(before)
    for i, (one, three) in enumerate(zip(*results, strict=True)):
        if i < 4:  # out, dq, dk, dv
            assert torch.equal(one, three)
        else:  # S, B_i, B_o: per-thread partial sums
            torch.testing.assert_close(one, three, rtol=1e-5, atol=1e-5 * one.abs().max().item())


def test_one_tensor_as_keys_and_values_gets_both_gradients_in_one_pass(monkeypatch):
    """LSLA's keys and values are one tensor (X's channel slices): the kernel adds dK onto dV in
    its own buffer, bit for bit what autograd's sum of two buffers gave, and autograd adds
    nothing."""
    fused, _, x = _pair("lsla", (96, 3, 7, 3, 14, 14))
    calls = []
    attend = _lsla_cpu.attend
    monkeypatch.setattr(_lsla_cpu, "attend", lambda *args: calls.append(args) or attend(*args))
    fused(x).sum().backward()
    q, k, v, *tables = calls[0]
    assert k is v
    q = q.detach()
    tables = [t.detach() if isinstance(t, torch.Tensor) else t for t in tables]
    dout = torch.randn(q.shape[0], q.shape[2], q.shape[1], q.shape[3]).transpose(1, 2)
    apart = [k.detach().clone().requires_grad_() for _ in range(2)]
    attend(q, *apart, *tables).backward(dout)
    one = k.detach().clone().requires_grad_()
    with torch.profiler.profile() as prof:
        attend(q, one, one, *tables).backward(dout)
    assert torch.equal(one.grad, apart[0].grad + apart[1].grad)
    assert not [e.name for e in prof.events() if e.name.startswith("aten::add")]


def test_tables_follow_an_update_of_the_parameters():
    fused, explicit, x = _pair("lsla", SHAPES[1])
    with torch.inference_mode():
        fused(x)  # tables built and cached
    with torch.no_grad():
        for m in (fused, explicit):
            m.dyn_scale.relative_position_bias_table.mul_(1.5)  # what an optimiser step does
            m.outer_bias.relative_position_bias_table.add_(0.01)
    with torch.inference_mode():
        torch.testing.assert_close(fused(x), explicit(x), rtol=1e-5, atol=1e-5)


def test_inference_keeps_the_padded_tables_between_calls():
    m = variants.create("lsla", 64, 2, 7, 3).eval()  # S, B_i, B_o and the shift masks
    x = torch.randn(2, 14, 14, 64)
    with torch.inference_mode():
        m(x)
        with torch.profiler.profile() as prof:
            m(x)
    ops = {event.name for event in prof.events()}
    assert "lsla_cpu::window_forward" in ops
    assert not ops & {"aten::index", "aten::new_full", "aten::copy_"}  # no gather, no padding


@pytest.mark.parametrize(
    ("case", "make"),
    [
        (
            "attention dropout",
            lambda: (variants.create("lsla", 64, 2, 7, 3, attn_drop=0.1), torch.float32),
        ),
        ("head_dim 8", lambda: (variants.create("lsla", 32, 4, 7, 3).eval(), torch.float32)),
        ("81 tokens", lambda: (variants.create("lsla", 64, 2, 9, 4).eval(), torch.float32)),
        ("bf16", lambda: (variants.create("lsla", 64, 2, 7, 3).eval(), torch.bfloat16)),
    ],
)
def test_what_the_kernel_declines_runs_the_explicit_path(case, make):
    m, dtype = make()
    m = m.to(dtype)
    x = torch.randn(1, 14, 14, m.dim, dtype=dtype)
    if m.training:
        m(x).sum().backward()
    else:
        with torch.inference_mode():
            m(x)
    assert m.kernels_used == {"explicit"}, case


def test_flop_counting_sees_the_explicit_ops():
    from torch.utils.flop_counter import FlopCounterMode

    m = variants.create("lsla", 64, 2, 7, 3).eval()
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        m(torch.randn(1, 14, 14, 64))
    assert m.kernels_used == {"explicit"}
    attention = 2 * 2 * (4 * 2 * 49 * 49 * 32)  # QK^T and AV of 4 windows, 2 heads, as FLOPs
    projections = 2 * 2 * 196 * 64 * 64  # q and proj
    assert counter.get_total_flops() == attention + projections


def test_a_traced_model_records_the_ops_not_the_kernel():
    """``torch.jit.trace`` cannot see a call outside the dispatcher: tracing takes the explicit
    path, so the traced graph computes what the module does."""
    m = away_from_init(variants.create("lsla", 64, 2, 7, 3).eval())
    x = torch.randn(1, 14, 14, 64)
    with torch.no_grad():
        traced = torch.jit.trace(m, x, check_trace=False)  # cached geometry: graphs differ
        want = m(x)
        torch.testing.assert_close(traced(torch.zeros_like(x) + x), want, rtol=1e-5, atol=1e-5)
        other = torch.randn(1, 14, 14, 64)
        torch.testing.assert_close(traced(other), m(other), rtol=1e-5, atol=1e-5)


@pytest.fixture
def fresh_loader(tmp_path, monkeypatch):
    """The kernel loaded anew (into an empty cache), and reloaded as before afterwards."""
    monkeypatch.setenv("LSLA_KERNEL_CACHE", str(tmp_path / "cache"))
    _lsla_cpu._load.cache_clear()
    _lsla_cpu._warn_once.cache_clear()
    yield tmp_path
    monkeypatch.undo()
    _lsla_cpu._load.cache_clear()
    _lsla_cpu._warn_once.cache_clear()


def test_without_a_compiler_layers_run_the_explicit_path_with_one_warning(
    fresh_loader, monkeypatch
):
    monkeypatch.setattr(_cpu_build, "compiler", lambda: None)
    m = variants.create("lsla", 64, 2, 7, 3).eval()
    with pytest.warns(RuntimeWarning) as caught, torch.inference_mode():
        m(torch.randn(1, 14, 14, 64))
        m(torch.randn(1, 14, 14, 64))
    assert m.kernels_used == {"explicit"}
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "no C++ compiler found" in message and "CXX" in message and "\n" not in message


def test_a_failed_build_says_why_in_one_line(fresh_loader, monkeypatch):
    broken = fresh_loader / "broken.cpp"
    broken.write_text("this is not C++\n")
    monkeypatch.setattr(_lsla_cpu, "SOURCE", broken)
    reason = _lsla_cpu.why_unavailable()
    assert reason is not None and "broken.cpp" in reason and "failed" in reason
    assert "\n" not in reason


def test_the_switch_turns_it_off_without_a_warning(fresh_loader, monkeypatch):
    monkeypatch.setenv(_lsla_cpu.SWITCH, "0")
    m = variants.create("lsla", 64, 2, 7, 3).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with torch.inference_mode():
            m(torch.randn(1, 14, 14, 64))
    assert m.kernels_used == {"explicit"}
    assert _lsla_cpu.why_unavailable() == f"{_lsla_cpu.SWITCH}=0 turns it off"


def test_a_build_is_cached_per_source_and_reused(fresh_loader):
    assert _lsla_cpu.why_unavailable() is None
    built = list((fresh_loader / "cache").glob("lsla_cpu_*"))
    assert len(built) == 1
    stamp = built[0].stat().st_mtime_ns
    _lsla_cpu._load.cache_clear()
    assert _lsla_cpu.why_unavailable() is None
    assert [p.stat().st_mtime_ns for p in (fresh_loader / "cache").glob("lsla_cpu_*")] == [stamp]


def test_a_change_to_an_included_header_builds_anew(fresh_loader):
    source, header = fresh_loader / "k.cpp", fresh_loader / "k.h"
    source.write_text('#include "k.h"\nextern "C" int f() { return K; }\n')
    header.write_text("#define K 1\n")
    assert _cpu_build.build_and_load(source).f() == 1
    header.write_text("#define K 2\n")
    assert _cpu_build.build_and_load(source).f() == 2
    assert len(list((fresh_loader / "cache").glob("k_*"))) == 2


def test_a_second_derivative_is_refused_not_silently_wrong():
    """The kernel's backward is outside autograd: differentiating it again is an error."""
    m = variants.create("lsla", 64, 2, 7, 3)
    x = torch.randn(1, 14, 14, 64, requires_grad=True)
    (grad,) = torch.autograd.grad(m(x).square().sum(), x, create_graph=True)
    assert m.kernels_used == {"fused_cpu"}
    with pytest.raises(RuntimeError, match="once_differentiable"):
        grad.sum().backward()


@pytest.mark.parametrize(("rows", "r0", "grid"), [(1, 0, (6, 5)), (2, 3, (6, 5)), (3, 4, (7, 9))])
def test_offsets_fold_equals_the_adjoint_of_the_table_views(rows, r0, grid, monkeypatch):
    """Global attention's table gradients: the kernel's one pass equals torch's adjoint of the
    views (two ``unfold_backward``), wherever the rows sit; it declines float64 and threads
    (one part per head) change no bit."""
    from torch.ops import aten

    H, W = grid
    g = torch.randn(3, rows, W, H, W)
    expected = torch.randn(3, 2 * H - 1, 2 * W - 1)
    into = expected.clone()
    adjoint = aten.unfold_backward(g, [3, rows, 2 * W - 1, H], 2, W, 1)
    adjoint = aten.unfold_backward(adjoint, [3, rows + H - 1, 2 * W - 1], 1, H, 1)
    expected[:, r0 : r0 + rows + H - 1] += adjoint
    assert _lsla_cpu.fold_onto_offsets(g, into, grid, r0)
    torch.testing.assert_close(into, expected, rtol=1e-5, atol=1e-5)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
    again = into.clone()
    assert _lsla_cpu.fold_onto_offsets(g, again, grid, r0)
    one = into.clone()
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert _lsla_cpu.fold_onto_offsets(g, one, grid, r0)
    assert torch.equal(again, one)
    assert not _lsla_cpu.fold_onto_offsets(g.double(), into.double(), grid, r0)
    assert not _lsla_cpu.fold_onto_offsets(g, into, grid, H)  # past the table's last row


def test_global_core_gradients_in_fp32_equal_the_op_by_op_path(monkeypatch):
    """Global attention under autograd with the kernel's fold (fp32): every gradient as the
    op-by-op path's, over several chunks of query rows."""
    import variants._lsla_global as lsla_global

    monkeypatch.setattr(lsla_global, "GLOBAL_CHUNK_ELEMENTS", 2 * 3 * 7 * 63 * 2)  # 2 rows
    folded, fold = [], _lsla_cpu.fold_onto_offsets

    def spy(*args):
        folded.append(fold(*args))
        return folded[-1]

    monkeypatch.setattr(_lsla_cpu, "fold_onto_offsets", spy)
    torch.manual_seed(0)
    m = away_from_init(variants.create("lsla", 48, 3, 4, 0, window="global"))
    results = results_by_path(m, torch.randn(2, 9, 7, 48), "_core_applies")
    assert len(folded) == 3 * 5 and all(folded)  # S, B_i, B_o; 5 chunks of rows
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
