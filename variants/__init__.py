"""Attention variants for the ViT-LSLA harness: one file per variant family.

Public API::

    import variants
    variants.names("lsa*")                     # registered presets, wildcard filter
    attn = variants.create("lsla", dim=96, num_heads=3, window_size=7, shift_size=3,
                           outer_op="mul")     # any switch can be overridden
    y = attn(x)                                # x, y: [B, H, W, C]

Adding a variant means adding one module here (or in a third-party package exposing it under the
entry-point group ``lsla.variants``); see ``variants/_registry.py`` for the contract.
"""

from variants._registry import (
    ENTRY_POINT_GROUP,
    VariantSpec,
    create,
    get,
    names,
    register,
    unregister,
    validate_choices,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "VariantSpec",
    "create",
    "get",
    "names",
    "register",
    "unregister",
    "validate_choices",
]
