"""Which modules of a model are *units*, the places where the 22 tensors are recorded.

- *eznas-style units*: every module with child modules ``relu``, ``conv`` and ``bn`` (``conv``
  holding at least one ``nn.Conv2d``) and a class attribute ``order`` of ``"relu-conv-bn"`` or
  ``"conv-bn-relu"`` (every unit of the eznas search spaces; give your own blocks these to mark
  them). X = the unit's input, Z = ``bn``'s output, A = ``relu``'s output, W = the weight of
  ``conv`` (its last Conv2d when it is a sequence, e.g. a DARTS separable convolution).
- *plain PyTorch models* (no such unit): every ``nn.Conv2d`` is a unit, in ``model.modules()``
  order. X = the conv's input; Z = the conv's output, or the output of the ``nn.BatchNorm2d``
  module applied directly to that tensor (the same tensor object, as in ``nn.Sequential(conv,
  bn)``) and not modified in place before; A = the output of the ``nn.ReLU`` module applied
  directly to that Z (in-place or not, but not after an in-place ``out += identity``) if there is
  one, otherwise ``relu(Z)`` computed from Z, with gA taken as the gradient reaching Z;
  W = the conv's weight. A model without any ``nn.Conv2d`` cannot be scored.
"""
from __future__ import annotations

from torch import nn

UNIT_ORDERS = ("relu-conv-bn", "conv-bn-relu")


def is_unit(m: nn.Module) -> bool:
    """An eznas-style unit: children relu, conv (with a Conv2d) and bn, and a class attribute ``order``."""
    if getattr(type(m), "order", None) not in UNIT_ORDERS:
        return False
    if not all(isinstance(getattr(m, k, None), nn.Module) for k in ("relu", "conv", "bn")):
        return False
    return any(isinstance(c, nn.Conv2d) for c in m.conv.modules())


def unit_weight(unit: nn.Module) -> nn.Conv2d:
    """The conv whose weight is W: ``conv`` itself, or its last Conv2d when it is a sequence."""
    if isinstance(unit.conv, nn.Conv2d):
        return unit.conv
    return [c for c in unit.conv.modules() if isinstance(c, nn.Conv2d)][-1]


def find_units(model: nn.Module) -> tuple[list[nn.Module], bool]:
    """(units in model order, plain): eznas-style units, else (plain=True) every nn.Conv2d."""
    found = [m for m in model.modules() if is_unit(m)]
    if found:
        return found, False
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)], True
