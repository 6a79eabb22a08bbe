"""Datasets come from a registry: one file per dataset, its own keys checked when a file loads."""

from __future__ import annotations

import pytest

import tests.toy_dataset  # noqa: F401  registers 'toy_bars', as a new file in harness/datasets would
from harness import datasets
from harness.config import ConfigError
from harness.run import execute
from tests.test_train import tiny


def test_shipped_datasets_are_discovered():
    assert {"digits", "mnist5k", "ip102", "mini_imagenet"} <= set(datasets.names())
    assert datasets.get("digits").note and not datasets.get("ip102").note
    with pytest.raises(KeyError, match="'imagenett' is not valid .did you mean 'mini_imagenet'"):
        datasets.get("imagenett")


def test_a_dataset_in_one_file_is_checked_at_load_and_trains(tmp_path):
    base = ("data.name='toy_bars'", "data.img_size=16", "measure.throughput=false")
    with pytest.raises(ConfigError, match=r"data.per_class=1 is out of range \[2, inf\]"):
        tiny(tmp_path, *base, "data.per_class=1")
    with pytest.raises(ConfigError, match="unknown key 'per_klass' for data.name='toy_bars'"):
        tiny(tmp_path, *base, "data.per_klass=3")
    cfg = tiny(tmp_path, *base, "data.per_class=24", "train.epochs=1")[0]
    assert cfg.data.options == {"per_class": 24}
    record = execute(cfg)
    assert record["status"] == "finished" and record["data"]["train_size"] == 48
    assert record["dataset_note"] == "generated toy dataset (tests)"


def test_dataset_keys_of_another_dataset_are_rejected(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'train_per_class' for data.name='digits'"):
        tiny(tmp_path, "data.train_per_class=3")
