"""Registry behaviour: discovery, presets, errors that name the bad value, entry points."""

from __future__ import annotations

import importlib.metadata
import sys
import types

import pytest
import torch

import variants
from variants import _registry

REQUIRED_PRESETS = ["msa", "swin", "qxv", "qxx", "lsa", "lsa_ds", "lsla"]


def test_required_presets_registered():
    assert set(REQUIRED_PRESETS) <= set(variants.names())


def test_names_wildcard_filters_and_sorts():
    assert variants.names("lsa*") == sorted(n for n in variants.names() if n.startswith("lsa"))
    assert "lsla" in variants.names("lsla*") and "swin" not in variants.names("lsla*")
    assert variants.names("nothing_matches_*") == []


@pytest.mark.parametrize(
    "name, switches",
    [
        (
            "msa",
            dict(form="qkv", scale="fixed", inner_bias=False, outer_bias=False, window="global"),
        ),
        (
            "swin",
            dict(form="qkv", scale="fixed", inner_bias=True, outer_bias=False, window="shifted"),
        ),
        ("lsa", dict(form="qxx", scale="fixed", inner_bias=True, outer_bias=False)),
        ("lsa_ds", dict(form="qxx", scale="dynamic", inner_bias=True, outer_bias=False)),
        (
            "lsla",
            dict(form="qxx", scale="dynamic", inner_bias=True, outer_bias=True, window="shifted"),
        ),
    ],
)
def test_preset_switch_values(name, switches):
    spec = variants.get(name)
    for key, value in switches.items():
        assert spec.switches[key] == value, (name, key)


def test_every_switch_is_settable_through_create():
    m = variants.create(
        "swin",
        24,
        3,
        4,
        2,
        form="qxx",
        scale="dynamic",
        scale_op="div",
        inner_bias=False,
        outer_bias=True,
        outer_op="mul",
        outer_init="zeros",
        window="window",
    )
    c = m.cfg
    assert (
        c.form,
        c.scale,
        c.scale_op,
        c.inner_bias,
        c.outer_bias,
        c.outer_op,
        c.outer_init,
        c.window,
    ) == ("qxx", "dynamic", "div", False, True, "mul", "zeros", "window")
    assert m.shift_size == 0  # window="window" never shifts
    assert m.q.out_features == 24 and m.inner_bias is None and m.outer_bias is not None


def test_unknown_name_lists_close_matches_and_all_names():
    with pytest.raises(KeyError) as info:
        variants.create("lsal", 24, 3, 4)
    msg = str(info.value)
    assert "'lsal' (did you mean 'lsa'?)" in msg
    for name in variants.names():
        assert name in msg


@pytest.mark.parametrize(
    "switches, fragment",
    [
        (dict(form="qkx"), "form='qkx'"),
        (dict(scale="dyn"), "'fixed', 'dynamic'"),
        (dict(window="sliding"), "'global', 'window', 'shifted'"),
        (dict(inner_bias="yes"), "inner_bias='yes'"),
        (dict(fom="qxx"), "did you mean 'form'"),
        (dict(attn_drop=1.5), "attn_drop=1.5"),
    ],
)
def test_bad_switches_name_value_and_choices(switches, fragment):
    with pytest.raises(ValueError, match=None) as info:
        variants.create("lsla", 24, 3, 4, **switches)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    "args, fragment",
    [
        ((25, 3, 4, 0), "dim=25"),
        ((24, 3, 0, 0), "window_size=0"),
        ((24, 3, 4, 4), "shift_size=4"),
    ],
)
def test_bad_geometry_is_reported(args, fragment):
    with pytest.raises(ValueError) as info:
        variants.create("swin", *args)
    assert fragment in str(info.value)


def _toy_class():
    from dataclasses import dataclass

    class ToyAttention(torch.nn.Module):
        """Identity attention used to exercise the registry."""

        @dataclass(frozen=True)
        class Config:
            gain: float = 1.0

        def __init__(self, dim, num_heads, window_size, shift_size=0, cfg=Config()):
            super().__init__()
            self.cfg = cfg
            self.w = torch.nn.Parameter(torch.ones(()))

        def forward(self, x):
            return x * self.w * self.cfg.gain

    return ToyAttention


def test_duplicate_name_is_an_error_naming_both_sources():
    with pytest.raises(ValueError, match="registered twice"):
        variants.register("lsla")(_toy_class())


def test_bad_registration_is_rejected():
    with pytest.raises(ValueError, match="must match"):
        variants.register("Bad-Name")
    with pytest.raises(TypeError, match="Config"):
        variants.register("no_config")(torch.nn.Identity)


def test_third_party_variant_via_entry_point(monkeypatch):
    module = types.ModuleType("toy_plugin_variants")
    toy = _toy_class()

    def load():
        variants.register("toy_plugin", gain=2.0)(toy)
        return toy

    ep = importlib.metadata.EntryPoint(
        "toy", "toy_plugin_variants:ToyAttention", variants.ENTRY_POINT_GROUP
    )
    monkeypatch.setitem(sys.modules, "toy_plugin_variants", module)
    monkeypatch.setattr(type(ep), "load", lambda self: load())
    real = importlib.metadata.entry_points
    monkeypatch.setattr(
        importlib.metadata,
        "entry_points",
        lambda group=None, **kw: (
            [ep] if group == variants.ENTRY_POINT_GROUP else real(group=group, **kw)
        ),
    )
    monkeypatch.setattr(_registry, "_loaded", False)
    try:
        assert "toy_plugin" in variants.names()
        m = variants.create("toy_plugin", 8, 2, 4)
        assert torch.equal(m(torch.ones(1, 2, 2, 8)), torch.full((1, 2, 2, 8), 2.0))
    finally:
        variants.unregister("toy_plugin")
