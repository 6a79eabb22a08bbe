"""What inference keeps between calls (the folded stem, the attention's tables, the packed linear
weights) is rebuilt whenever its parameters may have changed: after any change torch counts,
and on every call for parameters made under ``torch.inference_mode()``, which keep no version
counter to tell."""

from __future__ import annotations

import timm
import torch

import harness.models  # noqa: F401  (registers the presets in timm)


def _pair(img: int):
    torch.manual_seed(0)
    ref = timm.create_model("vit_lsla_t", img_size=img).eval()
    with torch.inference_mode():
        made_there = timm.create_model("vit_lsla_t", img_size=img).eval()
        made_there.load_state_dict(ref.state_dict())
    return ref, made_there


def test_a_model_made_under_inference_mode_runs_and_sees_every_change():
    ref, made_there = _pair(64)
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        assert next(made_there.parameters()).is_inference()
        assert torch.equal(made_there(x), ref(x))
        for p in made_there.parameters():  # in place, where torch counts nothing
            p.mul_(0.9)
        for buf in made_there.buffers():
            if buf.is_floating_point():
                buf.mul_(1.1)
        changed = made_there(x)
    with torch.no_grad():
        for p in ref.parameters():
            p.mul_(0.9)
        for buf in ref.buffers():
            if buf.is_floating_point():
                buf.mul_(1.1)
    with torch.inference_mode():
        assert torch.equal(changed, ref(x))


def test_counted_changes_reach_every_kept_result():
    ref, _ = _pair(64)
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        before = ref(x)  # builds and keeps the folded stem, tables and packed weights
    fresh = timm.create_model("vit_lsla_t", img_size=64).eval()
    ref.load_state_dict(fresh.state_dict())
    with torch.inference_mode():
        after = ref(x)
        assert not torch.equal(after, before)
        assert torch.equal(after, fresh(x))
