"""MeCo (Jiang, Wang & Bie, NeurIPS 2023): minimum eigenvalue of the feature maps' correlation.

Definition as the authors' NAS-Bench-201 script (HamsterMimi/MeCo, ``correlation/NAS_Bench_201.py``):
a forward hook on *every* module (``named_modules``, the network itself and containers included)
takes the first sample of the module's output, ``f = out[0]`` of shape (C, H, W), reshapes it to
C rows of H*W values and forms the C x C Pearson correlation matrix of the channels (NaN / inf
entries set to 0); the module contributes that matrix's minimum eigenvalue; the score is the sum
over module calls. One sample, one forward pass, no labels, no backward.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from eznas.proxies.registry import LossFn, register
from eznas.proxies.common import to_device, working_copy


def channel_correlation(fea: torch.Tensor) -> torch.Tensor:
    """C x C Pearson correlation of the rows of ``fea`` (C, ...) in float64, NaN / inf set to 0
    (constant channels, a single position). ``fea`` is one sample's feature map."""
    c = fea.shape[0]
    x = fea.detach().reshape(c, -1).double()
    corr = torch.corrcoef(x).reshape(c, c) if x.shape[1] > 1 else torch.full((c, c), math.nan, dtype=torch.float64)
    return torch.nan_to_num(corr, nan=0.0, posinf=0.0, neginf=0.0)


def min_eigenvalues(matrices: list[torch.Tensor]) -> torch.Tensor:
    """The minimum eigenvalue of each symmetric matrix, batched over matrices of equal size
    (one ``eigvalsh`` per size), in input order."""
    out = torch.empty(len(matrices), dtype=torch.float64)
    by_size: dict[int, list[int]] = {}
    for i, m in enumerate(matrices):
        by_size.setdefault(m.shape[0], []).append(i)
    for idx in by_size.values():
        vals = torch.linalg.eigvalsh(torch.stack([matrices[i] for i in idx]))
        out[idx] = vals[:, 0].to("cpu", torch.float64)
    return out


@register("meco")
def meco(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, loss_fn: LossFn | None = None,
         sample: int = 0, noise_image: bool = False, channels: int | None = None, seed: int = 0) -> float:
    """MeCo (Jiang et al., NeurIPS 2023), the authors' NB201 definition: the network (a deep copy,
    PyTorch default initialisation, training mode: BatchNorm with the statistics of the one image)
    runs on ONE image, ``inputs[sample]`` (the official script's default batch size 1; ``noise_image=True``
    uses a seeded Gaussian image of the same shape, as their DARTS-space variant does). Every
    module call whose output is a tensor contributes lambda_min of the C x C Pearson correlation
    of its first sample's channels (NaN / inf entries zeroed, as theirs); the score is the sum.
    Modules whose output is not a tensor are skipped (theirs indexes a tuple's first element).
    Note the sum counts a tensor once per module that returns it (e.g. a BatchNorm output and the
    ReLU-Conv-BN block around it), so the score depends on the module nesting, as the official one.
    ``channels=k`` gives MeCo_opt: k channels drawn at random per module (seeded; all when C <= k)
    and lambda_min scaled by C / k. Correlations and eigenvalues in float64 (theirs: float32 ``eig``)."""
    net = working_copy(model)
    x, _ = to_device(net, inputs, targets)
    gen = torch.Generator().manual_seed(int(seed))
    if noise_image:
        x = torch.randn(x[sample:sample + 1].shape, generator=gen).to(x.device, x.dtype)
    else:
        x = x[sample:sample + 1]
    mats: list[torch.Tensor] = []
    scale: list[float] = []

    def hook(m: nn.Module, inp: tuple, out: object) -> None:
        if not isinstance(out, torch.Tensor) or out.dim() < 2:
            return
        fea = out[0]
        c = fea.shape[0]
        w = 1.0
        if channels is not None and c > channels:
            fea = fea[torch.randperm(c, generator=gen)[:channels].to(fea.device)]
            w = c / channels
        mats.append(channel_correlation(fea).cpu())
        scale.append(w)

    handles = [m.register_forward_hook(hook) for m in net.modules()]
    try:
        with torch.no_grad():
            net(x)
    finally:
        for h in handles:
            h.remove()
    if not mats:
        return math.nan
    vals = min_eigenvalues(mats) * torch.tensor(scale, dtype=torch.float64)
    vals = vals[torch.isfinite(vals)]
    return float(vals.sum())
