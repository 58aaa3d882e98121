"""NAS-Bench-101: a cell DAG of up to 7 vertices / 9 edges, stem + 3 stacks of 3 cells.

Arch key (NASLib's tuple): 56 ints = the flattened 7x7 upper-triangular adjacency matrix
(49 values, row ``i`` column ``j`` = edge i -> j) followed by 7 op indices over
``[input, output, maxpool3x3, conv1x1-bn-relu, conv3x3-bn-relu]``: vertex 0 is the input
(op 0), vertex 6 the output (op 1), vertices 1..5 take ops 2..4.

The key holds the matrix *as sampled*: as in NAS-Bench-101's ``ModelSpec``, vertices not on
an input -> output path are pruned (with their edges) before the network is built; most
benchmark keys have such vertices (the pruned cells have 2..7 vertices). A key is valid when
input and output are connected and the pruned cell has at most 9 edges (NB101's limit; the
unpruned matrix may have more). ``encode(decode(key)) == key``: the unpruned matrix is kept.

Network (NAS-Bench-101, as the PyTorch port NASLib uses builds it): stem ConvBNReLU 3x3
(3 -> 128); 3 stacks of 3 cells, a 2x2 max-pool before stacks 2 and 3 where the channels
double (the first cell of a stack maps C -> 2C); global average pool; linear head (bias).
In a cell of ``C_out`` channels, vertex channels follow NB101's splitting: each vertex feeding
the output gets ``C_out // k`` channels (k = its interior in-degree; the first
``C_out % k`` of them get one more), other vertices the max over their successors. A vertex
sums its inputs: the cell input through a 1x1 ConvBNReLU projection, earlier vertices
truncated to its channel count; then applies its op (conv 3x3 / 1x1 ConvBNReLU, or max-pool
3x3 stride 1). The cell output concatenates the vertices feeding it, plus a 1x1 projection of
the cell input when the input -> output edge exists (alone if it is the only edge).
BatchNorm: momentum 0.003 (TF decay 0.997), eps 1e-5. Convs have no bias; BNs are affine.

Parameter count: every parameter of the built network (convs, BN scale and shift, linear
weight and bias), which reproduces NASLib's published ``params`` (millions) exactly.

Units: every ConvBNReLU (stem, 1x1 projections, conv ops) - i.e. one unit per Conv2d.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from eznas.errors import EznasError
from eznas.spaces import SearchSpace, parse_ints, register
from eznas.spaces.common import ConvBNReLU

OPS = ("input", "output", "maxpool3x3", "conv1x1-bn-relu", "conv3x3-bn-relu")
INPUT, OUTPUT, MAXPOOL, CONV1X1, CONV3X3 = range(5)
V = 7  # vertices of the unpruned matrix
MAX_EDGES = 9
BN_MOMENTUM = 0.003
BN_EPS = 1e-5


@dataclass(frozen=True)
class NB101Arch:
    """An unpruned 7-vertex NB101 spec: adjacency rows and op indices."""

    matrix: tuple[tuple[int, ...], ...]
    ops: tuple[int, ...]


@dataclass(frozen=True)
class Spec:
    """A pruned cell: ``matrix`` (n x n, upper triangular) and ``ops`` (first input, last output)."""

    matrix: np.ndarray
    ops: tuple[int, ...]

    @property
    def n(self) -> int:
        return len(self.ops)


def _reachable(m: np.ndarray) -> tuple[set[int], set[int]]:
    """Vertices reachable from the input, and vertices from which the output is reachable."""
    n = m.shape[0]
    fwd = {0}
    for j in range(1, n):
        if any(m[i, j] and i in fwd for i in range(j)):
            fwd.add(j)
    bwd = {n - 1}
    for i in range(n - 2, -1, -1):
        if any(m[i, j] and j in bwd for j in range(i + 1, n)):
            bwd.add(i)
    return fwd, bwd


def prune(arch: NB101Arch) -> Spec | None:
    """The cell with vertices off every input -> output path removed; None if disconnected."""
    m = np.array(arch.matrix, dtype=np.int64)
    fwd, bwd = _reachable(m)
    if V - 1 not in fwd:
        return None
    keep = sorted(fwd & bwd)
    return Spec(m[np.ix_(keep, keep)], tuple(arch.ops[i] for i in keep))


def _bad(key: str, why: str) -> EznasError:
    return EznasError(f"malformed nb101 arch key {key!r}: {why}")


def _check_matrix(key: str, values: list[int]) -> None:
    if any(v not in (0, 1) for v in values):
        raise _bad(key, "adjacency values must be 0 or 1")
    for i in range(V):
        if any(values[i * V + j] for j in range(i + 1)):
            raise _bad(key, "adjacency matrix must be strictly upper triangular")


def _check_ops(key: str, ops: list[int]) -> None:
    if ops[0] != INPUT or ops[-1] != OUTPUT:
        raise _bad(key, "first op must be 0 (input) and last op 1 (output)")
    if any(o not in (MAXPOOL, CONV1X1, CONV3X3) for o in ops[1:-1]):
        raise _bad(key, "ops of vertices 1..5 must be 2 (maxpool3x3), 3 (conv1x1) or 4 (conv3x3)")


def vertex_channels(c_in: int, c_out: int, m: np.ndarray) -> list[int]:
    """NB101's channel count of each vertex of a pruned cell."""
    n = m.shape[0]
    ch = [0] * n
    ch[0], ch[n - 1] = c_in, c_out
    if n == 2:
        return ch
    k = int(m[1:, n - 1].sum())
    base, extra = divmod(c_out, k)
    for v in range(1, n - 1):
        if m[v, n - 1]:
            ch[v] = base + (1 if extra > 0 else 0)
            extra -= 1
    for v in range(n - 3, 0, -1):
        if not m[v, n - 1]:
            ch[v] = max(ch[d] for d in range(v + 1, n - 1) if m[v, d])
    return ch


def _op(op: int, c: int) -> nn.Module:
    if op == CONV3X3:
        return ConvBNReLU(c, c, 3, 1, 1, momentum=BN_MOMENTUM, eps=BN_EPS)
    if op == CONV1X1:
        return ConvBNReLU(c, c, 1, 1, 0, momentum=BN_MOMENTUM, eps=BN_EPS)
    return nn.MaxPool2d(3, stride=1, padding=1)


def _projection(c_in: int, c_out: int) -> ConvBNReLU:
    return ConvBNReLU(c_in, c_out, 1, 1, 0, momentum=BN_MOMENTUM, eps=BN_EPS)


class Cell(nn.Module):
    """An NB101 cell on a pruned spec, mapping ``c_in`` to ``c_out`` channels."""

    def __init__(self, spec: Spec, c_in: int, c_out: int) -> None:
        super().__init__()
        n = spec.n
        self.m = spec.matrix.tolist()
        self.ch = vertex_channels(c_in, c_out, spec.matrix)
        self.vertex_ops = nn.ModuleList(_op(spec.ops[t], self.ch[t]) for t in range(1, n - 1))
        self.proj = nn.ModuleDict({str(t): _projection(c_in, self.ch[t]) for t in range(1, n) if self.m[0][t]})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = len(self.ch)
        states = [x]
        concat = []
        for t in range(1, n - 1):
            fan_in = [states[s][:, : self.ch[t]] for s in range(1, t) if self.m[s][t]]
            if self.m[0][t]:
                fan_in.append(self.proj[str(t)](x))
            out = self.vertex_ops[t - 1](sum(fan_in[1:], fan_in[0]))
            states.append(out)
            if self.m[t][n - 1]:
                concat.append(out)
        if not concat:
            return self.proj[str(n - 1)](x)
        y = concat[0] if len(concat) == 1 else torch.cat(concat, dim=1)
        if self.m[0][n - 1]:
            y = y + self.proj[str(n - 1)](x)
        return y


class NB101Network(nn.Module):
    def __init__(self, spec: Spec, num_classes: int, C: int = 128, cells: int = 3, stacks: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [ConvBNReLU(3, C, 3, 1, 1, momentum=BN_MOMENTUM, eps=BN_EPS)]
        c_in = c_out = C
        for stack in range(stacks):
            if stack > 0:
                layers.append(nn.MaxPool2d(2, stride=2))
                c_out *= 2
            for _ in range(cells):
                layers.append(Cell(spec, c_in, c_out))
                c_in = c_out
        self.layers = nn.Sequential(*layers)
        self.classifier = nn.Linear(c_out, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.layers(x).mean(dim=(2, 3)))


class NB101(SearchSpace):
    name = "nb101"
    classes = {"cifar10": 10}

    def decode(self, key: str) -> NB101Arch:
        values = parse_ints(key, self.name)
        if len(values) != V * V + V:
            raise _bad(key, f"expected {V * V + V} ints (7x7 matrix + 7 ops), got {len(values)}")
        _check_matrix(key, values[: V * V])
        ops = values[V * V:]
        _check_ops(key, ops)
        arch = NB101Arch(tuple(tuple(values[i * V:(i + 1) * V]) for i in range(V)), tuple(ops))
        spec = prune(arch)
        if spec is None:
            raise _bad(key, "no path from input to output")
        if int(spec.matrix.sum()) > MAX_EDGES:
            raise _bad(key, f"the pruned cell has {int(spec.matrix.sum())} edges, more than {MAX_EDGES}")
        return arch

    def encode(self, arch: NB101Arch) -> str:
        return str(tuple(int(v) for row in arch.matrix for v in row) + tuple(int(o) for o in arch.ops))

    def build(self, key: str, dataset: str = "cifar10", width: int | None = None,
              depth: int | None = None) -> nn.Module:
        spec = prune(self.decode(key))
        assert spec is not None  # decode rejects disconnected cells
        return NB101Network(spec, self.num_classes(dataset), C=width or 128, cells=depth or 3)

    def random_key(self, rng: np.random.Generator) -> str:
        """A random valid spec, sampled as NASLib samples NB101: random 0/1 upper-triangular
        matrix and random ops, redrawn until input and output are connected with <= 9 edges."""
        while True:
            m = np.triu(rng.integers(0, 2, size=(V, V)), 1)
            ops = (INPUT, *(int(o) for o in rng.integers(MAXPOOL, CONV3X3 + 1, size=V - 2)), OUTPUT)
            arch = NB101Arch(tuple(tuple(int(v) for v in row) for row in m), ops)
            spec = prune(arch)
            if spec is not None and int(spec.matrix.sum()) <= MAX_EDGES:
                return self.encode(arch)


register(NB101())
