"""Every registered variant (and timm's Swin block as the external reference), forward and
forward+backward, at two Swin-T-like feature maps. New variants are picked up automatically."""

from __future__ import annotations

import pytest
import torch
from timm.models.swin_transformer import SwinTransformerBlock

import variants
from benchmarks.conftest import run_benchmark, step
from harness.backbone import BackboneConfig, Block

DIM, HEADS, WINDOW, BATCH = 96, 3, 7, 4
CASES = [(14, 7), (28, 7), (16, 4)]  # (side, window): 4 / 16 windows of 49, 16 windows of 16
MODES = ["fwd", "fwd_bwd"]


def _case_id(case):
    return f"{case[0]}x{case[0]}-M{case[1]}"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASES, ids=_case_id)
@pytest.mark.parametrize("name", variants.names())
def test_attention(benchmark, device, name, case, mode):
    side, window = case
    torch.manual_seed(0)
    attn = variants.create(name, DIM, HEADS, window, window // 2).to(device)
    attn.train(mode != "fwd")
    x = torch.randn(BATCH, side, side, DIM, device=device)
    run_benchmark(
        benchmark,
        step(attn, x, mode),
        device,
        group=f"attention-{side}x{side}-M{window}-{mode}",
        kind="attention",
        variant=name,
        side=side,
        window=window,
        mode=mode,
        tokens=side * side,
        batch=BATCH,
        params=sum(p.numel() for p in attn.parameters()),
    )


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("impl", ["timm_swin", "swin", "lsla"])
def test_block(benchmark, device, impl, mode):
    side = 28
    torch.manual_seed(0)
    if impl == "timm_swin":
        block = SwinTransformerBlock(
            DIM, (side, side), HEADS, window_size=WINDOW, shift_size=WINDOW // 2
        )
    else:
        block = Block(DIM, HEADS, WINDOW, WINDOW // 2, BackboneConfig(attn=impl), drop_path=0.0)
    block = block.to(device).train(mode != "fwd")
    x = torch.randn(BATCH, side, side, DIM, device=device)
    run_benchmark(
        benchmark,
        step(block, x, mode),
        device,
        group=f"block-{mode}",
        kind="block",
        variant=impl,
        side=side,
        window=WINDOW,
        mode=mode,
        batch=BATCH,
    )
