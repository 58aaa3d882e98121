"""NAS-Bench-301 (the DARTS space): normal and reduction cells of 4 nodes, 2 inputs each.

Arch key (NASLib's *compact* genotype): ``[[(in, op) x8], [(in, op) x8]]`` = [normal, reduce].
Pairs ``2k`` and ``2k+1`` feed intermediate node ``k + 2`` (k = 0..3); ``in`` is 0 (output of
cell c_{k-2}), 1 (cell c_{k-1}) or an earlier intermediate node (< k + 2); the two inputs of a
node differ. Ops: 0 max_pool_3x3, 1 avg_pool_3x3, 2 skip_connect, 3 sep_conv_3x3,
4 sep_conv_5x5, 5 dil_conv_3x3, 6 dil_conv_5x5.

Network (as NASLib's ``NasBench301SearchSpace`` builds it for the zero-cost benchmark): stem
conv 3x3 (3 -> 3C) + BN; ``depth`` cells (8), reduction cells at ``depth // 3`` and
``2 * depth // 3`` (C doubles there); each cell preprocesses its inputs with 1x1 ReLU-Conv-BN
(a FactorizedReduce for c_{k-2} right after a reduction cell) and outputs the concatenation
of nodes 2..5 (4C channels); global average pool + linear head, no auxiliary head.

NASLib conventions followed (they set ``params``): every BN inside a cell operation is
``affine=False`` (no parameters): separable / dilated convolutions, the FactorizedReduce that
replaces skip_connect in a reduction cell, and the BN that follows *every* pooling op (NASLib
``MaxPool`` / ``AvgPool`` with ``use_bn=True``, in normal and reduction cells alike). The stem,
the preprocessing ReLU-Conv-BNs and FactorizedReduces, and the head keep affine parameters.
With these conventions the built networks reproduce all 442 published ``params`` values
exactly (making these BNs affine would add 2 params per channel, e.g. +0.011520 M to the
record published as 0.885674 M). The BNs after pools change activations, not ``params``.

Units: the preprocessing 1x1 ReLU-Conv-BNs; two per separable conv and one per dilated conv,
each a :class:`ReLUConvBN` whose ``conv`` is ``Sequential(depthwise, pointwise)``.
FactorizedReduce and pools are not units.
"""
from __future__ import annotations

import re

import numpy as np
import torch
from torch import nn

from eznas.errors import EznasError
from eznas.spaces import SearchSpace, parse_ints, register
from eznas.spaces.common import ReLUConvBN

OPS = ("max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
       "dil_conv_3x3", "dil_conv_5x5")
NODES = 4  # intermediate nodes per cell
PAIRS = 2 * NODES  # (input, op) pairs per cell

Pair = tuple[int, int]
CellSpec = tuple[Pair, ...]
Genotype = tuple[CellSpec, CellSpec]

_PAIR_SKELETON = "[0,0]"
_CELL_SKELETON = "[" + ",".join([_PAIR_SKELETON] * PAIRS) + "]"
_SKELETON = "[" + _CELL_SKELETON + "," + _CELL_SKELETON + "]"


class FactorizedReduce(nn.Module):
    """ReLU, two stride-2 1x1 convs (the second on the input shifted by one pixel), concat, BN."""

    def __init__(self, c_in: int, c_out: int, affine: bool = True) -> None:
        super().__init__()
        if c_out % 2:
            raise EznasError(f"FactorizedReduce needs an even channel count, got {c_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, padding=0, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, padding=0, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], dim=1))


def _depthwise_pointwise(c: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c, c, kernel, stride=stride, padding=padding, dilation=dilation, groups=c, bias=False),
        nn.Conv2d(c, c, 1, padding=0, bias=False))


def _sep_conv(c: int, kernel: int, stride: int) -> nn.Module:
    pad = kernel // 2
    return nn.Sequential(
        ReLUConvBN(c, c, kernel, stride, pad, affine=False, conv=_depthwise_pointwise(c, kernel, stride, pad)),
        ReLUConvBN(c, c, kernel, 1, pad, affine=False, conv=_depthwise_pointwise(c, kernel, 1, pad)))


def _dil_conv(c: int, kernel: int, stride: int) -> nn.Module:
    pad = kernel - 1  # dilation 2
    return ReLUConvBN(c, c, kernel, stride, pad, dilation=2, affine=False,
                      conv=_depthwise_pointwise(c, kernel, stride, pad, dilation=2))


def make_op(op: int, c: int, stride: int) -> nn.Module:
    """The cell operation ``op`` on ``c`` channels (``stride`` 2 on a reduction cell's inputs)."""
    if op == 0:
        return nn.Sequential(nn.MaxPool2d(3, stride=stride, padding=1), nn.BatchNorm2d(c, affine=False))
    if op == 1:
        return nn.Sequential(nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False),
                             nn.BatchNorm2d(c, affine=False))
    if op == 2:
        return nn.Identity() if stride == 1 else FactorizedReduce(c, c, affine=False)
    if op in (3, 4):
        return _sep_conv(c, 3 if op == 3 else 5, stride)
    return _dil_conv(c, 3 if op == 5 else 5, stride)


class Cell(nn.Module):
    """A DARTS cell: preprocess both inputs to ``c`` channels, 4 nodes of 2 ops, concat nodes 2..5."""

    def __init__(self, spec: CellSpec, c_pp: int, c_p: int, c: int, reduction: bool,
                 reduction_prev: bool) -> None:
        super().__init__()
        self.pre0 = FactorizedReduce(c_pp, c) if reduction_prev else ReLUConvBN(c_pp, c, 1, 1, 0)
        self.pre1 = ReLUConvBN(c_p, c, 1, 1, 0)
        self.inputs = [inp for inp, _ in spec]
        self.ops = nn.ModuleList(make_op(op, c, 2 if reduction and inp < 2 else 1) for inp, op in spec)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = [self.pre0(s0), self.pre1(s1)]
        for k in range(NODES):
            a, b = 2 * k, 2 * k + 1
            states.append(self.ops[a](states[self.inputs[a]]) + self.ops[b](states[self.inputs[b]]))
        return torch.cat(states[2:], dim=1)


def reduction_layers(depth: int) -> tuple[int, int]:
    return depth // 3, 2 * depth // 3


class DartsNetwork(nn.Module):
    """The DARTS CIFAR evaluation network (no auxiliary head), as NASLib builds NB301."""

    def __init__(self, genotype: Genotype, num_classes: int, C: int = 32, depth: int = 8,
                 stem_multiplier: int = 3) -> None:
        super().__init__()
        c_stem = stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(3, c_stem, 3, padding=1, bias=False), nn.BatchNorm2d(c_stem))
        c_pp, c_p, c = c_stem, c_stem, C
        reductions = reduction_layers(depth)
        cells: list[nn.Module] = []
        reduction_prev = False
        for i in range(depth):
            reduction = i in reductions
            if reduction:
                c *= 2
            cells.append(Cell(genotype[1 if reduction else 0], c_pp, c_p, c, reduction, reduction_prev))
            reduction_prev = reduction
            c_pp, c_p = c_p, NODES * c
        self.cells = nn.ModuleList(cells)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.classifier(self.pool(s1).flatten(1))


def _check_pairs(cell: CellSpec, key: str) -> None:
    for k in range(NODES):
        (a, op_a), (b, op_b) = cell[2 * k], cell[2 * k + 1]
        node = k + 2
        if not (0 <= a < node and 0 <= b < node):
            raise EznasError(f"malformed nb301 arch key {key!r}: node {node} inputs must be in 0..{node - 1}")
        if a == b:
            raise EznasError(f"malformed nb301 arch key {key!r}: node {node} has input {a} twice")
        if not (0 <= op_a < len(OPS) and 0 <= op_b < len(OPS)):
            raise EznasError(f"malformed nb301 arch key {key!r}: op indices must be in 0..{len(OPS) - 1}")


class NB301(SearchSpace):
    name = "nb301"
    classes = {"cifar10": 10}

    def decode(self, key: str) -> Genotype:
        ints = parse_ints(key, self.name)
        skeleton = re.sub(r"-?\d+", "0", key).translate(str.maketrans("()", "[]", " \t\n\r"))
        if skeleton != _SKELETON:
            raise EznasError(f"malformed nb301 arch key {key!r}: expected [[(in, op) x8], [(in, op) x8]]")
        pairs = [(ints[i], ints[i + 1]) for i in range(0, len(ints), 2)]
        geno: Genotype = (tuple(pairs[:PAIRS]), tuple(pairs[PAIRS:]))
        for cell in geno:
            _check_pairs(cell, key)
        return geno

    def encode(self, arch: Genotype) -> str:
        return str([[(int(i), int(o)) for i, o in cell] for cell in arch])

    def build(self, key: str, dataset: str = "cifar10", width: int | None = None,
              depth: int | None = None) -> nn.Module:
        return DartsNetwork(self.decode(key), self.num_classes(dataset), C=width or 32, depth=depth or 8)

    def random_key(self, rng: np.random.Generator) -> str:
        cells = []
        for _ in range(2):
            cell: list[Pair] = []
            for k in range(NODES):
                inputs = rng.choice(k + 2, size=2, replace=False)
                ops = rng.integers(0, len(OPS), size=2)
                cell.extend((int(i), int(o)) for i, o in zip(inputs, ops))
            cells.append(tuple(cell))
        return self.encode((cells[0], cells[1]))


register(NB301())
