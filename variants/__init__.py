"""Attention variants for the ViT-LSLA harness: one file per variant family.

Public API::

    import variants
    variants.names("lsa*")                     # registered presets, wildcard filter
    attn = variants.create("lsla", dim=96, num_heads=3, window_size=7, shift_size=3,
                           outer_op="mul")     # any switch can be overridden
    y = attn(x)                                # x, y: [B, H, W, C]

Adding a variant means adding one module here (or in a third-party package exposing it under the
entry-point group ``lsla.variants``); ``variants/_contract.py`` says what the class must be and
what it may declare.
"""

from variants._config import ConfigError, Pattern, Range
from variants._contract import AttentionRecord, AttentionRecorder, Capabilities
from variants._registry import (
    ENTRY_POINT_GROUP,
    VariantSpec,
    capabilities_of,
    create,
    get,
    names,
    register,
    resolve,
    unregister,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "AttentionRecord",
    "AttentionRecorder",
    "Capabilities",
    "ConfigError",
    "Pattern",
    "Range",
    "VariantSpec",
    "capabilities_of",
    "create",
    "get",
    "names",
    "register",
    "resolve",
    "unregister",
]
