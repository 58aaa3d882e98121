"""Names of the 22 recorded tensors of a unit (defined in :mod:`eznas.runtime.tensors`)."""
from __future__ import annotations

from eznas.runtime.tensors import FAMILY, INDEX, INPUTS, ROLES, TENSOR_NAMES

PER_INPUT = ROLES

__all__ = ["FAMILY", "INDEX", "INPUTS", "PER_INPUT", "ROLES", "TENSOR_NAMES"]
