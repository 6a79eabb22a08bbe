"""Datasets, one file each: IP102, Mini-ImageNet and the embedded stand-ins (digits, mnist5k).

``harness/datasets/_registry.py`` says what a dataset file provides; ``harness.data`` builds the
split a run asks for. Nothing here imports the experiment config, so the config can check
``data.name`` and a dataset's own keys when an experiment file loads.
"""

from harness.datasets._images import DataError
from harness.datasets._registry import DatasetSpec, NoOptions, get, names, register

__all__ = ["DataError", "DatasetSpec", "NoOptions", "get", "names", "register"]
