"""Built-in evolved proxies: package data, loading by name, CLI, export --expr."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import eznas
from eznas import builtin_proxies, records
from eznas import config as config_mod
from eznas.cli import main
from eznas.errors import EznasError
from eznas.export.loading import Proxy, config_settings, proxy_kind
from eznas.losses import space_loss
from eznas.scoring import Scorer, ScoringOptions
from eznas.spaces import build, get_space
from eznas.stats import StatsSettings, build_cache, load_task_stats, net_batches

ROOT = Path(__file__).resolve().parent.parent
ARCH = "(0, 2, 3, 2, 3, 1)"  # a real NB201 cell (index into NASLib's op list)


def _one_error_line(capsys, rc: int) -> str:
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and err.startswith("eznas: error: ") and "Traceback" not in err, err
    return err


def _plain_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))


def test_package_data_is_shipped_and_consistent_with_its_config():
    package_data = re.search(r"\[tool\.setuptools\.package-data\]\s*eznas = \[([^]]*)\]",
                             (ROOT / "pyproject.toml").read_text())
    assert package_data is not None and '"builtin_proxies/*.json"' in package_data.group(1)
    names = builtin_proxies.names()
    assert "eznas-nb201" in names and "eznas-all" in names
    for name in names:
        b = builtin_proxies.read(name)
        if b.primitive_set == "hybrid":  # expressions over proxy scores: tests/test_hybrid.py
            continue
        cfg = config_mod.load(ROOT / b.provenance["config"])
        # the statistics settings shipped are exactly those the program was evolved with
        assert Proxy is type(eznas.load_proxy(name))
        assert eznas.load_proxy(name).settings == config_settings(cfg)
        assert b.primitive_set == cfg.search.primitive_set
        chosen = max(b.provenance["candidates"], key=lambda c: (c["validate"], -c["gp_seed"]))
        assert chosen["gp_seed"] == b.provenance["gp_seed"] and chosen["program"] == b.expression
        assert set(b.test) == {f"{t.space}/{t.dataset}" for t in cfg.tasks}


def test_docstring_holds_expression_provenance_and_test_figures():
    proxy = eznas.load_proxy("eznas-nb201")
    b = builtin_proxies.read("eznas-nb201")
    doc = proxy.__doc__
    assert b.expression in doc and "configs/nb201.yaml" in doc and f"GP seed           {b.provenance['gp_seed']}" in doc
    assert f"{b.provenance['validate']:.4f}" in doc
    for task, r in b.test.items():
        assert task in doc and f"Spearman {r['spearman']:.3f}" in doc
    assert "batch size 64" in doc and "unit aggregation sum" in doc


def test_score_by_name_equals_the_search_scoring_path(data_dir, tmp_path, capsys):
    """A real NB201 network scored by the loaded proxy (and by `eznas score --proxy NAME`) equals
    the search's scoring path (eznas.scoring.Scorer) on the same network's cached statistics."""
    proxy = eznas.load_proxy("eznas-nb201")
    b = builtin_proxies.read("eznas-nb201")
    s = proxy.settings
    dataset = "ImageNet16-120"  # 16x16 inputs: the cheapest full-size NB201 network
    st = StatsSettings("nb201", dataset, batch_size=s.batch_size, seed=s.seed, R=s.R, s=s.s, dtype=s.cache_dtype,
                       noise_scale=s.noise_scale)
    build_cache([(ARCH, st)], tmp_path / "cache", progress=False)
    ts = load_task_stats(records.Task("nb201", dataset, [ARCH], np.zeros(1)), st, tmp_path / "cache")
    options = ScoringOptions(fitness="spearman", unit_aggregate=s.unit_aggregate, primitive_set=b.primitive_set)
    engine = float(Scorer({"t": ts}, options).net_scores(b.expression)["t"][0])

    batches = net_batches(st)
    model = build("nb201", ARCH, dataset, seed=s.seed)
    loss = space_loss(get_space("nb201"), dataset, batches.D, batches.targets)
    direct = proxy(model, batches.D, batches.targets, loss_fn=loss, noise=batches.N, perturbed=batches.P)
    assert np.isfinite(engine) and direct == pytest.approx(engine, rel=1e-6)

    rc = main(["score", "--proxy", "eznas-nb201", "--space", "nb201", "--arch", ARCH, "--dataset", dataset,
               "--seed", str(s.seed), "--batch-size", str(s.batch_size)])
    assert rc == 0
    assert float(capsys.readouterr().out.strip()) == pytest.approx(engine, rel=1e-6)


def test_every_entry_point_resolves_builtin_names():
    from eznas.evaluate import resolve_proxies
    from eznas.nas.nb201 import load_proxies

    assert proxy_kind("eznas-all") == "builtin"
    spec = resolve_proxies(["eznas-nb201", "params"])
    assert [s.label for s in spec] == ["eznas-nb201", "params"] and spec[0].cache_id.startswith("builtin:")
    assert spec[0].baseline is None and isinstance(spec[0].loader(), Proxy)
    (name, proxy, ident, group), = load_proxies(["eznas-all"])
    assert name == "eznas-all" and ident.startswith("program:") and isinstance(proxy, Proxy) and group is None


def test_cli_list_and_show(capsys):
    assert main(["proxies", "list"]) == 0
    out = capsys.readouterr().out
    for name in builtin_proxies.names():
        assert name in out
    assert "baselines: " in out and "synflow" in out
    assert main(["proxies", "show", "eznas-all"]) == 0
    out = capsys.readouterr().out
    assert out.strip() == builtin_proxies.describe("eznas-all").strip() == eznas.load_proxy("eznas-all").__doc__.strip()
    assert "nb301/cifar10" in out and "tnb_micro/jigsaw" in out


def test_export_expr_round_trip(tmp_path, capsys):
    b = builtin_proxies.read("eznas-nb201")
    out = tmp_path / "proxy.py"
    rc = main(["export", "--expr", b.expression, "--config", str(ROOT / b.provenance["config"]), "--out", str(out)])
    assert rc == 0 and str(out) in capsys.readouterr().out
    from_file = eznas.load_proxy(str(out))  # parsed from the file's JSON, never executed
    builtin = eznas.load_proxy("eznas-nb201")
    assert from_file.infix == builtin.infix and from_file.settings == builtin.settings
    x, y = torch.randn(8, 3, 8, 8, generator=torch.Generator().manual_seed(1)), torch.arange(8) % 10
    score = builtin(_plain_model(), x, y)
    assert np.isfinite(score) and from_file(_plain_model(), x, y) == score
    assert eznas.load_proxy(str(out), trust=True)(_plain_model(), x, y) == pytest.approx(score, rel=1e-6)
    # a built-in exports by name, too
    out2 = tmp_path / "builtin.py"
    assert main(["export", "eznas-nb201", "--out", str(out2)]) == 0
    text = out2.read_text()
    assert "the built-in evolved proxy eznas-nb201" in text and "configs/nb201.yaml" in text
    assert eznas.load_proxy(str(out2))(_plain_model(), x, y) == score


@pytest.mark.parametrize("expr, names", [
    ("frob(foo(gX_D))", ["'foo'", "column 6"]),  # unknown primitive
    ("frob(log_softmax(Q_D))", ["'Q_D'", "column 18"]),  # unknown terminal
    ("log_softmax(gX_D)", ["'log_softmax'", "column 1", "Tensor"]),  # not a Scalar per unit
])
def test_bad_expressions_give_one_line(tmp_path, capsys, expr, names):
    out = tmp_path / "p.py"
    err = _one_error_line(capsys, main(["export", "--expr", expr, "--config", str(ROOT / "configs/nb201.yaml"),
                                        "--out", str(out)]))
    for n in names:
        assert n in err
    assert not out.exists()


def test_bad_names_and_arguments_give_one_line(tmp_path, capsys):
    with pytest.raises(EznasError, match="eznas-all, eznas-nb101, eznas-nb201"):
        eznas.load_proxy("eznas-nb999")
    with pytest.raises(EznasError, match="built-in evolved proxies: eznas-all"):
        eznas.load_proxy("no_such_proxy")
    err = _one_error_line(capsys, main(["proxies", "show", "eznas-nope"]))
    assert "'eznas-nope'" in err and "eznas-nb201" in err
    err = _one_error_line(capsys, main(["score", "--proxy", "eznas-nope", "--space", "nb201", "--arch", ARCH]))
    assert "eznas-nope" in err
    err = _one_error_line(capsys, main(["nas", "--proxy", "eznas-nope", "--budget", "1", "--out", str(tmp_path / "n")]))
    assert "eznas-nope" in err
    err = _one_error_line(capsys, main(["export", "--expr", "frob(W)", "--out", str(tmp_path / "p.py")]))
    assert "--config" in err
    err = _one_error_line(capsys, main(["export", "eznas-nope", "--out", str(tmp_path / "p.py")]))
    assert "'eznas-nope'" in err
