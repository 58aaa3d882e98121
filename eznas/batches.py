"""The three inputs of the statistics and of the proxies: real data D, noise N, perturbed data P.

D is a seeded batch of the task's images (see :func:`eznas.images.images_for` for which images a
task uses), normalised with its dataset's mean / std at the benchmark's resolution.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from eznas import images as images_mod
from eznas.errors import EznasError
from eznas.runtime.record import draw_noise
from eznas.images import MEAN_STD, load_images

__all__ = ["Batches", "MEAN_STD", "image_size", "normalise", "make_batches"]


def image_size(dataset: str) -> int:
    """Input resolution the benchmark trained at (ImageNet16-120 is 16x16)."""
    return 16 if dataset == "ImageNet16-120" else 32


@dataclass
class Batches:
    """The three inputs of the statistics: real data D, Gaussian noise N, perturbed data P."""

    D: torch.Tensor
    N: torch.Tensor
    P: torch.Tensor
    targets: torch.Tensor

    def items(self) -> list[tuple[str, torch.Tensor]]:
        return [("D", self.D), ("N", self.N), ("P", self.P)]


def normalise(images: np.ndarray, dataset: str, size: int | None = None,
              mean_std: tuple[tuple[float, ...], tuple[float, ...]] | None = None) -> torch.Tensor:
    """uint8 (n, h, w, 3) -> float (n, 3, size, size), normalised with the dataset's mean/std
    (or ``mean_std`` when given)."""
    mean, std = mean_std or MEAN_STD.get(dataset, MEAN_STD["cifar10"])
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    if size is not None and size != x.shape[-1]:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x.contiguous()


def make_batches(
    dataset: str,
    batch_size: int,
    seed: int,
    num_classes: int = 10,
    noise_scale: float = 0.1,
    root: str | os.PathLike | None = None,
    size: int | None = None,
) -> Batches:
    """D: ``batch_size`` real images chosen by ``seed``; N: standard Gaussian noise of the same
    shape; P: D + noise_scale * Gaussian. Targets are the images' labels (folded modulo
    ``num_classes``), used for D, N and P alike. The images are the task's own where the data
    directory has them (:func:`eznas.images.images_for`: ``cifar100.npz``, ``imagenet16_120.npz``,
    ``digits``, ``npz:PATH``), drawn from their train split and normalised with their mean/std; else
    CIFAR-10's (the CIFAR-10 labels are valid for any class count >= 10), normalised with the
    task's constants and resized to the benchmark's resolution."""
    if batch_size < 1:
        raise EznasError(f"batch size must be >= 1, got {batch_size}")
    own = None
    source, _ = images_mod.images_for(dataset, root)
    if source != "cifar10":
        own = images_mod.load_dataset(source, root)
        images, labels = own.train_images, own.train_labels
        size = size or own.size
    else:
        images, labels = load_images(root, "train")
    if batch_size > len(images):
        raise EznasError(f"batch size {batch_size} exceeds the {len(images)} images available")
    g = torch.Generator().manual_seed(int(seed))
    idx = torch.randperm(len(images), generator=g)[:batch_size].numpy()
    D = normalise(images[idx], dataset, size or image_size(dataset), (own.mean, own.std) if own else None)
    N, P = draw_noise(D, g, noise_scale)  # after the image indices, from the same generator
    targets = torch.from_numpy(labels[idx] % num_classes).long()
    return Batches(D, N, P, targets)
