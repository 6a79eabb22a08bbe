"""The largest inference maps run in row chunks where a whole map would be mapped fresh (above
glibc's largest mmap threshold), with the whole map's results (each row's arithmetic is the
same; a GEMM library may still block rows differently, so within fp32 round-off)."""

from __future__ import annotations

import pytest
import torch

import variants
import variants._inference_chunks as chunks
from harness.mlp import Mlp
from harness.stem import HAS_ONEDNN_CONV, ConvStem
from variants._inference_chunks import rows_per_chunk
from variants._linear import HAS_ONEDNN_LINEAR


def test_maps_up_to_the_threshold_run_whole_and_larger_ones_in_chunks_of_about_4_mb():
    assert rows_per_chunk(8192, 4096) is None  # exactly 32 MB
    assert rows_per_chunk(8193, 4096) == 1024  # 4 MB of rows
    assert rows_per_chunk(100_000, 1536) == 2731  # the nearest to 4 MB
    assert rows_per_chunk(20, 10 << 20) == 1  # one row above 4 MB alone
    assert rows_per_chunk(1, 40 << 20) is None  # one row: nothing to split


def _ops(fn) -> list[str]:
    with torch.inference_mode(), torch.profiler.profile() as prof:
        fn()
    return [event.name for event in prof.events()]


@pytest.fixture
def small_threshold(monkeypatch):
    """Thresholds for test-sized maps: chunked above 64 KB, in 16 KB chunks."""
    monkeypatch.setattr(chunks, "FRESH_MAP_BYTES", 64 << 10)
    monkeypatch.setattr(chunks, "CHUNK_BYTES", 16 << 10)


@pytest.mark.skipif(not HAS_ONEDNN_LINEAR, reason="this torch build has no oneDNN linear")
def test_mlp_chunks_its_hidden_map_with_the_same_result(small_threshold):
    torch.manual_seed(0)
    mlp = Mlp(32, 128).eval()
    x = torch.randn(2, 10, 10, 32)  # 200 rows x 512 B of hidden map: 100 KB, 32 rows a chunk
    with torch.inference_mode():
        whole = mlp._onednn_forward(x)
        chunked = mlp(x)
    torch.testing.assert_close(chunked, whole, rtol=1e-6, atol=1e-6)
    assert chunked.shape == (2, 10, 10, 32)
    assert _ops(lambda: mlp(x)).count("mkldnn::_linear_pointwise") == 2 * 7  # ceil(200 / 32)
    assert _ops(lambda: mlp(x[:, :5])).count("mkldnn::_linear_pointwise") == 2  # 50 KB: whole


@pytest.mark.skipif(not HAS_ONEDNN_CONV, reason="this torch build has no oneDNN convolution")
def test_stem_runs_images_in_groups_with_the_same_result(small_threshold):
    torch.manual_seed(0)
    stem = ConvStem(3, 16).eval()  # conv1: 8 x 16 x 16 floats, 8 KB an image
    x = torch.randn(10, 3, 32, 32)  # 80 KB: groups of 2 images (16 KB)
    with torch.inference_mode():
        chunked = stem(x)
        channels_last = x.contiguous(memory_format=torch.channels_last)
        convs = stem._onednn_convs(channels_last, stem._folded_weights())
        whole = stem.norm(convs.permute(0, 2, 3, 1))
    torch.testing.assert_close(chunked, whole, rtol=1e-6, atol=1e-6)
    assert chunked.is_contiguous()
    assert _ops(lambda: stem(x)).count("mkldnn::_convolution_pointwise") == 2 * 5
    assert _ops(lambda: stem(x[:8])).count("mkldnn::_convolution_pointwise") == 2  # 64 KB


@pytest.mark.skipif(not HAS_ONEDNN_LINEAR, reason="this torch build has no oneDNN linear")
@pytest.mark.parametrize("name", ["swin", "lsla"])
def test_window_attention_runs_images_in_groups_with_the_same_result(small_threshold, name):
    torch.manual_seed(0)
    attn = variants.create(name, dim=32, num_heads=2, window_size=4, shift_size=2).eval()
    x = torch.randn(6, 8, 8, 32)  # input projection: 64 tokens x 96 (Swin) or 32 (LSLA) floats
    with torch.inference_mode():
        grouped = attn(x)
        whole = torch.cat([attn(x[i : i + 1]) for i in range(6)])  # each image alone: whole
    torch.testing.assert_close(grouped, whole, rtol=1e-6, atol=1e-6)
    # Swin's input projection: 24 KB an image, 144 KB in all, so groups of one image (the
    # nearest to 16 KB), each with its two linears; LSLA's: 8 KB an image, 48 KB, all at once
    linears = _ops(lambda: attn(x)).count("mkldnn::_linear_pointwise")
    assert linears == (2 * 6 if name == "swin" else 2)
