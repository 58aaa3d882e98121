"""Search spaces: arch key -> initialised ``nn.Module``, one module per space, a registry by name.

Each space module defines a subclass of :class:`SearchSpace` and registers an instance with
:func:`register`. ``get_space(name)`` imports the module on first use.
"""
from __future__ import annotations

import importlib
import re
from typing import Any

import numpy as np
import torch
from torch import nn

from eznas import datasets as _datasets
from eznas.errors import EznasError
from eznas.spaces.common import ConvBNReLU, ReLUConvBN, Unit, count_params, units

__all__ = ["SearchSpace", "get_space", "register", "space_names", "build", "units", "Unit",
           "ReLUConvBN", "ConvBNReLU", "count_params", "parse_ints"]

_MODULES = {"nb201": "nb201", "nb101": "nb101", "nb301": "darts", "tnb_micro": "tnb"}
_ALIASES = {"darts": "nb301", "tnb101_micro": "tnb_micro", "transbench101_micro": "tnb_micro"}
_REGISTRY: dict[str, "SearchSpace"] = {}


def _image_dataset(dataset: str) -> bool:
    """A dataset of the registry in :mod:`eznas.datasets` other than cifar10 (which spaces list)."""
    return dataset != "cifar10" and _datasets.is_dataset(dataset)


class SearchSpace:
    """Interface of a search space. Subclasses set ``name`` and implement the methods."""

    name: str = ""
    #: dataset / task name -> number of outputs of the network head
    classes: dict[str, int] = {}

    def decode(self, key: str) -> Any:
        """Parse and validate an arch key; raise EznasError for a malformed one."""
        raise NotImplementedError

    def encode(self, arch: Any) -> str:
        """Canonical key string of a decoded architecture (as in the benchmark files)."""
        raise NotImplementedError

    def build(self, key: str, dataset: str = "cifar10", width: int | None = None,
              depth: int | None = None) -> nn.Module:
        """The network of ``key`` for ``dataset``'s head, freshly initialised (seed with torch)."""
        raise NotImplementedError

    def input_size(self, dataset: str) -> int:
        """Side of the square input images used for this dataset (a dataset of
        :mod:`eznas.datasets` the space does not list, e.g. ``digits``: its own image size)."""
        if dataset not in self.classes and _image_dataset(dataset):
            return _datasets.load_dataset(dataset).size
        return 16 if dataset == "ImageNet16-120" else 32

    def num_classes(self, dataset: str) -> int:
        if dataset not in self.classes:
            if _image_dataset(dataset):  # e.g. 'digits' or 'npz:PATH' for a benchmark of your own
                return _datasets.load_dataset(dataset).num_classes
            raise EznasError(f"space {self.name} has no dataset '{dataset}'; valid: {', '.join(self.classes)}")
        return self.classes[dataset]

    def loss(self, output: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor, dataset: str) -> torch.Tensor:
        """Loss whose gradients the statistics record. Default: cross-entropy with class targets."""
        return nn.functional.cross_entropy(output, targets)

    def param_count(self, model: nn.Module) -> float:
        """Parameters in millions, counted as the benchmark's ``params`` field counts them."""
        return count_params(model) / 1e6

    def random_key(self, rng: np.random.Generator) -> str:
        """A uniformly sampled valid architecture key."""
        raise NotImplementedError


def register(space: SearchSpace) -> SearchSpace:
    _REGISTRY[space.name] = space
    return space


def space_names() -> list[str]:
    return list(_MODULES)


def get_space(name: str) -> SearchSpace:
    key = _ALIASES.get(name, name)
    if key not in _MODULES:
        raise EznasError(f"unknown search space '{name}'; valid: {', '.join(_MODULES)}")
    if key not in _REGISTRY:
        importlib.import_module(f"eznas.spaces.{_MODULES[key]}")
    return _REGISTRY[key]


def build(space: str, key: str, dataset: str = "cifar10", seed: int | None = None,
          width: int | None = None, depth: int | None = None) -> nn.Module:
    """Build and (if ``seed`` is given) deterministically initialise a network."""
    sp = get_space(space)
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return sp.build(key, dataset, width=width, depth=depth)
    return sp.build(key, dataset, width=width, depth=depth)


_INT = re.compile(r"-?\d+")
_ALLOWED = re.compile(r"^[\s\d,()\[\]\-]*$")


def parse_ints(key: str, space: str) -> list[int]:
    """The integers of an arch key made of digits, commas, brackets and spaces (never eval'd)."""
    if not isinstance(key, str) or not _ALLOWED.match(key) or not key.strip():
        raise EznasError(f"malformed {space} arch key {key!r}")
    return [int(t) for t in _INT.findall(key)]
