"""TransNAS-Bench-101 micro: TNB's ``64-41414-a_bc_def`` networks for its seven tasks.

Arch key (as in ``zc_transbench101_micro.json``): a tuple of 6 digits ``(a, b, c, d, e, f)``.
NASLib looks a key up in TransNAS-Bench-101 by formatting the digits straight into TNB's arch
string ``64-41414-a_bc_def`` (``convert_naslib_to_transbench101_micro``), so every published
number of a record (``params``, ``flops``, ``val_accuracy``) belongs to the network TNB's own
code builds from that string (checked here for ``params``: all 7 x 471 records). The digits are therefore **TNB op codes in TNB's edge order**:

- ops: 0 zero, 1 skip_connect (a FactorizedReduce on a reducing edge), 2 ReLU-Conv-BN 1x1,
  3 ReLU-Conv-BN 3x3;
- edges (key position -> node i -> node j, node 0 = cell input, node 3 = output):
  0: 0->1, 1: 0->2, 2: 1->2, 3: 0->3, 4: 1->3, 5: 2->3.

This is *not* the reading NASLib's graph class (and the data README) give the key, NB201's
edge order over [Identity, Zero, ReLUConvBN3x3, ReLUConvBN1x1]: built with that reading, only
15 of the 471 class_scene records have their published ``params`` (coincidences), with TNB's
reading all 471 of every task do. E.g. ``(1, 0, 1, 0, 0, 1)``, ``(1, 0, 0, 0, 1, 0)`` and
``(0, 1, 1, 0, 0, 1)`` all have 0.225631 M: exactly one skip edge leaves the cell input (one
FactorizedReduce per reducing cell), which holds for TNB's reading only.

Encoder (TNB ``MacroNet(net_code, structure="backbone")``, base width C = 64): stem conv 3x3
stride 2 (3 -> C/2) + BN, then a ReLU-Conv-BN 3x3 stride 2 (C/2 -> C); five modules coded
``41414`` (4: stride 2 and channels x2, 1: unchanged), each of 2 micro cells, the first cell
of a ``4`` module reducing (edges leaving node 0 have stride 2 and C_in -> 2 C_in, the other
edges work at 2 C_in). Output channels 8C = 512. Conv weights get TNB's Kaiming init
(fan_out, ReLU); BN weight 1, bias 0.

Decoders (TNB ``model_builder.create_model``), one per task; ``classes`` gives its outputs:

============== ======= ===================================================================
task           outputs decoder
============== ======= ===================================================================
class_scene    63      global average pool + linear 512 -> 63 (FFDecoder)
class_object   100     global average pool + linear 512 -> 100 (FFDecoder)
room_layout    9       global average pool + linear 512 -> 9 (FFDecoder, regression)
jigsaw         1000    9 tiles through the shared encoder, features concatenated
                       (9 x 512), global average pool + linear 4608 -> 1000 (SiameseDecoder)
autoencoder    3       GenerativeDecoder: 14 conv / deconv 3x3 layers (1024 ... 16 channels,
                       BN + LeakyReLU 0.2, tanh output), 5 stride-2 deconvs (x32)
normal         3       same GenerativeDecoder as autoencoder
segmentsemantic 17     SegmentationDecoder: conv 512 -> 1024, conv 1024 -> 512, deconvs
                       512 -> 256 -> 128 -> 64 -> 32 -> 32, conv 32 -> 17 (x32)
============== ======= ===================================================================

TNB sizes the dense decoders for the encoder's feature width at its default 224 x 224 input
(56 / 8 = 7): ``int(log2(256 / 7)) = 5`` upsamplings. The autoencoder / normal GAN's
discriminator is not part of the model counted by ``params`` and is not built. With these
definitions all 7 x 471 published ``params`` are reproduced exactly (decoder sizes: 22,871,859
for autoencoder / normal, 11,024,177 for segmentsemantic, 4,609,000 for jigsaw).

Our inputs: ``input_size`` is 32 for every task, the real CIFAR-10 resolution (no resampling
of the images). The encoder reduces by 32, so a 32 x 32 image gives a 1 x 1 x 512 feature map
(pooled by the classification heads) and the dense decoders' five x2 upsamplings return
exactly 32 x 32, the input's own pixel grid, so dense losses compare pixel for pixel. (64 would
also work, 2 x 2 features, at 4x the compute.) Jigsaw: the image is resized (bilinear) to
48 x 48 and cut into a 3 x 3 grid of non-overlapping 16 x 16 tiles, kept in order; each tile
goes through the encoder (16 -> 1 x 1 features).

Losses (:meth:`TNBMicro.loss`) from our class labels ``targets`` (0..9) and ``inputs``:
cross-entropy on the logits for class_scene, class_object and jigsaw (labels are valid
classes of each); segmentsemantic: per-pixel cross-entropy over the 17 channels with every
pixel labelled with its image's label; autoencoder: L1 (TNB's reconstruction loss) to the
input resized to the output; normal: L1 to a pseudo surface-normal map of the input (its
channel-mean treated as a height field h: normals ``(-dh/dx, -dh/dy, 1)`` normalised to
length 1, central differences, replicate padding); room_layout: MSE of the 9 outputs to 0.

``width`` overrides the base width C (even, >= 2; dense decoder channels scale by C / 64 too),
``depth`` the cells per module (2).

Units: the stem's ReLU-Conv-BN and every ReLU-Conv-BN 1x1 / 3x3 of a cell edge.
FactorizedReduce and the decoders' Conv-BN-LeakyReLU layers are not units.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from eznas.errors import EznasError
from eznas.spaces import SearchSpace, parse_ints, register
from eznas.spaces.common import ReLUConvBN
from eznas.spaces.nb201 import Cell

OPS = ("zero", "skip_connect", "relu_conv_bn_1x1", "relu_conv_bn_3x3")
#: key position -> (from node, to node), TNB's order of the digits in ``a_bc_def``
EDGES = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
MACRO = "41414"
BASE_WIDTH = 64
CELLS_PER_MODULE = 2
#: encoder feature width TNB's decoders are sized for: its default 224 x 224 input / 32
TNB_FEATURE_WIDTH = 224 // 32
TNB_TARGET_WIDTH = 256
INPUT_SIZE = 32


# ----------------------------------------------------------------------------- cell operations
class Zero(nn.Module):
    """TNB's zero op: ``x * 0``, or fresh zeros of the reduced shape when channels change."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.c_in, self.c_out, self.stride = c_in, c_out, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.c_in == self.c_out:
            return x[:, :, ::self.stride, ::self.stride].mul(0.0)
        n, _, h, w = x.shape
        return x.new_zeros(n, self.c_out, (h + 1) // self.stride, (w + 1) // self.stride)


class FactorizedReduce(nn.Module):
    """ReLU; two stride-2 1x1 convs, the second on the input shifted by one pixel (zero padded
    at the bottom / right); concat; BN (affine)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        if c_out % 2:
            raise EznasError(f"FactorizedReduce needs an even channel count, got {c_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=stride, padding=0, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=stride, padding=0, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        shifted = F.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1))


def make_op(op: int, c_in: int, c_out: int, stride: int) -> nn.Module:
    """The module of TNB op code ``op`` on an edge ``c_in -> c_out`` with ``stride``."""
    if op == 0:
        return Zero(c_in, c_out, stride)
    if op == 1:
        return nn.Identity() if stride == 1 and c_in == c_out else FactorizedReduce(c_in, c_out, stride)
    kernel = 1 if op == 2 else 3
    return ReLUConvBN(c_in, c_out, kernel, stride, kernel // 2)


class MicroCell(Cell):
    """TNB's micro cell: NB201's DAG evaluation on TNB's edge order; returns node 3. Edges leaving
    node 0 map ``c_in -> c_out`` with ``stride``, the others ``c_out -> c_out``, stride 1."""

    edge_order = EDGES

    def __init__(self, ops: tuple[int, ...], c_in: int, c_out: int, stride: int) -> None:
        nn.Module.__init__(self)
        self.edges = nn.ModuleList(
            make_op(o, c_in, c_out, stride) if i == 0 else make_op(o, c_out, c_out, 1)
            for o, (i, _) in zip(ops, EDGES))


# ----------------------------------------------------------------------------- encoder
class Encoder(nn.Module):
    """TNB ``MacroNet(f"{C}-41414-...", structure="backbone")``: stem + five modules of cells."""

    def __init__(self, ops: tuple[int, ...], width: int = BASE_WIDTH, depth: int = CELLS_PER_MODULE) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, width // 2, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(width // 2),
            ReLUConvBN(width // 2, width, 3, 2, 1))
        layers: list[nn.Module] = []
        c = width
        for code in MACRO:
            c_out = 2 * c if int(code) % 2 == 0 else c
            stride = 2 if int(code) > 2 else 1
            layers.append(MicroCell(ops, c, c_out, stride))
            layers.extend(MicroCell(ops, c_out, c_out, 1) for _ in range(depth - 1))
            c = c_out
        self.cells = nn.Sequential(*layers)
        self.out_channels = c
        self._kaiming_init()

    def _kaiming_init(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cells(self.stem(x))


# ----------------------------------------------------------------------------- decoders
class ConvLayer(nn.Module):
    """TNB decoder layer: conv (or stride-2 transposed conv, x2) 3x3 with bias, BN, activation."""

    def __init__(self, c_in: int, c_out: int, deconv: bool = False, act: nn.Module | None = None,
                 norm: bool = True) -> None:
        super().__init__()
        self.conv = (nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=1) if deconv
                     else nn.Conv2d(c_in, c_out, 3, stride=1, padding=1))
        self.norm = nn.BatchNorm2d(c_out) if norm else nn.Identity()
        self.act = act if act is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


def _num_upsample() -> int:
    return int(math.log2(TNB_TARGET_WIDTH / TNB_FEATURE_WIDTH))


def _leaky() -> nn.Module:
    return nn.LeakyReLU(0.2, inplace=False)


def generative_decoder(c_in: int, out_channels: int, scale: float = 1.0) -> nn.Sequential:
    """TNB ``GenerativeDecoder``: 13 conv / deconv layers + a tanh conv; channels times ``scale``."""
    n = _num_upsample()
    plan = [(1024, False), (1024, False), (512, n == 6), (512, False), (256, n >= 5), (128, False),
            (64, n >= 4), (64, False), (32, n >= 3), (32, False), (16, True), (32, False), (16, True)]
    layers: list[nn.Module] = []
    c = c_in
    for c_out, deconv in plan:
        layers.append(ConvLayer(c, _scaled(c_out, scale), deconv, _leaky()))
        c = _scaled(c_out, scale)
    layers.append(ConvLayer(c, out_channels, act=nn.Tanh(), norm=False))
    return nn.Sequential(*layers)


def segmentation_decoder(c_in: int, out_channels: int, scale: float = 1.0) -> nn.Sequential:
    """TNB ``SegmentationDecoder``: conv to 1024, halving convs, halving deconvs, a deconv, conv."""
    n = _num_upsample()
    c = _scaled(1024, scale)
    layers: list[nn.Module] = [ConvLayer(c_in, c, act=_leaky())]
    for deconv in [False] * (6 - n) + [True] * (n - 1):
        layers.append(ConvLayer(c, max(1, c // 2), deconv, _leaky()))
        c = max(1, c // 2)
    layers.append(ConvLayer(c, c, True, _leaky()))
    layers.append(ConvLayer(c, out_channels, norm=False))
    return nn.Sequential(*layers)


def _scaled(c: int, scale: float) -> int:
    return max(1, int(round(c * scale)))


def linear_head(c_in: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, out))


# ----------------------------------------------------------------------------- networks
class TNBNetwork(nn.Module):
    """Encoder + task decoder (classification, regression and dense tasks)."""

    def __init__(self, encoder: Encoder, decoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class JigsawNetwork(TNBNetwork):
    """TNB's SiameseNet on a 3 x 3 grid of tiles cut from the (resized) image."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tiles = image_to_tiles(x)
        n, k = tiles.shape[:2]
        feats = self.encoder(tiles.flatten(0, 1))
        return self.decoder(feats.reshape(n, k * feats.shape[1], *feats.shape[2:]))


def image_to_tiles(x: torch.Tensor, grid: int = 3) -> torch.Tensor:
    """(n, c, s, s) -> (n, 9, c, s/2, s/2): bilinear resize to 3 tiles of side s // 2, row-major."""
    n, c, h, _ = x.shape
    t = max(1, h // 2)
    x = F.interpolate(x, size=(grid * t, grid * t), mode="bilinear", align_corners=False)
    x = x.reshape(n, c, grid, t, grid, t).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(n, grid * grid, c, t, t)


# ----------------------------------------------------------------------------- losses
def pseudo_normals(x: torch.Tensor) -> torch.Tensor:
    """Unit normals (n, 3, h, w) of the channel-mean of ``x`` taken as a height field."""
    h = F.pad(x.mean(dim=1, keepdim=True), (1, 1, 1, 1), mode="replicate")
    dx = (h[:, :, 1:-1, 2:] - h[:, :, 1:-1, :-2]) / 2
    dy = (h[:, :, 2:, 1:-1] - h[:, :, :-2, 1:-1]) / 2
    n = torch.cat([-dx, -dy, torch.ones_like(dx)], dim=1)
    return n / n.norm(dim=1, keepdim=True)


def _resized(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    if x.shape[-2:] == like.shape[-2:]:
        return x
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


# ----------------------------------------------------------------------------- the space
class TNBMicro(SearchSpace):
    name = "tnb_micro"
    classes = {"class_scene": 63, "class_object": 100, "autoencoder": 3, "normal": 3, "jigsaw": 1000,
               "room_layout": 9, "segmentsemantic": 17}

    def decode(self, key: str) -> tuple[int, ...]:
        ops = tuple(parse_ints(key, self.name))
        if len(ops) != len(EDGES) or any(o < 0 or o >= len(OPS) for o in ops):
            raise EznasError(f"malformed tnb_micro arch key {key!r}: expected 6 op indices in 0..3")
        return ops

    def encode(self, arch: tuple[int, ...]) -> str:
        return str(tuple(int(o) for o in arch))

    def input_size(self, dataset: str) -> int:
        self.num_classes(dataset)
        return INPUT_SIZE

    def build(self, key: str, dataset: str = "class_scene", width: int | None = None,
              depth: int | None = None) -> nn.Module:
        ops = self.decode(key)
        out = self.num_classes(dataset)
        width = BASE_WIDTH if width is None else width
        depth = CELLS_PER_MODULE if depth is None else depth
        if width < 2 or width % 2:
            raise EznasError(f"tnb_micro width must be an even number >= 2, got {width}")
        if depth < 1:
            raise EznasError(f"tnb_micro depth must be >= 1, got {depth}")
        encoder = Encoder(ops, width, depth)
        c = encoder.out_channels
        scale = width / BASE_WIDTH
        if dataset == "jigsaw":
            return JigsawNetwork(encoder, linear_head(9 * c, out))
        if dataset == "segmentsemantic":
            return TNBNetwork(encoder, segmentation_decoder(c, out, scale))
        if dataset in ("autoencoder", "normal"):
            return TNBNetwork(encoder, generative_decoder(c, out, scale))
        return TNBNetwork(encoder, linear_head(c, out))

    def loss(self, output: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor,
             dataset: str) -> torch.Tensor:
        self.num_classes(dataset)
        if dataset == "room_layout":
            return F.mse_loss(output, torch.zeros_like(output))
        if dataset == "segmentsemantic":
            n, _, h, w = output.shape
            return F.cross_entropy(output, targets.view(n, 1, 1).expand(n, h, w))
        if dataset == "autoencoder":
            return F.l1_loss(output, _resized(inputs, output))
        if dataset == "normal":
            return F.l1_loss(output, pseudo_normals(_resized(inputs, output)))
        return F.cross_entropy(output, targets)

    def random_key(self, rng: np.random.Generator) -> str:
        return self.encode(tuple(int(o) for o in rng.integers(0, len(OPS), size=len(EDGES))))


register(TNBMicro())
