"""Variation operators whose random choices do not depend on memory addresses.

DEAP's typed one-point crossover (``gp.cxOnePoint``) draws the crossover type from a *set* of
type objects. A type's hash is its address, so the set's iteration order -- and with it the
offspring of a seeded search -- changes from one process to the next (address-space layout
randomisation), even with ``PYTHONHASHSEED`` fixed. :func:`cx_one_point` makes the same choice
over the common types listed in a fixed order (their qualified names), so a seed gives the same
search in every process. The other operators the search uses (``genHalfAndHalf``,
``mutUniform``, ``mutNodeReplacement``, ``mutShrink``, ``varOr``, the selections) draw only from
lists and are already independent of addresses.
"""
from __future__ import annotations

import random
from typing import Any

from deap import gp


def type_key(tp: Any) -> tuple[str, str]:
    """A stable order for GP types: module and qualified name (classes), else ``repr``."""
    if isinstance(tp, type):
        return tp.__module__, tp.__qualname__
    return "", repr(tp)


def _positions_by_type(tree: gp.PrimitiveTree) -> dict[Any, list[int]]:
    """Node indices below the root, grouped by the type each node returns (tree order)."""
    out: dict[Any, list[int]] = {}
    for idx in range(1, len(tree)):
        out.setdefault(tree[idx].ret, []).append(idx)
    return out


def cx_one_point(ind1: gp.PrimitiveTree, ind2: gp.PrimitiveTree) -> tuple[gp.PrimitiveTree, gp.PrimitiveTree]:
    """Typed one-point crossover (in place): pick a type both trees have below their roots, then a
    node of that type in each, and swap the two subtrees. Same distribution as DEAP's
    ``cxOnePoint``; the common types are ordered by :func:`type_key` before the draw."""
    if len(ind1) < 2 or len(ind2) < 2:
        return ind1, ind2  # a single node has no subtree to exchange
    pos1, pos2 = _positions_by_type(ind1), _positions_by_type(ind2)
    common = sorted((t for t in pos1 if t in pos2), key=type_key)
    if not common:
        return ind1, ind2
    tp = random.choice(common)
    i1 = random.choice(pos1[tp])
    i2 = random.choice(pos2[tp])
    s1, s2 = ind1.searchSubtree(i1), ind2.searchSubtree(i2)
    ind1[s1], ind2[s2] = ind2[s2], ind1[s1]
    return ind1, ind2
