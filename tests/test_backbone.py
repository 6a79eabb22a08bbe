"""Backbone presets: exact parameter/MAC targets, timm registry and weight parity, small inputs."""

from __future__ import annotations

import pytest
import timm
import torch

from harness import models
from harness.measure import count_flops, count_params
from harness.timm_compat import load_timm_swin

# exact parameter counts with 102 classes (1000 for the timm reference)
PARAMS_102 = {
    "swin_t_ref": 27_597_792,
    "vit_lsla_t": 23_360_772,
    "vit_lsla_t_r3": 19_043_268,
    "vit_lsla_t_swin": 27_636_048,
    "vit_lsla_t_qxv": 25_521_732,
}
# GMACs at 224 (design targets; +-1%)
GMACS = {
    "swin_t_ref": 4.49,
    "vit_lsla_t": 3.93,
    "vit_lsla_t_r3": 3.24,
    "vit_lsla_t_swin": 4.63,
    "vit_lsla_t_qxv": 4.28,
}


@pytest.mark.parametrize("name", sorted(PARAMS_102))
def test_parameter_counts_are_exact(name):
    model = timm.create_model(name, num_classes=102)
    assert count_params(model) == PARAMS_102[name]
    assert (
        f"{count_params(model) / 1e6:.2f}"
        == {
            "swin_t_ref": "27.60",
            "vit_lsla_t": "23.36",
            "vit_lsla_t_r3": "19.04",
            "vit_lsla_t_swin": "27.64",
            "vit_lsla_t_qxv": "25.52",
        }[name]
    )


def test_swin_t_ref_matches_timm_swin_tiny_param_count():
    ours = timm.create_model("swin_t_ref")
    ref = timm.create_model("swin_tiny_patch4_window7_224")
    assert count_params(ours) == count_params(ref) == 28_288_354


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(GMACS))
def test_macs_match_targets(name):
    macs = count_flops(timm.create_model(name, num_classes=102), 224) / 1e9
    assert macs == pytest.approx(GMACS[name], rel=0.01)


def test_swin_t_ref_macs_equal_timm_and_fused_attention_is_counted():
    ours = count_flops(timm.create_model("swin_t_ref", num_classes=102), 224)
    ref = count_flops(timm.create_model("swin_tiny_patch4_window7_224", num_classes=102), 224)
    assert ours == ref
    assert ours / 1e9 == pytest.approx(4.49, rel=0.01)


def test_lsla_saves_the_k_and_v_projections():
    """QKV -> QXX removes 2 C^2 + 2 C per block; the layouts are otherwise identical."""
    swin = models.create("vit_lsla_t_qkv", num_classes=102)
    lsla = models.create("vit_lsla_t", num_classes=102)
    cfg = lsla.cfg
    saved = sum(d * (2 * c * c + 2 * c) for d, c in zip(cfg.depths, cfg.dims, strict=True))
    assert count_params(swin) - count_params(lsla) == saved


def test_timm_swin_weights_give_identical_logits():
    torch.manual_seed(0)
    ref = timm.create_model("swin_tiny_patch4_window7_224", num_classes=102).eval()
    with torch.no_grad():  # random, non-default values everywhere (norms, biases, tables)
        for p in ref.parameters():
            p.add_(0.02 * torch.randn_like(p))
    ours = timm.create_model("swin_t_ref", num_classes=102).eval()
    load_timm_swin(ours, ref)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        diff = (ours(x) - ref(x)).abs().max().item()
    assert diff < 1e-4


def test_loading_into_a_mismatched_model_names_the_keys():
    ref = timm.create_model("swin_tiny_patch4_window7_224", num_classes=10)
    with pytest.raises(ValueError, match="missing|unexpected|shape"):
        load_timm_swin(models.create("vit_lsla_t", num_classes=10), ref)


@pytest.mark.parametrize("name", sorted(models.PRESETS))
def test_every_preset_runs_at_64px(name):
    model = timm.create_model(name, num_classes=7).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 64))
    assert out.shape == (1, 7) and torch.isfinite(out).all()


def test_preset_accepts_another_variant_and_switches():
    m = timm.create_model(
        "vit_lsla_micro", num_classes=3, attn="swin", attn_switches={"window": "window"}
    )
    attn = m.attention_modules()[1][1]
    assert attn.cfg.form == "qkv" and attn.cfg.window == "window" and attn.shift_size == 0


def test_alternating_shift_per_block():
    m = models.create("vit_lsla_t", num_classes=10)
    shifts = [a.shift_size for _, a in m.attention_modules()]
    assert shifts == [0, 3] * 6


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(name="vit_lsla_tt"), "did you mean 'vit_lsla_t'"),
        (dict(name="vit_lsla_t", depth=3), "unknown model option 'depth'"),
        (dict(name="vit_lsla_t", stem="patch8"), "stem='patch8'"),
        (dict(name="vit_lsla_t", attn="lsal"), "did you mean"),
        (dict(name="vit_lsla_t", pretrained=True), "no pretrained weights"),
    ],
)
def test_bad_model_arguments_are_named(kwargs, fragment):
    with pytest.raises((KeyError, ValueError)) as info:
        models.create(**kwargs)
    assert fragment in str(info.value)


def test_training_step_updates_every_parameter():
    # 64 px so the last stage is 2x2: on a 1x1 map softmax over one key is constant and W_Q
    # (rightly) gets no gradient, in timm's Swin as well
    torch.manual_seed(0)
    m = models.create("vit_lsla_micro", num_classes=4)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    loss = torch.nn.functional.cross_entropy(m(torch.randn(4, 3, 64, 64)), torch.arange(4))
    loss.backward()
    opt.step()
    unchanged = [n for n, p in m.named_parameters() if torch.equal(p, before[n])]
    assert not unchanged, unchanged


@pytest.mark.parametrize("attn", ["swin", "msa"])
def test_fused_and_explicit_attention_count_the_same_macs(attn):
    """SDPA's CPU kernel has no built-in formula; ours must match the explicit matmuls."""
    fused = models.create("vit_lsla_micro", attn=attn, num_classes=10)
    explicit = models.create(
        "vit_lsla_micro", attn=attn, num_classes=10, attn_switches={"fused": False}
    )
    assert count_flops(fused, 64) == count_flops(explicit, 64) > 0


@pytest.mark.parametrize("img", [64, 96, (96, 160)], ids=str)
def test_small_input_window_clamping_and_padding_match_timm(img):
    """timm built for a small input pads some stages and clamps others to the map; ours does the
    same at run time, so timm's (smaller) tables embedded in ours give the same logits."""
    torch.manual_seed(0)
    ref = timm.create_model("swin_tiny_patch4_window7_224", img_size=img, num_classes=10).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(0.02 * torch.randn_like(p))
    ours = timm.create_model("swin_t_ref", num_classes=10).eval()
    load_timm_swin(ours, ref)
    x = torch.randn(2, 3, *((img, img) if isinstance(img, int) else img))
    with torch.no_grad():
        assert (ours(x) - ref(x)).abs().max().item() < 1e-4
