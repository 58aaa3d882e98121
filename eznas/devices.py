"""Which torch device statistics, baselines, ``eznas score`` and ``eznas nas`` run on.

Config key ``device`` / CLI ``--device``: ``auto`` (default: CUDA when available, else CPU),
``cpu``, ``cuda`` or ``cuda:N``. A name is checked in two steps: its spelling when the config is
read (:func:`check_name`, no torch needed), its availability when work starts
(:func:`resolve`), so a config written on a GPU machine still loads elsewhere. Every problem is
one :class:`EznasError` line.
"""
from __future__ import annotations

import re

import torch

from eznas.errors import EznasError

AUTO = "auto"
VALID = "auto, cpu, cuda, cuda:N"
_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def check_name(name: object, what: str = "device") -> str:
    """``name`` if it is spelled like a device eznas accepts, else one error line naming ``what``."""
    if not isinstance(name, str) or not _PATTERN.match(name):
        raise EznasError(f"{what} {name!r} is not a device; valid: {VALID}")
    return name


def resolve(name: str, what: str = "device", cuda_available: bool | None = None,
            cuda_count: int | None = None) -> torch.device:
    """The torch device ``name`` stands for on this machine. ``auto`` picks ``cuda`` when CUDA is
    available, else ``cpu``; ``cuda`` / ``cuda:N`` without CUDA (or beyond the device count) is an
    error. ``cuda_available`` / ``cuda_count`` replace torch's answers (tests)."""
    check_name(name, what)
    available = torch.cuda.is_available() if cuda_available is None else cuda_available
    if name == AUTO:
        if available:
            full_float32()
        return torch.device("cuda" if available else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if not available:
        raise EznasError(f"{what} {name!r}: CUDA is not available here (torch {torch.__version__}, "
                         f"built {'with' if torch.backends.cuda.is_built() else 'without'} CUDA); use cpu or auto")
    count = torch.cuda.device_count() if cuda_count is None else cuda_count
    index = int(name.split(":")[1]) if ":" in name else 0
    if index >= count:
        raise EznasError(f"{what} {name!r}: this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1})")
    full_float32()
    return torch.device(name)


def full_float32() -> None:
    """Turn off TF32 for CUDA convolutions and matrix products (cuDNN allows it by default): the
    networks eznas scores are small, so TF32 saves no time, and full float32 keeps CUDA scores
    within float32 rounding of the CPU's (``experiments/gpu_check.py`` measures it)."""
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False


def resolved_name(name: str, what: str = "device") -> str:
    """:func:`resolve` as a string (``"cpu"``, ``"cuda"``, ``"cuda:1"``), e.g. to send to workers."""
    return str(resolve(name, what))


def cli_or_config(cli: str | None, config: str) -> str:
    """The ``--device`` option when given, else the config's ``device`` (both spell-checked)."""
    return check_name(cli, "--device") if cli is not None else check_name(config, "config key 'device'")


def to_device(device: torch.device | str, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``tensors`` moved to ``device`` (no copy when they are already there)."""
    return tuple(t.to(device) for t in tensors)
