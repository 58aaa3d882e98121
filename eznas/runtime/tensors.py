"""The 22 recorded tensors of a unit: names, order, sketch families and the sketch-seed formula.

``W`` is the unit's weight. For each input x in D (data), N (noise), P (perturbed data):
``X_x`` the unit's input, ``Z_x`` its pre-activation, ``A_x`` its activation, the loss gradients
``gX_x``, ``gZ_x``, ``gA_x`` of each, and ``gW_x`` the weight gradient. Tensors of one *family*
(W for weights and weight gradients, else the role X / Z / A, gradients included) share sketch
indices, so a tensor's D / N / P versions and its gradient line up element by element.
"""
from __future__ import annotations

INPUTS = ("D", "N", "P")
ROLES = ("X", "Z", "A", "gX", "gZ", "gA", "gW")
TENSOR_NAMES: tuple[str, ...] = ("W",) + tuple(f"{k}_{x}" for x in INPUTS for k in ROLES)
INDEX = {name: i for i, name in enumerate(TENSOR_NAMES)}
#: sketch index family of each tensor: W for the weight and its gradients, else its role
FAMILY = {name: ("W" if name == "W" or name.startswith("gW") else name.split("_")[0].lstrip("g"))
          for name in TENSOR_NAMES}
FAMILY_SEED = {"W": 11, "X": 23, "Z": 37, "A": 53}


def sketch_seed(seed: int, unit: int, family: str) -> int:
    """Seed of the sketch index of ``family`` in unit number ``unit`` (0-based, in model order)."""
    return int(seed) * 1_000_003 + unit * 101 + FAMILY_SEED[family]
