"""`eznas evaluate` end to end on a tiny config: outputs, cache reuse, resume, exported proxies."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from eznas import cli, config
from eznas import evaluate as ev
from eznas import spaces
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
    assert rows[0] == "task,proxy,n,spearman,kendall,top10" and any(r.startswith("worst,nwot") for r in rows)

    # second run: everything from the cache, no net is even built
    monkeypatch.setattr(spaces, "build", _no_build)
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
    real = spaces.build

    def build_then_interrupt(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(spaces, "build", build_then_interrupt)
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
    monkeypatch.setattr(spaces, "build", _no_build)  # refused before any work
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
