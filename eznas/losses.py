"""The one adapter from a search space's loss to the ``loss_fn`` that recorders and proxies call.

``SearchSpace.loss(output, inputs, targets, dataset)`` may need the network's input (a TNB
autoencoder reconstructs it). The recorder's passes (:func:`eznas.runtime.run_passes`) call
``loss_fn(output, targets, input)`` with each pass's own input D, N or P; baseline proxies call
``loss_fn(output, targets)``, possibly with a slice of the batch's targets, and then get the
matching rows of the batch's inputs.
"""
from __future__ import annotations

import torch

from eznas.spaces import SearchSpace


def _inputs_for(inputs: torch.Tensor, targets: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The rows of ``inputs`` matching ``t``, a slice of ``targets`` (proxies split batches)."""
    if t.shape[0] == targets.shape[0]:
        return inputs
    if t.untyped_storage().data_ptr() == targets.untyped_storage().data_ptr() and targets.stride(0) > 0:
        start = (t.storage_offset() - targets.storage_offset()) // targets.stride(0)
        return inputs[start:start + t.shape[0]]
    return inputs[: t.shape[0]]


class SpaceLoss:
    """``loss_fn(output, targets, inputs=None)``: the space's loss for ``dataset`` on one batch."""

    takes_inputs = True  # the recorder passes each pass's own input (see eznas.runtime.run_passes)

    def __init__(self, space: SearchSpace, dataset: str, inputs: torch.Tensor, targets: torch.Tensor) -> None:
        self.space, self.dataset, self.inputs, self.targets = space, dataset, inputs, targets

    def __call__(self, output: torch.Tensor, targets: torch.Tensor, inputs: torch.Tensor | None = None) -> torch.Tensor:
        x = _inputs_for(self.inputs, self.targets, targets) if inputs is None else inputs
        return self.space.loss(output, x, targets, self.dataset)


def space_loss(space: SearchSpace, dataset: str, inputs: torch.Tensor, targets: torch.Tensor,
               default_none: bool = False) -> SpaceLoss | None:
    """The space's loss on the batch (``inputs``, ``targets``); None instead when ``default_none``
    and the space keeps the default cross-entropy (callers then use their own default)."""
    if default_none and type(space).loss is SearchSpace.loss:
        return None
    return SpaceLoss(space, dataset, inputs, targets)
