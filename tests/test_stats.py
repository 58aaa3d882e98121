"""Statistics: 22 sketched tensors per unit, aligned indices, deterministic, atomic resumable cache."""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from eznas import records
from eznas.errors import EznasError
from eznas.runtime import INDEX, TENSOR_NAMES, Recorder, make_index, run_passes, sketch_seed
from eznas.spaces import build, units
from eznas.stats import StatsSettings, build_cache, compute_net, entry_path, load_task_stats, net_batches, read_entry

ARCH = "(0, 2, 3, 2, 3, 1)"
SMALL = dict(width=4, depth=1, batch_size=8, R=4, s=4)


def settings(**kw) -> StatsSettings:
    args = dict(space="nb201", dataset="cifar10", **SMALL)
    args.update(kw)
    return StatsSettings(**args)


def test_tensor_count_and_shapes(data_dir):
    st = settings()
    values, valid = compute_net(ARCH, st, net_batches(st))
    model = build("nb201", ARCH, width=4, depth=1)
    n_units = len(units(model))
    # 2 cells x (2 conv3x3 + 2 conv1x1) ... per stage, plus 2 units per residual block
    assert n_units == 3 * 4 + 2 * 2
    assert values.shape == (n_units, 22, 4, 4, 4)
    assert len(TENSOR_NAMES) == 22
    assert torch.isfinite(values).all()
    # weights, inputs and activations are recorded for every unit and input
    for name in ("W", "X_D", "Z_D", "A_D", "X_N", "Z_N", "A_N", "X_P", "Z_P", "A_P"):
        assert (values[:, INDEX[name]].abs().flatten(1).sum(1) > 0).all(), name


def test_sketch_matches_full_tensor_values(data_dir):
    """The sketched values are exactly the full tensor's values at the seeded indices."""
    st = settings()
    full: dict[tuple[int, str], torch.Tensor] = {}
    values, valid = compute_net(ARCH, st, net_batches(st), on_tensor=lambda u, n, t: full.__setitem__((u, n), t.clone()))
    u = 5
    for name in ("Z_D", "gZ_D", "Z_N", "A_P", "gA_P", "X_D"):
        t = full[(u, name)]
        idx = make_index(tuple(t.shape), 4, 4, sketch_seed(st.seed, u, name.split("_")[0].lstrip("g")))
        assert torch.equal(values[u, INDEX[name]], idx.take(t).float()), name


def test_dnp_and_gradient_share_indices():
    """D, N, P versions and gradients of one role use the same block positions: with an input that
    is the same tensor for D and P, their sketches coincide exactly."""
    torch.manual_seed(0)
    model = build("nb201", ARCH, width=4, depth=1, seed=0)
    rec = Recorder(model, 4, 4, seed=3)
    x = torch.randn(8, 3, 32, 32)
    y = torch.randint(0, 10, (8,))
    run_passes(model, [("D", x), ("N", torch.randn_like(x)), ("P", x.clone())], y,
               torch.nn.functional.cross_entropy, rec)
    rec.close()
    v = rec.values
    for role in ("X", "Z", "A", "gX", "gZ", "gA", "gW"):
        assert torch.allclose(v[:, INDEX[f"{role}_D"]], v[:, INDEX[f"{role}_P"]], atol=1e-6), role
        assert not torch.allclose(v[:, INDEX[f"{role}_D"]], v[:, INDEX[f"{role}_N"]]), role


def test_padding_mask_for_small_maps():
    idx = make_index((2, 3, 4, 4), R=5, s=8, seed=1)
    assert idx.valid.shape == (5, 8, 8)
    assert idx.valid.sum().item() == 5 * 16
    t = torch.randn(2, 3, 4, 4)
    out = idx.take(t)
    assert (out[~idx.valid] == 0).all()


def test_determinism_same_seed_identical_cache(tmp_path, data_dir):
    st = settings()
    for d in ("a", "b"):
        build_cache([(ARCH, st)], tmp_path / d, progress=False)
    a = entry_path(tmp_path / "a", st, ARCH)
    b = entry_path(tmp_path / "b", st, ARCH)
    va, ma = read_entry(a)
    vb, mb = read_entry(b)
    assert np.array_equal(va, vb) and np.array_equal(ma, mb)
    other = settings(seed=1)
    build_cache([(ARCH, other)], tmp_path / "a", progress=False)
    vo, _ = read_entry(entry_path(tmp_path / "a", other, ARCH))
    assert not np.array_equal(va, vo)


def test_float16_storage_keeps_small_gradients(tmp_path, data_dir):
    st = settings()
    values, valid = compute_net(ARCH, st, net_batches(st))
    build_cache([(ARCH, st)], tmp_path, progress=False)
    stored, _ = read_entry(entry_path(tmp_path, st, ARCH))
    ref = values.numpy()
    scale = np.abs(ref).reshape(ref.shape[0], 22, -1).max(2)[:, :, None, None, None]
    scale = np.where(scale > 0, scale, 1.0)
    assert (np.abs(stored - ref) / scale).max() < 1e-3  # fp16 relative to each (unit, tensor) scale
    tiny = (np.abs(ref) > 0) & (np.abs(ref) < 6e-5)  # would underflow or lose precision in plain fp16
    assert tiny.any() and (stored[tiny] != 0).all()


def test_corrupt_entry_detected_and_recomputed(tmp_path, data_dir):
    st = settings()
    build_cache([(ARCH, st)], tmp_path, progress=False)
    p = entry_path(tmp_path, st, ARCH)
    good = p.read_bytes()
    raw = bytearray(good)
    raw[len(raw) // 2] ^= 0xFF
    p.write_bytes(bytes(raw))
    messages: list[str] = []
    rep = build_cache([(ARCH, st)], tmp_path, progress=False, log=messages.append)
    assert rep.recomputed_corrupt == 1 and rep.computed == 1
    assert any("corrupt" in m for m in messages)
    read_entry(p)  # valid again
    task = records.Task("nb201", "cifar10", [ARCH], np.array([1.0]))
    p.write_bytes(b"not a zip")
    with pytest.raises(EznasError, match="corrupt"):
        load_task_stats(task, st, tmp_path)


def _build_in_child(cache: str, archs: list[str]) -> None:
    torch.set_num_threads(1)
    st = settings()
    build_cache([(a, st) for a in archs], Path(cache), progress=False)


def test_killed_build_resumes_without_recomputing(tmp_path, data_dir):
    task = records.load_task("nb201", "cifar10")
    archs = task.archs[:12]
    st = settings()
    proc = mp.get_context("spawn").Process(target=_build_in_child, args=(str(tmp_path), archs))
    proc.start()
    deadline = time.time() + 120
    while time.time() < deadline:
        done = [a for a in archs if entry_path(tmp_path, st, a).is_file()]
        if len(done) >= 3:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    done = [a for a in archs if entry_path(tmp_path, st, a).is_file()]
    assert 3 <= len(done) < len(archs), "the child should have been killed mid-build"
    mtimes = {a: entry_path(tmp_path, st, a).stat().st_mtime_ns for a in done}
    rep = build_cache([(a, st) for a in archs], tmp_path, progress=False)
    assert rep.reused == len(done) and rep.computed == len(archs) - len(done)
    assert all(entry_path(tmp_path, st, a).stat().st_mtime_ns == m for a, m in mtimes.items())


def test_load_task_stats_stacks_rows(tmp_path, data_dir):
    task = records.load_task("nb201", "cifar10").subset([0, 1, 2])
    st = settings()
    build_cache([(a, st) for a in task.archs], tmp_path, progress=False)
    ts = load_task_stats(task, st, tmp_path)
    assert ts.valid is None and load_task_stats(task, st, tmp_path, masks=True).valid.shape == ts.values.shape
    counts = [len(units(build("nb201", a, width=4, depth=1))) for a in task.archs]
    assert ts.values.shape == (sum(counts), 22, 4, 4, 4)
    assert torch.equal(torch.bincount(ts.net_index, minlength=3), torch.tensor(counts))
    sub = ts.subset([2, 0])
    assert sub.archs == [task.archs[2], task.archs[0]]
    assert torch.equal(torch.bincount(sub.net_index), torch.tensor([counts[2], counts[0]]))
    missing = records.Task("nb201", "cifar10", [task.archs[0], "(2, 2, 2, 2, 2, 2)"], np.array([1.0, 2.0]))
    with pytest.raises(EznasError, match="not cached"):
        load_task_stats(missing, st, tmp_path)


def test_swapped_entry_is_detected(tmp_path, data_dir):
    """An entry file replaced by another network's (or another setting's) is not silently used."""
    other = "(1, 0, 2, 2, 2, 1)"
    st = settings()
    build_cache([(ARCH, st), (other, st)], tmp_path, progress=False)
    mine, theirs = entry_path(tmp_path, st, ARCH), entry_path(tmp_path, st, other)
    good = mine.read_bytes()
    mine.write_bytes(theirs.read_bytes())
    task = records.Task("nb201", "cifar10", [ARCH], np.array([1.0]))
    with pytest.raises(EznasError, match=f"holds arch {other.replace('(', '.').replace(')', '.')}, not"):
        load_task_stats(task, st, tmp_path)
    messages: list[str] = []
    rep = build_cache([(ARCH, st)], tmp_path, progress=False, log=messages.append)
    assert rep.recomputed_corrupt == 1 and rep.computed == 1 and "holds arch" in messages[0]
    assert mine.read_bytes() == good  # recomputed, byte-identical
    seeded = settings(seed=1)
    entry_path(tmp_path, seeded, ARCH).parent.mkdir(parents=True, exist_ok=True)
    entry_path(tmp_path, seeded, ARCH).write_bytes(good)
    with pytest.raises(EznasError, match="other settings"):
        load_task_stats(task, seeded, tmp_path)


def test_workers_must_be_positive(capsys):
    from eznas import cli

    assert cli.main(["stats", "configs/does-not-matter.yaml", "--workers", "-3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["eznas: error: argument --workers: must be a whole number >= 1, got '-3'"]


_ORPHAN = """
import sys, torch
from pathlib import Path
from eznas.stats import StatsSettings, build_cache
torch.set_num_threads(1)
st = StatsSettings("nb201", "cifar10", width=4, depth=1, batch_size=8, R=4, s=4)
from eznas import records
archs = records.load_task("nb201", "cifar10").archs[:8]
print("start", flush=True)
build_cache([(a, st) for a in archs], Path(sys.argv[1]), workers=2, progress=False)
"""


def test_orphaned_workers_exit_quietly(tmp_path, data_dir):
    """The parent of a worker pool dies (SIGKILL): its workers exit within seconds and print nothing."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", _ORPHAN, str(tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdout.readline().strip() == "start"
    deadline = time.time() + 120
    while time.time() < deadline and not any(tmp_path.rglob("*.npz")):
        time.sleep(0.05)  # the workers are up and computing
    os.kill(proc.pid, signal.SIGKILL)
    t0 = time.time()
    err = proc.stderr.read()  # EOF once every process holding the pipe (the workers) has exited
    assert time.time() - t0 < 30
    assert "BrokenPipeError" not in err and "Traceback" not in err, err
