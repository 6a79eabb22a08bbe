"""Dataset loaders on synthetic JPEGs in the real layouts, and every bad-input error."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.config import DataConfig, TrainConfig
from harness.data import build_dataset
from harness.datasets import DataError
from harness.datasets.embedded import split_indices
from harness.datasets.ip102 import ip102
from harness.datasets.mini_imagenet import mini_imagenet
from harness.transforms import make_mixup
from tests.fakedata import make_ip102, make_mini_csv, make_mini_folders


@pytest.fixture(scope="module")
def ip102_root(tmp_path_factory):
    return make_ip102(tmp_path_factory.mktemp("ip102"))


def test_ip102_reads_splits_labels_and_crlf_class_names(ip102_root):
    train = ip102(ip102_root, "train")
    assert len(train) == 6 and len(ip102(ip102_root, "test")) == 4
    assert train.num_classes == 102 and len(train.classes) == 102
    assert train.classes[0] == "pest number 1" and train.classes[-1] == "pest number 102"
    img, label = train[1]
    assert img.mode == "RGB" and label == 7


def test_ip102_through_build_dataset_gives_tensors(ip102_root):
    ds = build_dataset(
        DataConfig(name="ip102", root=str(ip102_root), img_size=16), TrainConfig(), "val"
    )
    x, y = ds[0]
    assert x.shape == (3, 16, 16) and isinstance(y, int)


@pytest.mark.parametrize(
    "mutate, fragment",
    [
        (lambda r: None, None),
        (lambda r: (r / "val.txt").unlink(), "missing 'val.txt'"),
        (
            lambda r: (r / "val.txt").write_text("00006.jpg 0\n99999.jpg 3\n"),
            "val.txt:2: image '99999.jpg' not found",
        ),
        (
            lambda r: (r / "val.txt").write_text("00006.jpg 102\n"),
            "val.txt:1: label 102 out of range 0..101",
        ),
        (
            lambda r: (r / "val.txt").write_text("00006.jpg\n"),
            "val.txt:1: expected '<image> <label>'",
        ),
        (
            lambda r: (r / "classes.txt").write_text("\n".join(f"{i} c" for i in range(1, 102))),
            "class-count mismatch: found 101 classes",
        ),
    ],
)
def test_ip102_bad_input_is_named(tmp_path, mutate, fragment):
    root = make_ip102(tmp_path / "ip")
    mutate(root)
    if fragment is None:
        assert len(ip102(root, "val")) == 3
        return
    with pytest.raises(DataError) as info:
        ip102(root, "val")
    assert fragment in str(info.value)


def test_missing_root_and_bad_split_are_named(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        ip102(tmp_path / "nope", "train")
    with pytest.raises(DataError, match="no dataset root given"):
        ip102(None, "train")
    with pytest.raises(ValueError, match="'dev' is not valid; choices: train, val, test"):
        ip102(tmp_path, "dev")


def test_corrupt_jpeg_fails_or_is_skipped_and_counted(tmp_path):
    root = make_ip102(tmp_path / "ip")
    bad = root / "images" / "00007.jpg"  # second line of val.txt
    bad.write_bytes(bad.read_bytes()[:40])  # truncated JPEG
    strict = ip102(root, "val")
    with pytest.raises(DataError, match="cannot decode image .*00007.jpg.*corrupt='skip'"):
        strict[1]
    lenient = ip102(root, "val", corrupt="skip")
    assert len(lenient) == 2 and lenient.skipped == [str(bad)]
    with pytest.raises(ValueError, match="corrupt='ignore' is not valid; choices: fail, skip"):
        ip102(root, "val", corrupt="ignore")


@pytest.mark.parametrize("maker", [make_mini_csv, make_mini_folders], ids=["csv", "folders"])
def test_mini_imagenet_resplit_is_seeded_recorded_and_disjoint(tmp_path, maker):
    root = maker(tmp_path / "mini", per_class=4)
    kw = dict(train_per_class=3, test_per_class=1, val_per_class=1)
    train = mini_imagenet(root, "train", split_seed=0, **kw)
    val = mini_imagenet(root, "val", split_seed=0, **kw)
    test = mini_imagenet(root, "test", split_seed=0, **kw)
    assert (len(train), len(val), len(test), train.num_classes) == (200, 100, 100, 100)
    files = [{p for p, _ in ds.samples} for ds in (train, val, test)]
    assert not (files[0] & files[1] or files[0] & files[2] or files[1] & files[2])
    assert np.bincount(train.targets).tolist() == [2] * 100
    assert train.split_info["counts"] == {"train": 200, "val": 100, "test": 100}
    without_val = mini_imagenet(
        root, "test", split_seed=0, train_per_class=3, test_per_class=1, val_per_class=0
    )
    assert test.samples == without_val.samples  # carving val out of train leaves test as it was
    again = mini_imagenet(root, "train", split_seed=0, **kw)
    other = mini_imagenet(root, "train", split_seed=1, **kw)
    assert again.samples == train.samples
    assert again.split_info["sha256"] == train.split_info["sha256"]
    assert other.split_info["sha256"] != train.split_info["sha256"]
    assert len(train.split_files["val"]) == 100 and len(train.split_files["test"]) == 100


def test_mini_imagenet_errors(tmp_path):
    root = make_mini_folders(tmp_path / "m99", num_classes=99, per_class=2)
    with pytest.raises(DataError, match="class-count mismatch: found 99 classes, expected 100"):
        mini_imagenet(root, "train", train_per_class=1, test_per_class=1)
    root = make_mini_folders(tmp_path / "m100", per_class=2)
    with pytest.raises(DataError, match="has 2 images, fewer than .* = 3"):
        mini_imagenet(root, "train", train_per_class=2, test_per_class=1, val_per_class=1)
    csv_root = make_mini_csv(tmp_path / "csv", per_class=1)
    (csv_root / "images" / f"n{1000000:08d}{1:08d}.jpg").unlink()
    with pytest.raises(DataError, match=r"train.csv:2: image .* not found"):
        mini_imagenet(csv_root, "train", train_per_class=1, test_per_class=0)


def test_embedded_digits_splits_partition_and_are_stratified():
    labels = np.repeat(np.arange(10), 20)
    parts = [split_indices(labels, s, 0) for s in ("train", "val", "test")]
    merged = np.sort(np.concatenate(parts))
    assert np.array_equal(merged, np.arange(200))
    assert np.bincount(labels[parts[0]]).tolist() == [14] * 10
    ds = build_dataset(DataConfig(name="digits", limit_train=50), TrainConfig(), "train")
    assert len(ds) == 50 and len(set(ds.targets)) == 10
    x, _ = ds[0]
    assert x.shape == (3, 32, 32)


def test_paper_recipe_transforms_and_mixup():
    train = TrainConfig(
        recipe="paper",
        auto_augment="rand-m9-mstd0.5-inc1",
        reprob=0.25,
        hflip=0.5,
        mixup=0.8,
        cutmix=1.0,
        label_smoothing=0.1,
    )
    ds = build_dataset(DataConfig(name="digits", img_size=48), train, "train")
    assert ds[0][0].shape == (3, 48, 48)
    mixup = make_mixup(train, 10)
    x, y = mixup(torch.randn(4, 3, 48, 48), torch.tensor([0, 1, 2, 3]))
    assert y.shape == (4, 10) and torch.allclose(y.sum(1), torch.ones(4))
    assert make_mixup(TrainConfig(), 10) is None


@pytest.mark.parametrize("policy", ["rand-m9-mstd0.5-inc1", "original", "augmix-m5-w4-d2"])
def test_posterize_to_zero_bits_gives_a_black_image_not_a_crash(policy):
    """RandAugment's increasing posterize keeps 0 bits at magnitude 10, which m9 with mstd 0.5
    draws for about one image in a thousand (5 of 5,000 in the paper recipe): Pillow 13 refuses
    0 bits (a ValueError that stopped a paper-recipe run mid-epoch, and failed CI), Pillow
    before 13 gave a black image."""
    from PIL import Image, ImageOps
    from timm.data import auto_augment

    from harness.transforms import build_transform, posterize_any_bits

    train = TrainConfig(recipe="paper", auto_augment=policy)
    transform = build_transform(DataConfig(name="digits", img_size=48), train, True)
    stages = [t for t in transform.transforms if hasattr(t, "ops") or hasattr(t, "policy")]
    ops = [op for t in stages for op in getattr(t, "ops", [])]
    ops += [op for t in stages for sub in getattr(t, "policy", []) for op in sub]
    posterize = [op for op in ops if "Posterize" in op.name]
    assert posterize and all(op.aug_fn is posterize_any_bits for op in posterize)
    assert auto_augment.posterize is not posterize_any_bits  # timm's module left as it is
    img = Image.fromarray(np.arange(48 * 48 * 3, dtype=np.uint8).reshape(48, 48, 3))
    black = posterize_any_bits(img, 0)
    assert black.mode == img.mode and black.size == img.size and not np.asarray(black).any()
    assert np.array_equal(np.asarray(posterize_any_bits(img, 3)), ImageOps.posterize(img, 3))
    increasing = auto_augment.AugmentOp("PosterizeIncreasing", prob=1.0, magnitude=10)
    increasing.aug_fn = posterize_any_bits  # what build_transform does to its ops
    assert not np.asarray(increasing(img)).any()


def _append(path, lines):
    with open(path, "a") as f:
        f.write("".join(lines))


def test_ip102_repeated_lines_and_shared_images_are_errors(tmp_path):
    root = make_ip102(tmp_path / "twice")
    _append(root / "test.txt", (root / "test.txt").read_text().splitlines(keepends=True))
    with pytest.raises(
        DataError, match=r"4 image\(s\) listed more than once in test: '.*00009.jpg'"
    ):
        ip102(root, "train")
    root = make_ip102(tmp_path / "leak")
    _append(root / "test.txt", (root / "train.txt").read_text().splitlines(keepends=True)[:4])
    with pytest.raises(DataError, match=r"4 image\(s\) are in both train and test"):
        ip102(root, "val")


def test_mini_imagenet_repeated_csv_rows_are_dropped_and_splits_stay_disjoint(tmp_path, capsys):
    root = make_mini_csv(tmp_path / "mini", per_class=6)
    for name in ("train.csv", "test.csv"):
        rows = (root / name).read_text().splitlines(keepends=True)
        _append(root / name, rows[1:])  # every row listed twice
    train = mini_imagenet(root, "train", train_per_class=4, test_per_class=2, val_per_class=1)
    test = mini_imagenet(root, "test", train_per_class=4, test_per_class=2, val_per_class=1)
    assert not {p for p, _ in train.samples} & {p for p, _ in test.samples}
    assert len(train) == 300 and len(test) == 200
    assert "dropped" in capsys.readouterr().err


def test_mini_imagenet_file_under_two_labels_is_an_error(tmp_path):
    root = make_mini_csv(tmp_path / "mini", per_class=3)
    first = (root / "train.csv").read_text().splitlines()[1].split(",")[0]
    _append(root / "val.csv", [f"{first},n09999999\n"])
    with pytest.raises(DataError, match="listed under both"):
        mini_imagenet(root, "train", train_per_class=2, test_per_class=1)


def test_sixteen_bit_png_is_scaled_not_white(tmp_path):
    from PIL import Image

    from harness.datasets._images import load_rgb

    path = tmp_path / "grey16.png"
    Image.fromarray(np.full((8, 8), 32768, dtype=np.uint16)).save(path)
    assert Image.open(path).mode.startswith("I")
    pixels = np.asarray(load_rgb(path))
    assert pixels.shape == (8, 8, 3) and abs(int(pixels.mean()) - 128) <= 1


def test_decompression_bomb_is_named_and_skippable(tmp_path, monkeypatch):
    from PIL import Image

    root = make_ip102(tmp_path / "ip")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20)  # 12x12 test images exceed 2x this
    with pytest.raises(DataError, match=r"cannot decode image .*00006.jpg.*decompression bomb"):
        ip102(root, "val")[0]
    assert len(ip102(root, "val", corrupt="skip")) == 0


def test_mini_imagenet_csvs_with_images_in_class_folders(tmp_path):
    root = make_mini_csv(tmp_path / "mini", per_class=4)
    images = root / "images"
    for f in list(images.iterdir()):
        (images / f.name[:9]).mkdir(exist_ok=True)
        f.rename(images / f.name[:9] / f.name)  # images/<wnid>/<file>
    train = mini_imagenet(root, "train", train_per_class=3, test_per_class=1, val_per_class=1)
    assert len(train) == 200 and "/n0" in train.samples[0][0]
    (images / "n01000000" / "n0100000000000001.jpg").unlink()
    with pytest.raises(DataError, match="not found in .*nor in .*n01000000"):
        mini_imagenet(root, "train", train_per_class=3, test_per_class=1, val_per_class=1)
