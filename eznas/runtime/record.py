"""Recording: hooks that sketch every unit's 22 tensors during one forward + backward pass per
input D, N, P (BatchNorm in training mode), and the drawing of N and P from a seed."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from eznas.runtime.sketch import SketchIndex, make_index, weight_matrix
from eznas.runtime.tensors import FAMILY, INDEX, TENSOR_NAMES, sketch_seed
from eznas.runtime.units import find_units, unit_weight


class Recorder:
    """Hooks on every unit of ``model`` that fill ``values`` (units, 22, R, s, s) with sketches and
    ``valid`` with their block masks. ``on_tensor(unit, name, full)`` optionally sees every full
    tensor before it is sketched. Call :meth:`close` to remove the hooks."""

    def __init__(self, model: nn.Module, R: int, s: int, seed: int,
                 on_tensor: Callable[[int, str, torch.Tensor], None] | None = None) -> None:
        self.R, self.s, self.seed, self.on_tensor = R, s, seed, on_tensor
        self.units, self.plain = find_units(model)
        if not self.units:
            raise ValueError("eznas proxy: the model has no ReLU-Conv-BN unit and no nn.Conv2d to record")
        self.values = torch.zeros(len(self.units), len(TENSOR_NAMES), R, s, s)
        self.valid = torch.zeros(len(self.units), len(TENSOR_NAMES), R, s, s, dtype=torch.bool)
        self._index: dict[tuple[Any, ...], SketchIndex] = {}
        self._input = "D"
        self._handles: list[Any] = []
        self._z: dict[int, tuple[torch.Tensor, Any]] = {}  # plain: unit -> (tensor taken as Z, its version)
        self._z_token: dict[int, object] = {}
        self._a_from_z: dict[int, bool] = {}
        if self.plain:
            self._hook_plain(model)
        else:
            self._hook_units()

    # -- hooks
    def _hook_units(self) -> None:
        for u, unit in enumerate(self.units):
            self._handles.append(unit.register_forward_pre_hook(self._input_hook(u)))
            self._handles.append(unit.bn.register_forward_hook(self._output_hook(u, "Z")))
            self._handles.append(unit.relu.register_forward_hook(self._output_hook(u, "A")))

    def _hook_plain(self, model: nn.Module) -> None:
        for u, conv in enumerate(self.units):
            self._handles.append(conv.register_forward_pre_hook(self._input_hook(u)))
            self._handles.append(conv.register_forward_hook(self._conv_hook(u)))
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                self._handles.append(m.register_forward_hook(self._bn_hook))
            elif isinstance(m, nn.ReLU):
                self._handles.append(m.register_forward_hook(self._relu_hook))

    def _input_hook(self, u: int) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            self._record(u, "X", args[0])
        return hook

    def _output_hook(self, u: int, role: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...], out: torch.Tensor) -> None:
            self._record(u, role, out)
        return hook

    def _conv_hook(self, u: int) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...], out: torch.Tensor) -> None:
            self._take_z(u, out)
        return hook

    def _owner(self, t: Any, bumps: int = 0) -> int | None:
        """The unit whose Z is ``t``, unmodified since (but for ``bumps`` in-place ops by the caller)."""
        for u, (z, version) in self._z.items():
            if z is t:
                current = getattr(t, "_version", None)
                return u if current is None or current == version + bumps else None
        return None

    def _bn_hook(self, module: nn.Module, args: tuple[Any, ...], out: torch.Tensor) -> None:
        u = self._owner(args[0])
        if u is not None:
            self._take_z(u, out)

    def _relu_hook(self, module: nn.Module, args: tuple[Any, ...], out: torch.Tensor) -> None:
        u = self._owner(args[0], 1 if out is args[0] else 0)
        if u is not None:
            del self._z[u]
            self._a_from_z[u] = False
            self._record(u, "A", out)

    def _take_z(self, u: int, t: torch.Tensor) -> None:
        token = object()
        self._z[u], self._z_token[u], self._a_from_z[u] = (t, getattr(t, "_version", None)), token, True
        x = self._input
        self._sketch(u, "Z_" + x, t)
        self._sketch(u, "A_" + x, torch.relu(t.detach()))
        if t.requires_grad:
            t.register_hook(self._z_grad_hook(u, token, x))

    def _z_grad_hook(self, u: int, token: object, x: str) -> Callable[[torch.Tensor], None]:
        def hook(g: torch.Tensor) -> None:
            if self._z_token.get(u) is token:
                self._sketch(u, "gZ_" + x, g)
                if self._a_from_z.get(u):
                    self._sketch(u, "gA_" + x, g)
        return hook

    # -- sketches
    def _record(self, u: int, role: str, t: torch.Tensor) -> None:
        name = role + "_" + self._input
        self._sketch(u, name, t)
        if t.requires_grad:
            t.register_hook(lambda g, u=u, n="g" + name: self._sketch(u, n, g))

    def _sketch(self, u: int, name: str, t: torch.Tensor) -> None:
        if self.on_tensor is not None:
            self.on_tensor(u, name, t.detach())
        fam = FAMILY[name]
        if fam == "W":
            t = weight_matrix(t)
        key = (u, fam, tuple(t.shape), t.device)
        idx = self._index.get(key)
        if idx is None:
            idx = make_index(tuple(t.shape), self.R, self.s, sketch_seed(self.seed, u, fam))
            if t.device.type != "cpu":
                idx = idx.to(t.device)
            self._index[key] = idx
        i = INDEX[name]
        self.values[u, i] = idx.take(t).float().cpu()
        self.valid[u, i] = idx.valid.cpu()

    def set_input(self, name: str) -> None:
        self._input = name
        self._z.clear()

    def record_weights(self, name: str | None = None) -> None:
        """Sketch W (name None) or the weight gradients ``gW_<input>`` after a backward pass."""
        for u, unit in enumerate(self.units):
            w = (unit if self.plain else unit_weight(unit)).weight
            if name is None:
                self._sketch(u, "W", w)
            elif w.grad is not None:
                self._sketch(u, name, w.grad)

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._z.clear()


def draw_noise(inputs: torch.Tensor, g: torch.Generator, noise_scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, P) for data D = ``inputs``: N standard Gaussian of D's shape, then P = D + noise_scale *
    Gaussian, both drawn on the CPU in float32 from ``g`` and returned on D's device and dtype."""
    d = inputs.detach().to("cpu", torch.float32)
    n = torch.randn(d.shape, generator=g)
    p = d + noise_scale * torch.randn(d.shape, generator=g)
    return n.to(inputs.device, inputs.dtype), p.to(inputs.device, inputs.dtype)


def dnp_inputs(inputs: torch.Tensor, seed: int, noise_scale: float, noise: torch.Tensor | None = None,
               perturbed: torch.Tensor | None = None) -> list[tuple[str, torch.Tensor]]:
    """[("D", inputs), ("N", noise), ("P", perturbed)], N and P drawn from
    ``torch.Generator().manual_seed(seed)`` unless given."""
    if noise is None or perturbed is None:
        drawn_n, drawn_p = draw_noise(inputs, torch.Generator().manual_seed(int(seed)), noise_scale)
        noise = drawn_n if noise is None else noise
        perturbed = drawn_p if perturbed is None else perturbed
    return [("D", inputs), ("N", noise), ("P", perturbed)]


def _save_state(model: nn.Module) -> tuple[Any, ...]:
    return ([(m, m.training) for m in model.modules()], [(p, p.grad) for p in model.parameters()],
            [(b, b.detach().clone()) for b in model.buffers()])


def _restore_state(state: tuple[Any, ...]) -> None:
    modes, grads, buffers = state
    for m, mode in modes:
        m.training = mode
    for p, g in grads:
        p.grad = g
    with torch.no_grad():
        for b, saved in buffers:
            b.copy_(saved)


def run_passes(model: nn.Module, batches: list[tuple[str, torch.Tensor]], targets: torch.Tensor,
               loss_fn: Callable[..., torch.Tensor], rec: Recorder | None = None) -> None:
    """One forward + backward pass per (name, input), BatchNorm in training mode. The loss is
    ``loss_fn(output, targets)``, or ``loss_fn(output, targets, input)`` when ``loss_fn`` has a
    true attribute ``takes_inputs`` (a loss that needs the pass's own input, e.g. a reconstruction)."""
    model.train()
    with_inputs = bool(getattr(loss_fn, "takes_inputs", False))
    if rec is not None:
        rec.record_weights(None)
    for name, x in batches:
        model.zero_grad(set_to_none=True)
        if rec is not None:
            rec.set_input(name)
        out = model(x)
        if isinstance(out, (tuple, list)):
            out = out[0]
        (loss_fn(out, targets, x) if with_inputs else loss_fn(out, targets)).backward()
        if rec is not None:
            rec.record_weights("gW_" + name)
    model.zero_grad(set_to_none=True)


def record_statistics(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, R: int, s: int, seed: int,
                      noise_scale: float, loss_fn: Callable[..., torch.Tensor] | None = None,
                      noise: torch.Tensor | None = None, perturbed: torch.Tensor | None = None,
                      on_tensor: Callable[[int, str, torch.Tensor], None] | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Sketched statistics (units, 22, R, s, s) float32 and their validity masks, recorded under
    ``torch.manual_seed(seed)``; the model's mode, gradients and buffers are restored afterwards."""
    batches = dnp_inputs(inputs, seed, noise_scale, noise, perturbed)
    state = _save_state(model)
    rec = Recorder(model, R, s, seed, on_tensor)
    devices = [inputs.device.index or 0] if inputs.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices), torch.enable_grad():
            torch.manual_seed(int(seed))
            run_passes(model, batches, targets, loss_fn or F.cross_entropy, rec)
    finally:
        rec.close()
        _restore_state(state)
    return rec.values, rec.valid
