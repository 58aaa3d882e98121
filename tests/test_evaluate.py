"""`eznas evaluate` end to end on a tiny config: outputs, cache reuse, resume, exported proxies."""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from eznas import cli, config
from eznas import evaluate as ev
from eznas.errors import EznasError

PROXIES = ["params", "synflow", "nwot"]


def tiny_config(data_dir: Path, run_dir: Path, **evaluate) -> config.Config:
    return config.from_dict({
        "seed": 0, "data_dir": str(data_dir), "run_dir": str(run_dir),
        "tasks": [{"space": "nb201", "dataset": "cifar10"}, {"space": "nb201", "dataset": "ImageNet16-120"}],
        "split": {"evolve": 4, "validate": 2, "test": 3},
        "network": {"width": 4, "depth": 1},
        "evaluate": {"batch_size": 8, "proxies": PROXIES, **evaluate},
    })


def _no_build(*args, **kwargs):
    raise AssertionError("a net was built although every score was cached")


def test_end_to_end_outputs_and_cache_reuse(data_dir, tmp_path, monkeypatch):
    cfg = tiny_config(data_dir, tmp_path / "run", published=True)
    res = ev.evaluate(cfg, progress=False)
    out = tmp_path / "run" / "evaluation"
    assert res.out_dir == out
    for name in ("results.md", "results.csv", "results.json", "scores.csv", "comparison.png", "score_cache.json",
                 "scatter_nb201_cifar10.png", "scatter_nb201_ImageNet16-120.png"):
        assert (out / name).is_file(), name
    assert res.counters.computed == 2 * 3 * len(PROXIES) and res.counters.cached == 0
    doc = json.loads((out / "results.json").read_text())
    assert set(doc["tasks"]) == {"nb201/cifar10", "nb201/ImageNet16-120"}
    assert doc["n_nets"] == {"nb201/cifar10": 3, "nb201/ImageNet16-120": 3}
    assert "synflow (published)" in doc["summary"] and "mean_spearman" in doc["summary"]["nwot"]
    assert "synflow (published)" in res.table and "worst ρ" in res.table
    rows = (out / "results.csv").read_text().splitlines()
    assert rows[0] == "task,proxy,n,spearman,kendall,top10,spearman_low,spearman_high,kendall_low,kendall_high"
    assert any(r.startswith("worst,nwot") for r in rows)
    # the cache key format of existing entries is unchanged (no images suffix for CIFAR-10 images)
    keys = json.loads((out / "score_cache.json").read_text())["scores"]
    arch = next(k for k in keys if k.startswith("nb201|cifar10|")).split("|")[2]
    assert f"nb201|cifar10|{arch}|params|0|8|4|1" in keys
    assert all(len(k.split("|")) == 8 for k in keys)
    md = (out / "results.md").read_text()
    assert "nb201/cifar10: CIFAR-10;" in md and "fallback: no imagenet16_120.npz" in md and "resized to 16x16" in md
    assert "95 % paired bootstrap interval" in md and "Difference to the best baseline" in md
    assert doc["intervals"]["n_boot"] == ev.N_BOOT and "nwot" in doc["intervals"]["tasks"]["nb201/cifar10"]

    # second run: everything from the cache, no net is even built
    monkeypatch.setattr(ev, "build", _no_build)
    again = ev.evaluate(cfg, progress=False)
    assert again.counters.computed == 0 and again.counters.cached == 2 * 3 * len(PROXIES)
    assert json.dumps(again.per_task) == json.dumps(res.per_task)  # NaN-safe equality
    monkeypatch.undo()

    # adding a proxy computes only that proxy
    more = ev.evaluate(cfg, proxies=PROXIES + ["l2_norm"], progress=False)
    assert more.counters.computed == 2 * 3 and more.counters.cached == 2 * 3 * len(PROXIES)


def test_interrupt_keeps_finished_nets(data_dir, tmp_path, monkeypatch):
    cfg = tiny_config(data_dir, tmp_path / "run")
    calls = {"n": 0}
    real = ev.build

    def build_then_interrupt(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(ev, "build", build_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        ev.evaluate(cfg, proxies=["params"], progress=False)
    saved = json.loads((tmp_path / "run" / "evaluation" / "score_cache.json").read_text())["scores"]
    assert len(saved) == 2  # the two finished nets
    monkeypatch.undo()
    res = ev.evaluate(cfg, proxies=["params"], progress=False)
    assert res.counters.computed == 4 and res.counters.cached == 2


def test_cli_and_errors(data_dir, tmp_path, capsys):
    cfg_path = tmp_path / "c.yaml"
    cfg = config.to_dict(tiny_config(data_dir, tmp_path / "run"))
    cfg.pop("source")
    cfg_path.write_text(yaml.safe_dump(cfg))
    assert cli.main(["evaluate", str(cfg_path), "--proxies", "params", "--out", str(tmp_path / "o")]) == 0
    assert "params" in capsys.readouterr().out and (tmp_path / "o" / "results.md").is_file()
    assert cli.main(["evaluate", str(cfg_path), "--proxies", "bogus", "--out", str(tmp_path / "o")]) == 2
    assert "unknown proxy 'bogus'" in capsys.readouterr().err
    with pytest.raises(EznasError, match="not found"):
        ev.resolve_proxies(["missing/proxy.py"])


def test_exported_proxies_through_eznas_export(data_dir, tmp_path, monkeypatch):
    """Files and run directories are told apart by eznas.export's own dispatch; its loaders are
    replaced by a size proxy here, so the columns must rank like ``params``."""
    from eznas import export

    proxy_file = tmp_path / "my_proxy.py"
    proxy_file.write_text("# exported proxy\n")
    run_dir = tmp_path / "evolved"
    run_dir.mkdir()

    def n_params(model, inputs, targets):
        return float(sum(p.numel() for p in model.parameters()))

    real_load = export.load_proxy
    monkeypatch.setattr(export, "load_proxy", lambda path: n_params if path == str(proxy_file) else real_load(path))
    monkeypatch.setattr(export, "load_run_proxies", lambda path: {"rank1": n_params})
    cfg = tiny_config(data_dir, tmp_path / "run")
    res = ev.evaluate(cfg, proxies=["params", str(proxy_file), str(run_dir)], progress=False)
    assert res.labels == ["params", "my_proxy", "evolved:rank1"]
    for t in res.per_task.values():
        assert t["my_proxy"]["spearman"] == pytest.approx(t["params"]["spearman"])

    # the ensemble column: rank average of the evolved proxies (here two copies of the size ranking)
    res = ev.evaluate(cfg, proxies=["params", str(proxy_file), str(run_dir)], progress=False, ensemble=True,
                      out=tmp_path / "with-ensemble")
    assert res.labels[-1] == "ensemble"
    for t in res.per_task.values():
        assert t["ensemble"]["spearman"] == pytest.approx(t["params"]["spearman"])
    assert "ensemble" in (tmp_path / "with-ensemble" / "results.md").read_text()
    with pytest.raises(EznasError, match="at least two evolved proxies"):
        ev.evaluate(cfg, proxies=["params", str(proxy_file)], progress=False, ensemble=True)

    monkeypatch.setitem(sys.modules, "eznas.export", None)  # import fails -> one clear error
    with pytest.raises(EznasError, match="eznas.export"):
        ev.evaluate(cfg, proxies=[str(run_dir)], progress=False)


def test_out_must_be_a_directory(data_dir, tmp_path, capsys, monkeypatch):
    cfg_path = tmp_path / "c.yaml"
    raw = config.to_dict(tiny_config(data_dir, tmp_path / "run"))
    raw.pop("source")
    cfg_path.write_text(yaml.safe_dump(raw))
    readme = tmp_path / "README.md"
    readme.write_text("keep me\n")
    monkeypatch.setattr(ev, "build", _no_build)  # refused before any work
    assert cli.main(["evaluate", str(cfg_path), "--proxies", "params", "--out", str(readme)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a directory" in err[0] and readme.read_text() == "keep me\n"


def test_space_loss_sees_matching_input_rows():
    inputs = torch.arange(8.0).view(8, 1)
    targets = torch.arange(8)
    from eznas.losses import _inputs_for

    assert torch.equal(_inputs_for(inputs, targets, targets), inputs)
    assert torch.equal(_inputs_for(inputs, targets, targets[4:8]), inputs[4:8])


def test_rank_average_ties_nan_and_errors():
    from eznas.ensemble import rank_average

    a = np.array([0.1, 0.5, 0.5, np.nan])
    b = np.array([3.0, 1.0, 2.0, 4.0])
    r = rank_average([a, b])
    # a ranks: nan lowest (1), 0.1 -> 2, the tied 0.5s share 3.5; b ranks 3, 1, 2, 4
    assert list(r) == [2.5, 2.25, 2.75, 2.5]
    with pytest.raises(EznasError, match="at least one member"):
        rank_average([])
    with pytest.raises(EznasError, match="different numbers"):
        rank_average([a, b[:2]])


def test_set_level_az_nas_components_cached_and_shared_passes(data_dir, tmp_path, monkeypatch):
    from eznas.proxies import passes, score_set

    cfg = tiny_config(data_dir, tmp_path / "run", proxies=["az_nas", "az_complexity", "snip", "grad_norm"])
    calls = {"n": 0}
    real = passes.score_baselines

    def counting(names, *args, **kwargs):
        calls["n"] += 1
        return real(names, *args, **kwargs)

    monkeypatch.setattr(ev, "score_baselines", counting)
    res = ev.evaluate(cfg, progress=False, n_boot=50)
    assert calls["n"] == 2 * 3  # one call per net: all baselines of a net together
    assert res.labels == ["az_nas", "az_complexity", "snip", "grad_norm"]
    keys = json.loads((tmp_path / "run" / "evaluation" / "score_cache.json").read_text())["scores"]
    per_proxy = {k.split("|")[3] for k in keys}
    assert per_proxy == {"az_expressivity", "az_progressivity", "az_trainability", "az_complexity", "snip", "grad_norm"}
    # az_nas is the rank assembly of the cached components over the task's nets
    rows = list(csv.reader((tmp_path / "run" / "evaluation" / "scores.csv").read_text().splitlines()))
    head = rows[0]
    for task in ("nb201/cifar10", "nb201/ImageNet16-120"):
        mine = [r for r in rows[1:] if r[0] == task]
        comps = []
        for r in mine:
            c = {}
            for comp in ("expressivity", "progressivity", "trainability", "complexity"):
                k = f"nb201|{task.split('/')[1]}|{r[1]}|az_{comp}|0|8|4|1"
                v = keys[k]["score"]
                c[comp] = float("nan") if v is None else v
            comps.append(c)
        expected = score_set("az_nas", comps)
        assert [float(r[head.index("az_nas")]) for r in mine] == pytest.approx(expected)
    assert "rank each net within the evaluated nets" in (tmp_path / "run" / "evaluation" / "results.md").read_text()
    # adding a component as a column reuses its cache entries
    again = ev.evaluate(cfg, proxies=["az_nas", "az_trainability"], progress=False, n_boot=10)
    assert again.counters.computed == 0 and again.labels == ["az_nas", "az_trainability"]


def test_images_key_only_for_own_benchmark_images():
    assert ev.images_key("cifar10", "cifar10") is None
    assert ev.images_key("cifar100", "cifar10") is None  # fallback: same images as before
    assert ev.images_key("cifar100", "cifar100") == "cifar100"
    assert ev.images_key("ImageNet16-120", "ImageNet16-120") == "ImageNet16-120"
    assert ev.images_key("digits", "digits") is None
    own = ev.images_key("cifar100", "cifar100")
    k = ev.ScoreCache.key("nb201", "cifar100", "(0, 1)", "snip", 0, 32, None, None, own)
    assert k == "nb201|cifar100|(0, 1)|snip|0|32|None|None|images=cifar100"


def test_own_cifar100_images_keyed_and_noted(data_dir, tmp_path):
    """A data directory with cifar100.npz: the cifar100 task is measured with those images, its
    cache keys carry ``|images=cifar100`` (the cifar10 task's keys do not), and results.md says so."""
    own = tmp_path / "data"
    own.mkdir()
    for entry in data_dir.iterdir():
        (own / entry.name).symlink_to(entry)
    rng = np.random.default_rng(0)
    sizes = (("train", 64), ("test", 16))
    arrays = {f"{s}_images": rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8) for s, n in sizes}
    arrays |= {f"{s}_labels": rng.integers(0, 100, n) for s, n in sizes}
    np.savez(own / "cifar100.npz", **arrays)
    cfg = config.from_dict({
        "seed": 0, "data_dir": str(own), "run_dir": str(tmp_path / "run"),
        "tasks": [{"space": "nb201", "dataset": "cifar10"}, {"space": "nb201", "dataset": "cifar100"}],
        "split": {"evolve": 4, "validate": 2, "test": 3}, "network": {"width": 4, "depth": 1},
        "evaluate": {"batch_size": 8, "proxies": ["nwot"]}})
    ev.evaluate(cfg, progress=False, n_boot=20)
    out = tmp_path / "run" / "evaluation"
    keys = json.loads((out / "score_cache.json").read_text())["scores"]
    assert sum(k.startswith("nb201|cifar100|") and k.endswith("|images=cifar100") for k in keys) == 3
    assert sum(k.startswith("nb201|cifar10|") and len(k.split("|")) == 8 for k in keys) == 3
    md = (out / "results.md").read_text()
    assert "nb201/cifar100: its own cifar100 images (cifar100.npz)" in md and "nb201/cifar10: CIFAR-10;" in md
    assert json.loads((out / "results.json").read_text())["images"] == {"nb201/cifar10": "cifar10",
                                                                       "nb201/cifar100": "cifar100"}
