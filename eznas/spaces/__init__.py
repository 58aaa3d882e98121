"""Search spaces: arch key -> initialised ``nn.Module``, one module per space, a registry by name.

:data:`SPACES` is the one place that declares, for every search space, the module that builds its
networks, its aliases, the benchmarks that hold its trained accuracies (by benchmark name, see
:mod:`eznas.records`) and the format of its arch keys. :mod:`eznas.records` (which file a task
reads) and :mod:`eznas.datadir` (which files `eznas data download` fetches) derive from it.
Each space module defines a subclass of :class:`SearchSpace` and registers an instance with
:func:`register`; ``get_space(name)`` imports the module on first use.
"""
from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from eznas.errors import EznasError
from eznas.spaces.common import ConvBNReLU, ReLUConvBN, Unit, count_params, units

__all__ = ["SearchSpace", "SpaceInfo", "BenchmarkFile", "SPACES", "get_space", "register", "space_names",
           "space_info", "canonical_space", "build", "units", "Unit", "ReLUConvBN", "ConvBNReLU",
           "count_params", "parse_ints"]


@dataclass(frozen=True)
class BenchmarkFile:
    """Where a benchmark of a space is stored: ``path`` in the data directory, fetched from ``url``
    by `eznas data download` and checked against ``sha256`` (``convert``: the upstream file is
    converted to our layout, so the hash is that of the shared copy); or, ``packaged``, a path
    inside the eznas package."""

    path: str
    url: str | None = None
    sha256: str | None = None
    convert: str | None = None  # None | "natsbench" (see eznas.natsbench.convert_upstream)
    packaged: bool = False


@dataclass(frozen=True)
class SpaceInfo:
    """What eznas declares about a search space besides its networks."""

    name: str
    module: str | None  # eznas.spaces.<module> builds its networks; None: benchmark records only
    arch_key: str  # the format of its arch keys, as in its benchmark files
    aliases: tuple[str, ...] = ()
    benchmarks: Mapping[str, BenchmarkFile] = field(default_factory=dict)  # benchmark name -> file


# NASLib's own download script fetches the zc_* files from these Google Drive ids.
_GDRIVE = "https://drive.google.com/uc?export=download&confirm=t&id="
# NATS-Bench TSS test accuracies exported by the public repository v-tao/nats-bench-landscape.
_NATS_CSV = ("https://raw.githubusercontent.com/v-tao/nats-bench-landscape/"
             "312680307c44fd111146b2be0d0148194fbb2ca8/nats_bench.csv")

SPACES: dict[str, SpaceInfo] = {s.name: s for s in [
    SpaceInfo("nb201", "nb201",
              "tuple of 6 op indices on edges (1→2), (1→3), (1→4), (2→3), (2→4), (3→4); "
              "ops 0 skip_connect, 1 none, 2 nor_conv_3x3, 3 nor_conv_1x1, 4 avg_pool_3x3", (), {
                  "naslib": BenchmarkFile("naslib/zc_nasbench201.json", _GDRIVE + "1R7n7GpFHAjUZpPISzbhxH0QjubnvZM5H",
                                          "4b81bef056c458cee5eb864cac82537acb3ec111b555364c2886dc35d13b83ce"),
                  "natsbench": BenchmarkFile("natsbench/nb201_test_accuracy.csv", _NATS_CSV,
                                             "61b98f1a64900d53af2ce0c7d1ccf4c54fbfb7ddece5a5891cf055cf1a290960",
                                             convert="natsbench"),
                  "digits": BenchmarkFile("benchmarks_data/digits-nb201.json", packaged=True),
              }),
    SpaceInfo("nb101", "nb101",
              "flattened 7x7 upper-triangular adjacency matrix (49 values) then 7 op indices over "
              "[input, output, maxpool3x3, conv1x1-bn-relu, conv3x3-bn-relu]", (),
              {"naslib": BenchmarkFile("naslib/zc_nasbench101.json", _GDRIVE + "1Rkse44EWgYdBS34iyhjSs9Y2l0fxPCpU",
                                       "bad7c91452f9908105f3175d1eb35c3fff93ecaeaea6da042c1e81c2be0e21b9")}),
    SpaceInfo("nb301", "darts",
              "[normal, reduce], each 8 pairs (input node, op index); ops 0 max_pool_3x3, 1 avg_pool_3x3, "
              "2 skip_connect, 3 sep_conv_3x3, 4 sep_conv_5x5, 5 dil_conv_3x3, 6 dil_conv_5x5", ("darts",),
              {"naslib": BenchmarkFile("naslib/zc_nasbench301.json", _GDRIVE + "1RddgmwqjWJ1czGT8gEPB8qqhUHazp92G",
                                       "8c37a660315edc86497c8696fdcdfdbe47183e6b24a16d6f402f375df8b2bd62")}),
    SpaceInfo("tnb_micro", "tnb",
              "6 TransNAS-Bench-101 op codes (0 zero, 1 skip, 2 ReLU-Conv-BN 1x1, 3 ReLU-Conv-BN 3x3) on edges "
              "0->1, 0->2, 1->2, 0->3, 1->3, 2->3", ("tnb101_micro", "transbench101_micro"),
              {"naslib": BenchmarkFile("naslib/zc_transbench101_micro.json",
                                       _GDRIVE + "1SBOVAyhLCBTAJiU_fo7hLRknNrGNqFk7",
                                       "b56b8332e485889a0a246224ed305b61b6b2bf42228fbdf448616928ab39d2e5")}),
    SpaceInfo("tnb_macro", None, "TransNAS-Bench-101 macro skeleton code", ("tnb101_macro", "transbench101_macro"),
              {"naslib": BenchmarkFile("naslib/zc_transbench101_macro.json",
                                       _GDRIVE + "1teH8JcQsamZngUD_DMQyNkCoUYYSTM0M",
                                       "79d703321c18c0f5bc87cd316d17c15d9b30e8c0ac1dae0583f549e47c56271c")}),
]}
_ALIASES: dict[str, str] = {a: s.name for s in SPACES.values() for a in s.aliases}
_REGISTRY: dict[str, "SearchSpace"] = {}


def canonical_space(name: str) -> str:
    """The canonical name of a space with benchmark records (aliases resolved), or one error line."""
    key = _ALIASES.get(name, name)
    if key not in SPACES:
        raise EznasError(f"unknown search space '{name}'; valid: {', '.join(SPACES)}")
    return key


def space_info(name: str) -> SpaceInfo:
    return SPACES[canonical_space(name)]


def _image_dataset(dataset: str) -> bool:
    """A dataset of :mod:`eznas.images` that no space lists (``digits``, ``npz:PATH``)."""
    from eznas import images  # local: images -> datadir -> spaces

    return dataset not in images.BENCHMARK_IMAGES and images.is_dataset(dataset)


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
        :mod:`eznas.images` the space does not list, e.g. ``digits``: its own image size)."""
        if dataset not in self.classes and _image_dataset(dataset):
            from eznas import images

            return images.load_dataset(dataset).size
        return 16 if dataset == "ImageNet16-120" else 32

    def num_classes(self, dataset: str) -> int:
        if dataset not in self.classes:
            if _image_dataset(dataset):  # e.g. 'digits' or 'npz:PATH' for a benchmark of your own
                from eznas import images

                return images.load_dataset(dataset).num_classes
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

    @property
    def info(self) -> SpaceInfo:
        """Aliases, benchmark files and arch-key format (from :data:`SPACES`)."""
        return SPACES[self.name]


def register(space: SearchSpace) -> SearchSpace:
    _REGISTRY[space.name] = space
    return space


def space_names() -> list[str]:
    """The spaces whose networks eznas builds."""
    return [n for n, s in SPACES.items() if s.module]


def get_space(name: str) -> SearchSpace:
    key = _ALIASES.get(name, name)
    info = SPACES.get(key)
    if info is None:
        raise EznasError(f"unknown search space '{name}'; valid: {', '.join(space_names())}")
    if info.module is None:
        raise EznasError(f"search space '{name}' has benchmark records but no networks in eznas; "
                         f"valid: {', '.join(space_names())}")
    if key not in _REGISTRY:
        importlib.import_module(f"eznas.spaces.{info.module}")
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
