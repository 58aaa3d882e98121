"""Names of the 22 recorded tensors of a unit, in their fixed order in caches and programs.

``W`` is the unit's weight. For each input x in D (data), N (noise), P (perturbed data):
``X_x`` input activation, ``Z_x`` pre-activation (conv+BN output), ``A_x`` activation, the
gradients ``gX_x``, ``gZ_x``, ``gA_x`` of the loss with respect to each, and ``gW_x`` the
weight gradient. See :mod:`eznas.spaces.common` for where each is taken in a unit.
"""
from __future__ import annotations

INPUTS = ("D", "N", "P")
PER_INPUT = ("X", "Z", "A", "gX", "gZ", "gA", "gW")
TENSOR_NAMES: tuple[str, ...] = ("W",) + tuple(f"{k}_{x}" for x in INPUTS for k in PER_INPUT)
INDEX = {name: i for i, name in enumerate(TENSOR_NAMES)}
#: which sketch index family a tensor uses: the weight family or the activation family of its role
FAMILY = {name: ("W" if name == "W" or name.startswith("gW") else name.split("_")[0].lstrip("g"))
          for name in TENSOR_NAMES}
assert len(TENSOR_NAMES) == 22
