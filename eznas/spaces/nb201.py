"""NAS-Bench-201: cell of 4 nodes, 6 edges, 5 ops; stem + 3 stages of N cells + residual reductions.

Arch key: a tuple of 6 op indices on edges (1→2), (1→3), (1→4), (2→3), (2→4), (3→4);
ops 0 skip_connect, 1 none, 2 nor_conv_3x3, 3 nor_conv_1x1, 4 avg_pool_3x3.
Units: every ReLU-Conv-BN of a cell edge (conv 3x3 / 1x1) and the two ReLU-Conv-BN of each
residual reduction block (its 1x1 shortcut conv has no ReLU / BN and is not a unit).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from eznas.errors import EznasError
from eznas.spaces import SearchSpace, parse_ints, register
from eznas.spaces.common import ReLUConvBN

OPS = ("skip_connect", "none", "nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3")
EDGES = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))


class Zero(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


def make_op(op: int, c: int) -> nn.Module:
    if op == 0:
        return nn.Identity()
    if op == 1:
        return Zero()
    if op == 2:
        return ReLUConvBN(c, c, 3, 1, 1)
    if op == 3:
        return ReLUConvBN(c, c, 1, 1, 0)
    return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)


class Cell(nn.Module):
    """A 4-node DAG cell; node j sums op(i→j)(node i) over i < j (edges in ``edge_order``).
    TNB micro's cell subclasses it with its own edge order and ops."""

    edge_order: tuple[tuple[int, int], ...] = EDGES

    def __init__(self, ops: tuple[int, ...], c: int, op_factory=make_op) -> None:
        super().__init__()
        self.edges = nn.ModuleList(op_factory(o, c) for o in ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for j in range(1, 4):
            nodes.append(sum(self.edges[k](nodes[i]) for k, (i, jj) in enumerate(self.edge_order) if jj == j))
        return nodes[3]


class ResidualReduction(nn.Module):
    """NB201's ResNet basic block between stages: stride-2 ReLU-Conv-BN, ReLU-Conv-BN, avgpool+1x1 shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int = 2) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, stride, 1)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1, 1)
        self.downsample = nn.Sequential(nn.AvgPool2d(2, stride=2, padding=0),
                                        nn.Conv2d(c_in, c_out, 1, 1, 0, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_b(self.conv_a(x)) + self.downsample(x)


class NB201Network(nn.Module):
    def __init__(self, ops: tuple[int, ...], num_classes: int, C: int = 16, N: int = 5) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        layers: list[nn.Module] = []
        c = C
        for stage in range(3):
            if stage > 0:
                layers.append(ResidualReduction(c, 2 * c))
                c *= 2
            layers.extend(Cell(ops, c) for _ in range(N))
        self.cells = nn.Sequential(*layers)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=False))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.lastact(self.cells(self.stem(x)))
        return self.classifier(self.pool(x).flatten(1))


class NB201(SearchSpace):
    name = "nb201"
    classes = {"cifar10": 10, "cifar100": 100, "ImageNet16-120": 120}

    def decode(self, key: str) -> tuple[int, ...]:
        ops = tuple(parse_ints(key, self.name))
        if len(ops) != 6 or any(o < 0 or o >= len(OPS) for o in ops):
            raise EznasError(f"malformed nb201 arch key {key!r}: expected 6 op indices in 0..4")
        return ops

    def encode(self, arch: tuple[int, ...]) -> str:
        return str(tuple(int(o) for o in arch))

    def build(self, key: str, dataset: str = "cifar10", width: int | None = None,
              depth: int | None = None) -> nn.Module:
        return NB201Network(self.decode(key), self.num_classes(dataset), C=width or 16, N=depth or 5)

    def random_key(self, rng: np.random.Generator) -> str:
        return self.encode(tuple(int(o) for o in rng.integers(0, len(OPS), size=6)))


register(NB201())
