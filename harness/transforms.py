"""Training and evaluation transforms (timm's ``create_transform``) and batch mixing.

``paper``: the Swin/DeiT ImageNet recipe (RandomResizedCrop, flip, RandAugment
rand-m9-mstd0.5-inc1, random erasing 0.25, eval resize to 1/0.875 + centre crop), with mixup 0.8 /
cutmix 1.0 / label smoothing 0.1 applied per batch by ``make_mixup``. ``small``: a light recipe for
CPU runs on tiny images (mild random-resized crop, no flip, no mixing), eval resize only.
``exact``: no augmentation at all (training sees the eval transform), for the positive controls.
"""

from __future__ import annotations

from PIL import Image
from timm.data import (
    IMAGENET_DEFAULT_MEAN,
    IMAGENET_DEFAULT_STD,
    Mixup,
    auto_augment,
    create_transform,
)

from harness.config import DataConfig, TrainConfig


def build_transform(data: DataConfig, train: TrainConfig, is_training: bool):
    paper = train.recipe == "paper"
    common = dict(
        input_size=data.img_size,
        interpolation="bicubic",
        mean=IMAGENET_DEFAULT_MEAN,
        std=IMAGENET_DEFAULT_STD,
    )
    if not is_training or train.recipe == "exact":
        return create_transform(is_training=False, crop_pct=0.875 if paper else 1.0, **common)
    return with_zero_bit_posterize(
        create_transform(
            is_training=True,
            scale=(0.08, 1.0) if paper else (0.7, 1.0),
            ratio=(3 / 4, 4 / 3) if paper else (0.9, 1.1),
            hflip=train.hflip,
            color_jitter=0.4 if paper else 0.0,
            auto_augment=train.auto_augment,
            re_prob=train.reprob,
            re_mode="pixel",
            **common,
        )
    )


def posterize_any_bits(img: Image.Image, bits_to_keep: int, **kwargs) -> Image.Image:
    """timm's posterize, 0 bits included. RandAugment's increasing posterize keeps 4 - int(0.4 m)
    bits: none at magnitude 10, which rand-m9-mstd0.5 draws for about one image in a thousand.
    Pillow before 13 made such an image black; Pillow 13 raises ValueError, which stopped
    training mid-epoch."""
    if bits_to_keep <= 0:
        return Image.new(img.mode, img.size)  # every channel 0, as ImageOps.posterize(img, 0) was
    return auto_augment.posterize(img, bits_to_keep, **kwargs)


def with_zero_bit_posterize(transform):
    """``transform`` with every posterize op of its AutoAugment / RandAugment / AugMix stages
    running :func:`posterize_any_bits` (timm's module, shared state, is left as it is)."""
    for stage in getattr(transform, "transforms", [transform]):
        ops = list(getattr(stage, "ops", []))
        ops += [op for sub in getattr(stage, "policy", []) for op in sub]  # AutoAugment's
        for op in ops:
            if getattr(op, "aug_fn", None) is auto_augment.posterize:
                op.aug_fn = posterize_any_bits
    return transform


def make_mixup(train: TrainConfig, num_classes: int) -> Mixup | None:
    """timm ``Mixup`` (it also applies label smoothing to the mixed targets), or None."""
    if train.mixup <= 0 and train.cutmix <= 0:
        return None
    return Mixup(
        mixup_alpha=train.mixup,
        cutmix_alpha=train.cutmix,
        label_smoothing=train.label_smoothing,
        num_classes=num_classes,
    )
