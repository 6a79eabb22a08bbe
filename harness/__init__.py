"""ViT-LSLA research harness: models, data, training, measurement and the CLI.

Kept empty on purpose: ``harness.results`` must import without torch so that ``reports`` can run in
a thin environment. Import submodules explicitly (``import harness.models``).
"""
