"""Hybrid proxies (eznas.hybrid): a GP over NASLib's published NB301 proxy scores, its text form and parser."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from eznas import hybrid, metrics, records
from eznas.errors import EznasError
from eznas.hybrid_expr import parse, slog

ROOT = Path(__file__).resolve().parents[1]
SMALL = hybrid.Settings(population=60, generations=8)


def nb301_table() -> tuple[list[hybrid.HybridTask], list[str]]:
    t = records.load_task("nb301", "cifar10")
    terms = list(t.published)
    perm = np.random.default_rng([0, len(t)]).permutation(len(t))
    splits = {"evolve": perm[:150], "validate": perm[150:210], "test": perm[210:]}
    return [hybrid.HybridTask(t.name, hybrid.table(t.published, terms), t.accuracies, splits)], terms


@pytest.fixture(scope="module")
def nb301() -> tuple[list[hybrid.HybridTask], list[str], hybrid.SearchResult]:
    tasks, terms = nb301_table()
    return tasks, terms, hybrid.search(tasks, terms, seed=0, settings=SMALL)


def test_search_beats_its_terminals_on_validate(nb301) -> None:
    tasks, terms, res = nb301
    single = [hybrid.split_rhos(t, tasks, terms, "validate")["nb301/cifar10"] for t in terms]
    assert res.validate == pytest.approx(hybrid.split_rhos(res.expression, tasks, terms, "validate")["nb301/cifar10"])
    assert res.validate > np.mean(single) + 0.2
    assert res.validate > np.median(single)
    assert res.hall_of_fame[0]["expression"] == res.expression and len(res.hall_of_fame) > 1


def test_split_rho_matches_scipy_spearman(nb301) -> None:
    tasks, terms, res = nb301
    t = tasks[0]
    scores = hybrid.task_scores(res.expression, t, terms, "test")
    want = metrics.spearman(scores, t.accuracies[t.splits["test"]])
    assert hybrid.split_rhos(res.expression, tasks, terms, "test")["nb301/cifar10"] == pytest.approx(want, abs=1e-12)


def test_text_round_trips_and_scores_new_nets(nb301) -> None:
    tasks, terms, res = nb301
    expr = parse(res.expression, terms)
    assert str(parse(str(expr))) == res.expression == str(expr)
    t = tasks[0]
    vec = hybrid.task_scores(res.expression, t, terms)
    one = [expr({k: float(t.values[i, j]) for j, k in enumerate(terms)}) for i in range(5)]
    np.testing.assert_allclose(one, vec[:5], rtol=1e-12)
    # a hand-written expression: terminals are slog-transformed before the arithmetic
    e = parse("add(mul(0.5, params), max(nwot, -1.0))")
    assert e({"params": 3.0, "nwot": -100.0}) == pytest.approx(0.5 * slog(3.0) - 1.0)
    assert e.terminals == ["params", "nwot"] and e.size == 7


@pytest.mark.parametrize("text", ["__import__('os').system('true')", "add(params", "add(params, nwot, flops)",
                                  "lambda: 1", "params; flops", "exp(params)", "add", "", "add(params,)",
                                  "zico", "1e999", "x" * 5000])
def test_bad_expressions_are_one_line_errors(text: str) -> None:
    with pytest.raises(EznasError) as err:
        parse(text, ["params", "nwot", "flops"])
    assert "\n" not in str(err.value)


def test_nan_terminal_ranks_last_and_bad_table_is_an_error() -> None:
    e = parse("add(params, nwot)")
    s = e({"params": np.array([1.0, 2.0, 3.0]), "nwot": np.array([1.0, np.nan, 1.0])})
    assert np.isnan(s[1]) and metrics.clean_scores(s)[1] < s[0] < s[2]
    with pytest.raises(EznasError, match="terminal"):
        e({"params": 1.0})
    tasks, terms = nb301_table()
    with pytest.raises(EznasError, match="overlap"):
        t = tasks[0]
        hybrid.search([hybrid.HybridTask(t.name, t.values, t.accuracies, {**t.splits, "test": t.splits["evolve"]})],
                      terms, settings=SMALL)
    with pytest.raises(EznasError, match="identifiers"):
        hybrid.search(tasks, ["add", *terms[1:]], settings=SMALL)


def test_same_seed_same_expression_across_processes() -> None:
    code = ("import json, sys; sys.path.insert(0, %r); from tests.test_hybrid import nb301_table, SMALL; "
            "from eznas import hybrid; t, terms = nb301_table(); "
            "r = hybrid.search(t, terms, seed=3, settings=SMALL); "
            "print(json.dumps([r.expression, r.validate]))") % str(ROOT)
    outs = []
    for hashseed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hashseed, OMP_NUM_THREADS="1",
                   PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                              cwd=ROOT)
        assert done.returncode == 0, done.stderr[-2000:]
        outs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert outs[0] == outs[1]


SHIPPED = {"eznas-nb201-hybrid": "nb201", "eznas-nb101": "nb101-eznas", "eznas-nb301": "nb301-eznas",
           "eznas-tnb": "tnb"}


def _small_model_batch():
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
    x = torch.randn(8, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    return model, x, torch.arange(8) % 10


def test_shipped_hybrids_match_the_committed_search() -> None:
    """Each shipped hybrid is its setting's validate-chosen expression with that run's test figures."""
    from eznas import builtin_proxies

    doc = json.loads((ROOT / "experiments" / "results" / "hybrid_search.json").read_text())
    for name, setting in SHIPPED.items():
        b = builtin_proxies.read(name)
        sd = doc["settings"][setting]
        (search,) = sd["searches"]
        chosen = max(search["runs"], key=lambda r: (round(r["validate"], 3), -r["size"], -r["seed"]))
        assert b.primitive_set == "hybrid" and b.provenance["gp_seed"] == search["chosen_seed"] == chosen["seed"]
        assert b.expression == chosen["expression"]
        for task, r in b.test.items():
            assert r["spearman"] == pytest.approx(sd["tasks"][task]["chosen_spearman"])
        assert set(parse(b.expression).terminals) <= set(b.settings["terminals"])


def test_builtin_hybrid_scores_a_model_with_eznas_proxies(capsys) -> None:
    import eznas
    from eznas.cli import main
    from eznas.export.loading import call_proxy
    from eznas.hybrid_proxy import HybridProxy
    from eznas.proxies import get_proxy

    proxy = eznas.load_proxy("eznas-nb301")
    assert isinstance(proxy, HybridProxy)
    assert proxy.raw in proxy.__doc__ and "eznas's own scores" in proxy.__doc__ and "hybrid-nb301.yaml" in proxy.__doc__
    assert "check_published_proxies" in eznas.load_proxy("eznas-tnb").__doc__
    model, x, y = _small_model_batch()
    raw = {t: call_proxy(get_proxy(t), model, x, y) for t in proxy.expression.terminals}
    score = proxy(model, x, y)
    assert np.isfinite(score) and score == pytest.approx(proxy.expression(raw), rel=1e-9)
    from eznas.nas.nb201 import proxy_identity

    assert proxy_identity("eznas-nb301", proxy, False) == proxy.identity
    assert proxy.identity.startswith("hybrid:") and proxy.identity != eznas.load_proxy("eznas-tnb").identity
    assert main(["proxies", "show", "eznas-nb301"]) == 0
    assert capsys.readouterr().out.strip() == proxy.__doc__.strip()
    with pytest.raises(EznasError, match="hybrid"):
        from eznas.export.writing import export_builtin

        export_builtin("eznas-nb301", ROOT / "never-written.py")


@pytest.mark.parametrize("space, row", [("nb101", 5)])
def test_shipped_hybrid_meets_the_terminals_it_was_evolved_on(space: str, row: int, data_dir) -> None:
    """Scoring a real benchmark net with the shipped proxy recomputes, value for value, the eznas
    scores its expression was evolved on (experiments/results/evaluation/hybrid-<space>/scores.csv)."""
    import csv

    import eznas
    from eznas.batches import make_batches
    from eznas.spaces import build

    rec = list(csv.DictReader((ROOT / "experiments" / "results" / "evaluation" / f"hybrid-{space}" /
                               "scores.csv").open()))[row]
    proxy = eznas.load_proxy(f"eznas-{space}")
    b = make_batches("cifar10", 32, 0, num_classes=10, root=data_dir)
    net = build(space, rec["arch"], "cifar10", seed=0)
    vals = proxy.terminals(net, b.D, b.targets)
    assert set(vals) == set(proxy.expression.terminals)
    for t, v in vals.items():
        assert v == pytest.approx(float(rec[t]), rel=1e-6), t
    assert proxy(net, b.D, b.targets) == pytest.approx(float(proxy.expression({t: float(rec[t]) for t in vals})))


def test_nb201_hybrid_uses_the_builtin_evolved_program() -> None:
    import eznas

    proxy = eznas.load_proxy("eznas-nb201-hybrid")
    evolved = [t for t in proxy.expression.terminals if t.startswith("evolved_s")]
    assert evolved, "the NB201 hybrid is expected to use an evolved program's score"
    model, x, y = _small_model_batch()
    vals = proxy.terminals(model, x, y)
    assert set(vals) == set(proxy.expression.terminals) and all(np.isfinite(v) for v in vals.values())
    if proxy.terminal_specs.get("evolved_s1") == {"builtin": "eznas-nb201"}:
        assert vals["evolved_s1"] == eznas.load_proxy("eznas-nb201")(model, x, y)
