"""A proxy's three entry points, given its expression as ``program(values) -> (units,)`` and the
search's settings ``{"R", "s", "seed", "noise_scale", "unit_aggregate", "cache_dtype", ...}``."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from eznas.runtime.aggregate import aggregate_net, program_scores
from eznas.runtime.precision import quantise
from eznas.runtime.record import record_statistics

Program = Callable[[torch.Tensor], torch.Tensor]


def proxy_statistics(settings: dict[str, Any], model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                     loss_fn: Callable[..., torch.Tensor] | None = None, noise: torch.Tensor | None = None,
                     perturbed: torch.Tensor | None = None) -> torch.Tensor:
    """Sketched statistics (units, 22, R, s, s) as the search stored them (``quantise``d)."""
    values, _ = record_statistics(model, inputs, targets, settings["R"], settings["s"], settings["seed"],
                                  settings["noise_scale"], loss_fn, noise, perturbed)
    return quantise(values, settings.get("cache_dtype", "float32"))


def proxy_unit_scores(program: Program, settings: dict[str, Any], model: nn.Module, inputs: torch.Tensor,
                      targets: torch.Tensor, loss_fn: Callable[..., torch.Tensor] | None = None,
                      noise: torch.Tensor | None = None, perturbed: torch.Tensor | None = None) -> torch.Tensor:
    """The expression's score of every unit (units,)."""
    return program_scores(program, proxy_statistics(settings, model, inputs, targets, loss_fn, noise, perturbed))


def proxy_score(program: Program, settings: dict[str, Any], model: nn.Module, inputs: torch.Tensor,
                targets: torch.Tensor, loss_fn: Callable[..., torch.Tensor] | None = None,
                noise: torch.Tensor | None = None, perturbed: torch.Tensor | None = None) -> float:
    """The network's score: the per-unit scores aggregated by ``settings["unit_aggregate"]``."""
    scores = proxy_unit_scores(program, settings, model, inputs, targets, loss_fn, noise, perturbed)
    return aggregate_net(scores, settings.get("unit_aggregate", "mean"))
