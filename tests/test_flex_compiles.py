"""flex_attention's compiled graphs: a bounded number across a model's shapes, and the explicit
path (recorded as such) once they run out, never flex run eager and unfused under its name.

Graphs are counted with dynamo's "eager" backend, which compiles in milliseconds: the guards and
recompiles are dynamo's, the same under inductor.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch._dynamo.utils import counters

from harness import models
from tests.kernels import TRAIN_AND_EVAL, allow_flex_backward_on_cpu, train_or_evaluate
from variants import _lsla_flex
from variants._lsla_kernels import KernelPaths
from variants.lsla import LSLAAttention

SHIFTED = dict(depths=(2, 2), dims=(16, 32), heads=(1, 2), img_size=64)  # W and SW blocks


@pytest.fixture
def flex_region(monkeypatch):
    """A fresh compiled region per test, on the eager backend."""
    torch._dynamo.reset()
    monkeypatch.setattr(_lsla_flex, "BACKEND", "eager")
    monkeypatch.setattr(_lsla_flex, "_compiled", None)
    monkeypatch.setattr(_lsla_flex, "_gave_up", False)
    counters.clear()
    yield
    torch._dynamo.reset()


def _on_flex(model):
    """Every LSLA layer on flex (CPU: forced, as on CUDA), while flex is usable."""
    layers = [m for m in model.modules() if isinstance(m, LSLAAttention)]
    for layer in layers:
        layer._cpu_kernel_applies = lambda q, geo: False
        layer._flex_applies = lambda q: _lsla_flex.usable()
        layer.kernels_used.clear()  # what ran before, on the CPU's own kernels
    return layers


def _graphs() -> int:
    return counters["stats"]["unique_graphs"]


def _graphs_through_training_and_evaluation(model) -> list[int]:
    """The graphs compiled so far after each step of the CUDA test's schedule; a warning that
    flex ran eager or gave up fails the test, a torch refusing flex's backward on CPU skips it."""
    import warnings

    seen = []
    with warnings.catch_warnings():
        warnings.filterwarnings("error", ".*flex_attention")  # run eager, or given up
        for batch, train in TRAIN_AND_EVAL:
            try:
                train_or_evaluate(model, batch, train, "cpu")
            except NotImplementedError as e:  # a torch whose CPU check moved elsewhere
                pytest.skip(f"flex's backward is refused on CPU by this torch: {e}")
            seen.append(_graphs())
    return seen


def test_flex_compiles_no_more_graphs_for_a_further_batch_size(flex_region):
    """Static shapes took one graph per layer shape and batch size (7 per batch in vit_lsla_t,
    dynamo's limit of 8 hit at the second batch size); dynamic after the first, a third batch
    size compiles nothing."""
    torch.manual_seed(0)
    model = models.create("vit_lsla_micro", num_classes=10, **SHIFTED).eval()
    layers = _on_flex(model)
    seen = []
    with torch.inference_mode():
        for batch in (2, 3, 5, 2):
            model(torch.randn(batch, 3, 64, 64))
            seen.append(_graphs())
    assert seen[0] == 4  # stages 1 and 2, W and SW blocks: different closures and shapes
    assert seen[1] <= seen[0] + 2 and seen[3] == seen[2] == seen[1]
    assert set().union(*(layer.kernels_used for layer in layers)) == {"flex"}


def test_flex_keeps_its_graphs_through_training_and_evaluation(flex_region, monkeypatch):
    """The CUDA test's schedule (several batch sizes, with and without autograd, bf16 autocast)
    on CPU: training compiles the 4 graphs and 2 for dynamic shapes, evaluation 4 more (grad
    mode is guarded on), a further batch size in either none; flex never gives up."""
    allow_flex_backward_on_cpu(monkeypatch)
    torch.manual_seed(0)
    model = models.create("vit_lsla_micro", num_classes=10, **SHIFTED)
    layers = _on_flex(model)
    seen = _graphs_through_training_and_evaluation(model)
    assert seen == [4, 6, 6, 10, 10, 10]
    assert set().union(*(layer.kernels_used for layer in layers)) == {"flex"}
    assert _lsla_flex.usable()


def test_flex_compiles_global_attention_with_its_tables_per_offset(flex_region, monkeypatch):
    """Global attention's score_mod computes each pair's offset from its token indices:
    dynamo traces it in one graph per stage (no shifted blocks here), two more for dynamic
    shapes and two for evaluation, and flex never gives up (the maths against the explicit
    path: ``test_kernels.py``)."""
    allow_flex_backward_on_cpu(monkeypatch)
    torch.manual_seed(0)
    switches = dict(window="global")
    model = models.create("vit_lsla_micro", num_classes=10, attn_switches=switches, **SHIFTED)
    layers = _on_flex(model)
    seen = _graphs_through_training_and_evaluation(model)
    assert seen == [2, 4, 4, 6, 6, 6]  # one graph per stage; dynamic shapes; evaluation
    assert set().union(*(layer.kernels_used for layer in layers)) == {"flex"}
    assert _lsla_flex.usable()


def test_flex_gives_way_to_the_explicit_path_once_its_graphs_run_out(flex_region, monkeypatch):
    monkeypatch.setattr(_lsla_flex, "RECOMPILE_LIMIT", 1)
    torch.manual_seed(0)
    model = models.create("vit_lsla_micro", num_classes=10, **SHIFTED).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        reference = model(x)  # the CPU's own kernels
        layers = _on_flex(model)
        cuda_like = SimpleNamespace(is_cuda=True)
        assert KernelPaths._flex_applies(layers[0], cuda_like)
        with pytest.warns(UserWarning, match="RECOMPILE_LIMIT"):
            flex_then_explicit = model(x)  # one graph, then the next layer's shape needs another
    assert set().union(*(layer.kernels_used for layer in layers)) == {"flex", "explicit"}
    torch.testing.assert_close(flex_then_explicit, reference, rtol=1e-5, atol=1e-5)
    assert not KernelPaths._flex_applies(layers[0], cuda_like)  # off for the process
    _on_flex(model)
    with torch.inference_mode():
        model(x)
    assert set().union(*(layer.kernels_used for layer in layers)) == {"explicit"}


def test_flex_gives_way_to_the_explicit_path_where_it_fails_to_compile(flex_region, monkeypatch):
    def failing_backend(gm, example_inputs):
        raise RuntimeError("no code for this graph")

    monkeypatch.setattr(_lsla_flex, "BACKEND", failing_backend)
    torch.manual_seed(0)
    model = models.create("vit_lsla_micro", num_classes=10, **SHIFTED).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        reference = model(x)
        layers = _on_flex(model)
        with pytest.warns(UserWarning, match="failed to compile .*no code for this graph"):
            out = model(x)
    assert set().union(*(layer.kernels_used for layer in layers)) == {"explicit"}
    torch.testing.assert_close(out, reference, rtol=1e-5, atol=1e-5)
    assert not _lsla_flex.usable()


def test_an_older_torch_gets_its_process_wide_limit_raised(monkeypatch):
    """torch before 2.14 has no per-region limit: flex's graphs count against dynamo's global
    one (8 by default), which is raised to RECOMPILE_LIMIT, never lowered."""
    from torch._dynamo import config  # noqa: PLC0415

    def old_compile(model, *, fullgraph=False, dynamic=None, backend="inductor"):
        return model

    monkeypatch.setattr(config, "cache_size_limit", 8)
    assert _lsla_flex.region_options(old_compile) == {}
    assert config.cache_size_limit == _lsla_flex.RECOMPILE_LIMIT
    monkeypatch.setattr(config, "cache_size_limit", 1000)
    _lsla_flex.region_options(old_compile)
    assert config.cache_size_limit == 1000
    assert _lsla_flex.region_options(torch.compile) == dict(
        recompile_limit=_lsla_flex.RECOMPILE_LIMIT, isolate_recompiles=True
    )
