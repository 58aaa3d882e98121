"""Zero-shot architecture search with any proxy (``eznas nas`` and :func:`search`).

>>> from eznas.nas import search
>>> result = search(score, sample, mutate, budget=100, seed=0, strategy="evolution")
>>> result.arch, result.score, result.n_failed

See :mod:`eznas.nas.strategies` for the strategies and the rank ensemble of several proxies,
:mod:`eznas.nas.nb201` for the NB201 table as a search domain, :mod:`eznas.nas.command` for the CLI.
"""
from __future__ import annotations

import argparse

from eznas.nas.cache import ScoreCache
from eznas.nas.strategies import STRATEGIES, Failure, Scorer, SearchResult, Step, as_scorers, search

__all__ = ["search", "SearchResult", "Step", "Failure", "Scorer", "ScoreCache", "STRATEGIES", "as_scorers",
           "cmd_nas"]


def cmd_nas(args: argparse.Namespace) -> int:
    from eznas.nas.command import cmd_nas as run

    return run(args)
