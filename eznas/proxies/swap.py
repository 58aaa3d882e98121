"""SWAP-Score and regularised SWAP (Peng et al., ICLR 2024; official code pym1024/SWAP).

Sample-wise activation patterns: for every neuron (a position of a ReLU's output: channel x
height x width), its binary pattern over the S samples of the batch, [relu(x_s) > 0]_s. SWAP is
the number of DISTINCT patterns among all neurons of all ReLUs (``torch.unique`` over the rows of
the transposed (neurons x samples) sign matrix in the official ``calSWAP``); at most 2^S and at
most the neuron count. The official runner re-initialises the network with N(0, 1) weights
(``network_weight_gaussian_init``) and averages the count over 32 such draws (4 here by default),
on 16 CIFAR-10 images. Regularised SWAP multiplies the count by exp(-(P - mu)^2 / sigma), P = parameter count in
thousands (the official ``count_parameters``), a bell-shaped preference for a model size mu.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from eznas.proxies.registry import LossFn, register
from eznas.proxies.common import gaussian_init, to_device, working_copy

# reg_swap defaults for NB201 (parameter count in thousands, the official unit). Neither the
# official repository (no NB201 script) nor the paper text we could retrieve gives the NB201
# values; mu = sigma = 1.5 with parameters in MILLIONS is what a public reimplementation uses,
# i.e. mu = 1500, sigma = 1.5e6 in thousands: a bell centred at NB201's largest nets (1.53 M
# parameters on CIFAR-10; the smallest, 0.07 M, get a factor exp(-1.4) = 0.24).
NB201_MU = 1500.0
NB201_SIGMA = 1.5e6

_WORD = 64  # samples packed per int64 word


def pack_patterns(active: torch.Tensor) -> torch.Tensor:
    """(samples, neurons) bool -> (neurons, words) int64: each neuron's pattern over the samples
    as bits of ceil(samples / 64) int64 words (bit s of word w = sample 64 w + s)."""
    n = active.shape[0]
    weights = torch.ones(_WORD, dtype=torch.int64, device=active.device) << torch.arange(_WORD, device=active.device)
    words = []
    for st in range(0, n, _WORD):
        chunk = active[st:st + _WORD].to(torch.int64)
        # disjoint bits: the sum is the bitwise OR (bit 63 wraps to the sign bit, harmlessly)
        words.append((chunk * weights[:chunk.shape[0], None]).sum(0))
    return torch.stack(words, 1)


def count_unique_patterns(packed: torch.Tensor) -> int:
    """The number of distinct rows of ``packed`` (neurons x words)."""
    if packed.shape[0] == 0:
        return 0
    if packed.shape[1] == 1:
        return int(torch.unique(packed[:, 0]).numel())
    return int(torch.unique(packed, dim=0).shape[0])


def _relu_patterns(net: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """Packed activation patterns of every neuron of every ``nn.ReLU`` with a 4-D input (the
    official hook's condition); of every ``nn.ReLU`` when none has one (a model without conv
    feature maps); None when the model has no ``nn.ReLU`` call."""
    n = x.shape[0]
    conv: list[torch.Tensor] = []
    other: list[torch.Tensor] = []

    def hook(m: nn.Module, inp: tuple, out: torch.Tensor) -> None:
        packed = pack_patterns(out.detach().reshape(n, -1) > 0)
        (conv if inp and inp[0].dim() == 4 else other).append(packed)

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.ReLU)]
    try:
        with torch.no_grad():
            net(x)
    finally:
        for h in handles:
            h.remove()
    found = conv or other
    return torch.cat(found, 0) if found else None


def swap_count(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, samples: int = 16,
               repeats: int = 4, seed: int = 0) -> float:
    """Mean over ``repeats`` seeded N(0, 1) re-initialisations of the number of distinct
    sample-wise activation patterns on the first ``samples`` inputs; NaN without ReLUs."""
    net = working_copy(model)
    x, _ = to_device(net, inputs, targets)
    x = x[:samples]
    counts = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        for _ in range(max(1, repeats)):
            gaussian_init(net)
            packed = _relu_patterns(net, x)
            if packed is None:
                return math.nan
            counts.append(count_unique_patterns(packed))
    return float(sum(counts)) / len(counts)


@register("swap")
def swap(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, loss_fn: LossFn | None = None,
         samples: int = 16, repeats: int = 4, seed: int = 0) -> float:
    """SWAP-Score (Peng et al., ICLR 2024), the official ``SWAP`` class and runner: hooks on every
    ``nn.ReLU`` whose input is 4-D, each neuron's binary pattern [output > 0] over the first
    ``samples`` (16, the official ``--input_samples``) images of the batch, score = the number of
    distinct patterns (unique rows of the neurons x samples matrix; patterns packed into int64
    words, one ``torch.unique``). Network re-initialised N(0, 1) (conv / linear weights, BN weight
    1 bias 0) and the count averaged over ``repeats`` draws seeded by ``seed``: 4 by default
    where the official runner averages 32 (CPU cost: ~0.3 s per draw for a full NB201 net; one
    draw's count varies by 1-5 % across seeds, far less than it does across nets);
    training mode (BatchNorm with batch statistics), no labels, no backward. A model without
    conv ReLUs uses all its ``nn.ReLU`` outputs; NaN without any ``nn.ReLU``."""
    return swap_count(model, inputs, targets, samples=samples, repeats=repeats, seed=seed)


def regular_factor(model: nn.Module, mu: float = NB201_MU, sigma: float = NB201_SIGMA) -> float:
    """exp(-(P - mu)^2 / sigma), P = the number of parameters in thousands (official units)."""
    p = sum(t.numel() for t in model.parameters()) / 1e3
    return math.exp(-((p - mu) ** 2) / sigma)


@register("reg_swap")
def reg_swap(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, loss_fn: LossFn | None = None,
             mu: float = NB201_MU, sigma: float = NB201_SIGMA, samples: int = 16, repeats: int = 4,
             seed: int = 0) -> float:
    """Regularised SWAP-Score (Peng et al., ICLR 2024): ``swap`` x exp(-(P - mu)^2 / sigma) with P
    the parameter count in thousands (official ``cal_regular_factor``). mu and sigma set the
    preferred size and the bell's width; the defaults (mu = 1500, sigma = 1.5e6, i.e. 1.5 M
    parameters) are OUR choice for NB201 (the paper's NB201 values could not be retrieved), see
    ``NB201_MU``. For another space pass the space's own mu and sigma."""
    count = swap_count(model, inputs, targets, samples=samples, repeats=repeats, seed=seed)
    return count * regular_factor(model, mu, sigma)
