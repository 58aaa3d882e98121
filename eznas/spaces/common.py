"""Building blocks shared by the search spaces, and the *unit* that statistics hook onto.

A unit is a ReLU-Conv-BN group (or Conv-BN-ReLU, for NAS-Bench-101). It keeps three child
modules ``relu``, ``conv`` and ``bn`` so forward hooks on them see every tensor we record:

=============  ====================================  ====================================
tensor         ``order="relu-conv-bn"``              ``order="conv-bn-relu"``
=============  ====================================  ====================================
input ``x``    the unit's input (before its ReLU)    the unit's input (the conv's input)
activation     ``relu(x)`` (what the conv sees)      ``relu(bn(conv(x)))`` (unit output)
pre-activation ``bn(conv(relu(x)))`` (unit output)   ``bn(conv(x))``
weight         ``weight_conv.weight``                ``weight_conv.weight``
=============  ====================================  ====================================

``weight_conv`` is ``conv`` itself, or the last (point-wise) conv when ``conv`` is a sequence
(DARTS separable / dilated convolutions).
"""
from __future__ import annotations

import torch
from torch import nn

from eznas.runtime.units import is_unit, unit_weight


class Unit(nn.Module):
    """A ReLU-Conv-BN (or Conv-BN-ReLU) group; see the module docstring."""

    order: str = "relu-conv-bn"
    relu: nn.Module
    conv: nn.Module
    bn: nn.Module

    @property
    def weight_conv(self) -> nn.Conv2d:
        return unit_weight(self)


class ReLUConvBN(Unit):
    order = "relu-conv-bn"

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 dilation: int = 1, affine: bool = True, track_running_stats: bool = True,
                 conv: nn.Module | None = None) -> None:
        super().__init__()
        self.relu = nn.ReLU(inplace=False)
        self.conv = conv if conv is not None else nn.Conv2d(
            c_in, c_out, kernel_size, stride=stride, padding=padding, dilation=dilation, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine, track_running_stats=track_running_stats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(self.relu(x)))


class ConvBNReLU(Unit):
    order = "conv-bn-relu"

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 affine: bool = True, track_running_stats: bool = True, momentum: float = 0.1,
                 eps: float = 1e-5) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine, track_running_stats=track_running_stats,
                                 momentum=momentum, eps=eps)
        self.relu = nn.ReLU(inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


def units(model: nn.Module) -> list[nn.Module]:
    """Every unit of a model in construction order (which modules are units: :mod:`eznas.runtime.units`)."""
    return [m for m in model.modules() if is_unit(m)]


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
