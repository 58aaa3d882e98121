"""Rank a handful of plain PyTorch models (from no benchmark) with an exported eznas proxy.

    eznas export runs/quickstart --out proxy.py
    python examples/rank_plain_models.py proxy.py          # or a baseline name, e.g. synflow

The proxy is loaded with ``eznas.load_proxy``, which parses the exported file and never executes
it (pass ``--trust`` to import it as Python instead). The models use ordinary ``nn.Conv2d`` /
``nn.BatchNorm2d`` / ``nn.ReLU`` modules, so the proxy treats every conv as a unit (see
``eznas.runtime.units``). Inputs are one batch of random images (or CIFAR-10 with ``--cifar``, which
needs EZNAS_DATA_DIR). Runs on CPU in seconds.
"""
from __future__ import annotations

import argparse
import sys
import time

import torch
from torch import nn

import eznas


def conv_bn(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True))


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.short = (nn.Identity() if stride == 1 and c_in == c_out else
                      nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.short(x))


def head(c: int, classes: int = 10) -> nn.Sequential:
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, classes))


def tiny_resnet(width: int = 16) -> nn.Module:
    return nn.Sequential(conv_bn(3, width), BasicBlock(width, width), BasicBlock(width, 2 * width, 2),
                         BasicBlock(2 * width, 4 * width, 2), head(4 * width))


def plain_cnn(width: int = 16, depth: int = 4) -> nn.Module:
    layers, c = [conv_bn(3, width)], width
    for i in range(depth - 1):
        layers.append(conv_bn(c, c * 2 if i % 2 else c, 2 if i % 2 else 1))
        c = c * 2 if i % 2 else c
    return nn.Sequential(*layers, head(c))


def pointwise_net(width: int = 32) -> nn.Module:
    """MLP-like: 1x1 convs only after a strided 4x4 patch embedding, no BatchNorm."""
    return nn.Sequential(nn.Conv2d(3, width, 4, 4), nn.ReLU(), nn.Conv2d(width, width, 1), nn.ReLU(),
                         nn.Conv2d(width, width, 1), nn.ReLU(), head(width))


MODELS = {
    "tiny-resnet-16": lambda: tiny_resnet(16),
    "tiny-resnet-32 (wider)": lambda: tiny_resnet(32),
    "plain-cnn-4": lambda: plain_cnn(16, 4),
    "plain-cnn-8 (deeper)": lambda: plain_cnn(16, 8),
    "pointwise-net": lambda: pointwise_net(32),
}


def batch(cifar: bool, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    if cifar:
        from eznas.batches import make_batches

        b = make_batches("cifar10", n, seed=0)
        return b.D, b.targets
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="rank plain PyTorch models with an eznas proxy")
    ap.add_argument("proxy", help="a file written by `eznas export`, a run directory or a baseline name")
    ap.add_argument("--trust", action="store_true", help="import the proxy file as Python instead of parsing it")
    ap.add_argument("--cifar", action="store_true", help="score on a CIFAR-10 batch instead of random images")
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args(argv)
    torch.set_num_threads(min(4, torch.get_num_threads()))
    try:
        proxy = eznas.load_proxy(args.proxy, trust=args.trust)
    except eznas.EznasError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"proxy: {getattr(proxy, 'infix', args.proxy)}")
    inputs, targets = batch(args.cifar, args.batch_size)
    rows = []
    for name, make in MODELS.items():
        torch.manual_seed(0)
        model = make()
        t0 = time.perf_counter()
        score = float(proxy(model, inputs, targets))
        rows.append((score, name, sum(p.numel() for p in model.parameters()), time.perf_counter() - t0))
    rows.sort(key=lambda r: (r[0] != r[0], -r[0] if r[0] == r[0] else 0.0))  # NaN last
    print(f"{'rank':>4}  {'model':24s} {'score':>12s} {'params':>9s} {'seconds':>8s}")
    for i, (score, name, params, sec) in enumerate(rows, 1):
        print(f"{i:>4}  {name:24s} {score:12.5g} {params:9d} {sec:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
