"""Zero-shot architecture search: ``eznas nas`` over the NB201 table and the ``eznas.nas.search`` API.

The NB201 checks use the real NATS-Bench table and real networks; ``params`` needs no forward pass,
so a 20-cell search takes a fraction of a second. One check runs ``nwot`` (a real forward).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from eznas import cli
from eznas.errors import EznasError
from eznas.nas import ScoreCache, Scorer, search
from eznas.nas.nb201 import TableSpace
from eznas.natsbench import load_table
from eznas.proxies import get_proxy
from eznas.spaces import build, count_params

ROOT = Path(__file__).resolve().parents[1]


def run_nas(tmp: Path, *extra: str, out: str = "out") -> tuple[int, dict]:
    rc = cli.main(["nas", "--space", "nb201", "--dataset", "cifar10", "--quiet", "--out", str(tmp / out), *extra])
    rep = json.loads((tmp / out / "report.json").read_text()) if rc == 0 else {}
    return rc, rep


@pytest.fixture(scope="module")
def table(data_dir):
    return load_table(data_dir)


@pytest.mark.parametrize("strategy", ["random", "evolution"])
def test_cli_picks_a_table_cell_and_reports_its_accuracy(tmp_path, table, capsys, strategy):
    rc, rep = run_nas(tmp_path, "--proxy", "params", "--budget", "20", "--seed", "3", "--strategy", strategy,
                      "--population", "8", "--sample-size", "3")
    assert rc == 0
    pick = rep["picked"]["arch"]
    i = table.index()[pick]
    for d in ("cifar10", "cifar100", "ImageNet16-120"):
        assert rep["picked"]["test_accuracy"][d] == pytest.approx(float(table.accuracy[d][i]))
    assert rep["table"]["best_accuracy"] == pytest.approx(float(table.accuracy["cifar10"].max()))
    acc = table.accuracy["cifar10"]
    assert rep["picked"]["rank"] == int(np.sum(acc > acc[i])) + 1
    # the pick is the largest network among the scored cells (params), and its score is its size
    scored = [h["arch"] for h in rep["history"]]
    assert rep["nets_scored"] == len(scored) == 20 and len(set(scored)) == 20
    sizes = {a: count_params(build("nb201", a, "cifar10")) / 1e6 for a in scored}
    assert pick == max(scored, key=lambda a: sizes[a])
    assert rep["picked"]["scores"]["params"] == pytest.approx(sizes[pick])
    # best-so-far is monotone in score, and the last one is the pick
    best = [h["best_score"] for h in rep["history"]]
    assert best == sorted(best) and rep["history"][-1]["best_arch"] == pick
    out = capsys.readouterr().out
    assert f"picked {pick}" in out and f"{rep['picked']['test_accuracy']['cifar10']:.2f} %" in out
    assert (tmp_path / "out" / "progress.png").stat().st_size > 1000
    assert "## Picked cell" in (tmp_path / "out" / "report.md").read_text()


def test_evolution_scores_distinct_cells_by_one_edge_mutations(table):
    space = TableSpace(table)
    calls: list[str] = []

    def score(arch: str) -> float:  # a cheap deterministic proxy: prefers conv ops
        calls.append(arch)
        return float(sum(o in (2, 3) for o in eval_free_ops(arch)))

    res = search(score, space.archs, space.mutate, 60, seed=5, strategy="evolution", population=10, sample_size=4)
    archs = [h.arch for h in res.history]
    assert len(archs) == 60 == len(set(archs)) == len(calls) == res.n_scored
    assert all(a in space.index for a in archs)
    assert res.score == max(h.scores["score"] for h in res.history)
    # the neighbours really are one edge away and inside the table
    n = space.neighbours(archs[0])
    assert n and all(sum(x != y for x, y in zip(eval_free_ops(a), eval_free_ops(archs[0]))) == 1 for a in n)


def eval_free_ops(arch: str) -> tuple[int, ...]:
    return tuple(int(t) for t in arch.strip("()").split(","))


def test_evolution_children_come_from_mutation(table):
    """Evolution differs from random sampling: with a population of 5 most later cells are one-edge
    neighbours of a cell scored before them."""
    space = TableSpace(table)
    res = search({"convs": lambda a: float(sum(o == 2 for o in eval_free_ops(a)))}, space.archs, space.mutate, 40,
                 seed=1, strategy="evolution", population=5, sample_size=2)
    archs = [h.arch for h in res.history]
    near = 0
    for k in range(5, len(archs)):
        ops = eval_free_ops(archs[k])
        near += any(sum(x != y for x, y in zip(ops, eval_free_ops(b))) == 1 for b in archs[:k])
    assert near >= 30  # the rest are random restarts only if the neighbourhood was exhausted


def test_same_seed_same_pick_also_in_another_process(tmp_path, data_dir):
    args = ["--proxy", "params", "--budget", "20", "--seed", "11", "--strategy", "evolution"]
    rc1, rep1 = run_nas(tmp_path, *args, out="a")
    rc2, rep2 = run_nas(tmp_path, *args, out="b")
    rc3, rep3 = run_nas(tmp_path, *args[:-2], "--seed", "12", out="c")  # another seed: another path
    env = dict(os.environ, PYTHONPATH=str(ROOT), EZNAS_DATA_DIR=str(data_dir), OMP_NUM_THREADS="1")
    p = subprocess.run([sys.executable, "-m", "eznas.cli", "nas", "--quiet", "--out", str(tmp_path / "d"), *args],
                       env=env, capture_output=True, text=True, timeout=300)
    assert rc1 == rc2 == rc3 == p.returncode == 0, p.stderr
    rep4 = json.loads((tmp_path / "d" / "report.json").read_text())
    hist = [[h["arch"] for h in r["history"]] for r in (rep1, rep2, rep4)]
    assert hist[0] == hist[1] == hist[2]
    assert rep1["picked"] == rep2["picked"] == rep4["picked"]
    assert [h["arch"] for h in rep3["history"]] != hist[0]


def test_failing_proxy_cells_are_skipped_and_counted(tmp_path, table):
    """A proxy that raises on small networks and returns NaN on some others: those cells are
    failures (counted, listed, never picked); the rest are searched as usual."""
    f = tmp_path / "fragile.py"
    f.write_text("import math\n"
                 "def score(model, inputs, targets, loss_fn=None):\n"
                 "    n = sum(p.numel() for p in model.parameters()) / 1e6\n"
                 "    if n < 0.5:\n"
                 "        raise ValueError('too small to score')\n"
                 "    return math.nan if n > 1.3 else n\n")
    rc, rep = run_nas(tmp_path, "--proxy", str(f), "--trust", "--budget", "40", "--seed", "2")
    assert rc == 0
    sizes = {h["arch"]: count_params(build("nb201", h["arch"], "cifar10")) / 1e6 for h in rep["history"]}
    bad = {a for a, n in sizes.items() if n < 0.5 or n > 1.3}
    assert bad, "the seed must hit some failing cells for this test to mean anything"
    assert {x["arch"] for x in rep["failures"]} == bad
    assert all(h["scores"] is None for h in rep["history"] if h["arch"] in bad)
    assert any("too small" in x["error"] for x in rep["failures"])
    assert rep["nets_scored"] == 40 and rep["picked"]["arch"] not in bad
    assert rep["picked"]["arch"] == max((a for a in sizes if a not in bad), key=lambda a: sizes[a])


def test_resume_recomputes_nothing(tmp_path, capsys):
    """A rerun reads every score from the cache; an interrupted run keeps what it scored."""
    args = ["--proxy", "params", "--budget", "25", "--seed", "4"]
    rc, rep = run_nas(tmp_path, *args)
    assert rc == 0 and rep["nets_computed"] == 25
    rc, rep2 = run_nas(tmp_path, *args)
    assert rc == 0 and rep2["nets_computed"] == 0 and rep2["nets_from_cache"] == 25
    assert rep2["picked"] == rep["picked"]
    # a larger budget with the same seed scores only the new cells (random order is a prefix)
    rc, rep3 = run_nas(tmp_path, "--proxy", "params", "--budget", "30", "--seed", "4")
    assert rc == 0 and rep3["nets_computed"] == 5


def test_ctrl_c_keeps_scores_and_says_how_to_resume(tmp_path, monkeypatch, capsys):
    f = tmp_path / "stopper.py"
    f.write_text("import os\n_n = [0]\n"
                 "def score(model, inputs, targets, loss_fn=None):\n"
                 "    _n[0] += 1\n"
                 "    if _n[0] == int(os.environ.get('STOP_AT', '0')):\n"
                 "        raise KeyboardInterrupt\n"
                 "    return sum(p.numel() for p in model.parameters()) / 1e6\n")
    args = ["--proxy", str(f), "--trust", "--budget", "15", "--seed", "0"]
    monkeypatch.setenv("STOP_AT", "7")
    rc, _ = run_nas(tmp_path, *args)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 130
    assert len([ln for ln in err if ln.startswith("eznas:")]) == 1 and "run the same command again" in err[-1]
    cache = json.loads((tmp_path / "out" / "scores.json").read_text())
    assert sum(len(v) for v in cache["scores"].values()) == 6
    assert not (tmp_path / "out" / "report.json").exists()
    monkeypatch.setenv("STOP_AT", "0")
    rc, rep = run_nas(tmp_path, *args)
    assert rc == 0 and rep["nets_from_cache"] == 6 and rep["nets_computed"] == 9


def test_ensemble_of_two_proxies_with_a_real_forward(tmp_path):
    rc, rep = run_nas(tmp_path, "--proxy", "params", "--proxy", "nwot", "--budget", "5", "--seed", "0",
                      "--batch-size", "8")
    assert rc == 0
    scored = [(h["arch"], h["scores"]) for h in rep["history"] if h["scores"]]
    assert len(scored) == 5 and all(np.isfinite(s["nwot"]) for _, s in scored)
    from scipy.stats import rankdata

    ranks = np.mean([rankdata([s[n] for _, s in scored]) for n in ("params", "nwot")], axis=0)
    assert rep["picked"]["arch"] == scored[int(np.argmax(ranks))][0]
    assert rep["picked"]["score"] == pytest.approx(float(ranks.max()))
    # the nwot score equals eznas score's for that cell (same network seed and batch)
    pick = rep["picked"]["arch"]
    from eznas.batches import make_batches

    b = make_batches("cifar10", 8, 0, num_classes=10)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        ref = get_proxy("nwot")(build("nb201", pick, "cifar10", seed=0), b.D, b.targets)
    assert rep["picked"]["scores"]["nwot"] == pytest.approx(ref, rel=1e-6)


# ---------------------------------------------------------------------------- a user's own space


def toy_build(arch: int) -> nn.Module:
    """arch in 0..63: bits 0-2 = hidden width, bits 3-5 = depth of a small MLP."""
    width, depth = 4 * (arch % 8 + 1), arch // 8 + 1
    layers: list[nn.Module] = [nn.Flatten(), nn.Linear(12, width), nn.ReLU()]
    for _ in range(depth - 1):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(width, 3))


def toy_mutate(arch: int, rng: np.random.Generator) -> int:
    return arch ^ (1 << int(rng.integers(6)))


def toy_size(arch: int) -> float:
    return float(count_params(toy_build(arch)))


def test_user_space_through_the_api(tmp_path):
    x, y = torch.randn(4, 12), torch.tensor([0, 1, 2, 0])
    params = get_proxy("params")
    # every cell scored: the pick is the global maximum
    res = search(params, range(64), toy_mutate, 64, seed=0, build=toy_build, batch=(x, y))
    assert res.arch == 63 and res.n_scored == 64 and res.n_failed == 0
    assert res.score == pytest.approx(toy_size(63) / 1e6)
    # evolution with a sampler function: distinct cells, the best of those scored
    calls: list[int] = []

    def counted(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> float:
        calls.append(1)
        return params(model, inputs, targets)

    cache = tmp_path / "toy.json"
    res = search({"params": counted}, lambda rng: int(rng.integers(64)), toy_mutate, 30, seed=7,
                 build=toy_build, batch=(x, y), strategy="evolution", population=6, sample_size=3, cache=cache)
    archs = [h.arch for h in res.history]
    assert len(archs) == 30 == len(set(archs)) == len(calls)
    assert res.arch == max(archs, key=toy_size)
    # resuming from the cache file calls the proxy for nothing and picks the same cell
    again = search({"params": counted}, lambda rng: int(rng.integers(64)), toy_mutate, 30, seed=7,
                   build=toy_build, batch=(x, y), strategy="evolution", population=6, sample_size=3,
                   cache=ScoreCache(cache))
    assert len(calls) == 30 and again.n_computed == 0 and again.arch == res.arch
    assert [h.arch for h in again.history] == archs


def test_api_failures_ensemble_and_exhaustion():
    def picky(a: int) -> float:
        if a % 5 == 0:
            raise RuntimeError(f"cannot score {a}")
        return float("nan") if a % 7 == 0 else float(a)

    res = search([Scorer("picky", picky), Scorer("neg", lambda a: float(-a))], list(range(40)), budget=40, seed=0)
    bad = {a for a in range(40) if a % 5 == 0 or a % 7 == 0}
    assert {f.arch for f in res.failures} == bad and res.n_scored == 40
    # mean rank of picky (ascending in a) and neg (descending): every cell ties, the first scored wins
    first_ok = next(h.arch for h in res.history if h.scores is not None)
    assert res.arch == first_ok
    # a sampler that runs out stops early with the best so far
    res = search(lambda a: float(a), lambda rng: int(rng.integers(3)), budget=10, seed=0)
    assert res.n_scored == 3 and res.arch == 2 and res.stopped_early
    with pytest.raises(EznasError, match="every one"):
        search(lambda a: 1 / 0, [1, 2, 3], budget=2)
    with pytest.raises(EznasError, match="exceeds"):
        search(lambda a: 1.0, [1, 2, 3], budget=4)
    with pytest.raises(EznasError, match="mutate"):
        search(lambda a: 1.0, [1, 2, 3], budget=2, strategy="evolution")
    with pytest.raises(EznasError, match="name the proxies"):
        search(lambda a: 1.0, [1, 2, 3], budget=2, cache=ScoreCache())


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("args,message", [
    (["--budget", "0"], "argument --budget: must be a whole number >= 1"),
    (["--budget", "10162"], "exceeds the 10161 cells"),
    (["--budget", "5", "--dataset", "mnist"], "unknown NB201 dataset 'mnist'"),
    (["--budget", "5", "--space", "nb301"], "only nb201 has"),
    (["--budget", "5", "--space", "nope"], "unknown search space 'nope'"),
    (["--budget", "5", "--proxy", "nosuchproxy"], "unknown proxy 'nosuchproxy'"),
    (["--budget", "5", "--strategy", "evolution", "--population", "4", "--sample-size", "5"], "--sample-size"),
    (["--budget", "5", "--out", "FILE"], "is not a directory"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, data_dir, args, message):
    (tmp_path / "FILE").write_text("keep me")
    argv = ["nas", "--proxy", "params", "--quiet"] + [str(tmp_path / a) if a == "FILE" else a for a in args]
    if "--out" not in args:
        argv += ["--out", str(tmp_path / "o")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("eznas: error:") and message in err[0], err
    assert (tmp_path / "FILE").read_text() == "keep me"
    assert not (tmp_path / "o").exists()  # validated before any work


def test_corrupt_cache_is_one_error(tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "scores.json").write_text("{not json")
    rc, _ = run_nas(tmp_path, "--proxy", "params", "--budget", "3")
    assert rc == 2 and "not valid JSON" in capsys.readouterr().err


def test_nas_study_smoke(tmp_path, capsys):
    """The study script end to end on a tiny setting; seeds share the score cache."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("nas_study", ROOT / "experiments" / "nas_study.py")
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    argv = ["--proxies", "params", "--budgets", "8", "--seeds", "2", "--datasets", "cifar100",
            "--population", "4", "--sample-size", "2", "--out", str(tmp_path / "s.json"),
            "--cache", str(tmp_path / "c.json")]
    assert study.main(argv) == 0
    res = json.loads((tmp_path / "s.json").read_text())
    rows = {(r["proxy"], r["strategy"]): r for r in res["rows"]}
    assert set(rows) == {("random choice", "-"), ("params", "random"), ("params", "evolution"), ("table best", "-")}
    table = load_table()
    for r in res["rows"]:
        assert r["accuracy"] == [pytest.approx(float(table.accuracy["cifar100"][table.index()[a]])) for a in r["picks"]]
    cached = json.loads((tmp_path / "c.json").read_text())["scores"]
    assert len(cached) == 1 and 8 <= len(next(iter(cached.values()))) <= 32
    assert "NASWOT" in capsys.readouterr().out
    assert study.main(argv) == 0  # everything from the cache now
    again = json.loads((tmp_path / "s.json").read_text())
    assert again["rows"] == res["rows"] and all(v is None for v in again["seconds_per_computed_cell"].values())


# ---------------------------------------------------------------------------- set-level proxies (AZ-NAS)


def test_set_level_group_utility_is_recomputed_over_the_scored_cells():
    """Scorers sharing a group count as one proxy whose utility is combine() over every scored
    cell: the pick is the argmax of AZ-NAS's log-rank sum over the whole scored set, not of any
    component; in an ensemble the group is ONE proxy beside the others."""
    from eznas.proxies.sets import matrix_combine, score_set

    rng = np.random.default_rng(3)
    comps = {a: rng.normal(size=4) for a in range(40)}
    names = ["az_expressivity", "az_progressivity", "az_trainability", "az_complexity"]
    combine = matrix_combine("az_nas")
    scorers = [Scorer(n, (lambda a, j=j: float(comps[a][j])), group="az_nas", combine=combine)
               for j, n in enumerate(names)]
    res = search(scorers, list(range(40)), budget=25, seed=1)
    scored = [a for a, _ in res.scored()]
    util = score_set("az_nas", [dict(zip(("expressivity", "progressivity", "trainability", "complexity"),
                                          comps[a])) for a in scored])
    assert res.arch == scored[int(np.argmax(util))]
    assert res.score == pytest.approx(max(util))
    # beside another proxy: a rank average of TWO utilities (az_nas's and size), not of five columns
    size = Scorer("size", lambda a: float(a))
    res2 = search([*scorers, size], list(range(40)), budget=25, seed=1)
    from scipy.stats import rankdata

    scored2 = [a for a, _ in res2.scored()]
    u = score_set("az_nas", [dict(zip(("expressivity", "progressivity", "trainability", "complexity"), comps[a]))
                             for a in scored2])
    mean_rank = (rankdata(u) + rankdata(scored2)) / 2
    assert res2.arch == scored2[int(np.argmax(mean_rank))]
    with pytest.raises(EznasError, match="combine"):
        search([Scorer("a", float, group="g"), Scorer("b", float, group="g")], list(range(5)), budget=3)


def test_cli_az_nas_is_its_four_components_ranked_within_the_search(tmp_path):
    rc, rep = run_nas(tmp_path, "--proxy", "az_nas", "--budget", "4", "--seed", "0", "--batch-size", "8")
    assert rc == 0
    assert rep["settings"]["proxies"] == ["az_nas"]
    scored = [(h["arch"], h["scores"]) for h in rep["history"] if h["scores"]]
    assert len(scored) == 4 and set(scored[0][1]) == {"az_expressivity", "az_progressivity", "az_trainability",
                                                      "az_complexity"}
    from eznas.proxies.sets import score_set

    util = score_set("az_nas", [{k[3:]: v for k, v in s.items()} for _, s in scored])
    assert rep["picked"]["arch"] == scored[int(np.argmax(util))][0]


def test_nas_study_on_a_precomputed_score_table(tmp_path):
    """--table-scores: the candidates are the table's cells, nothing is computed, az_nas and an
    --ensemble are searched as one proxy each, and a pick is a cell of the pool."""
    import csv

    pool = ROOT / "experiments" / "results" / "table_scores_natsbench500"
    out = tmp_path / "o.json"
    cmd = [sys.executable, str(ROOT / "experiments" / "nas_study.py"), "--table-scores", str(pool), "--proxies",
           "eznas-nb201", "ens", "az_nas", "--ensemble", "ens=evolved seed 0,evolved seed 2", "--datasets", "cifar10",
           "--budgets", "20", "--seeds", "2", "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONHASHSEED": "1"})
    assert done.returncode == 0, done.stderr
    d = json.loads(out.read_text())
    with (pool / "cifar10.csv").open(newline="") as f:
        rows = {r["arch_key"]: r for r in csv.DictReader(f)}
    assert d["candidates"] == {"cifar10": len(rows)}
    assert "seconds_per_computed_cell" in d and all(v is None for v in d["seconds_per_computed_cell"].values())
    picked = {(r["proxy"], r["strategy"]): r["picks"] for r in d["rows"] if r["budget"] == 20}
    assert set(picked) == {(p, s) for p in ("eznas-nb201", "ens", "az_nas") for s in ("random", "evolution")}
    assert all(a in rows for picks in picked.values() for a in picks)
    # a random search with one proxy picks the best-scoring cell among the cells it drew
    res = search(Scorer("x", lambda a: float(rows[a]["eznas-nb201"])), list(rows), budget=20, seed=0)
    assert picked[("eznas-nb201", "random")][0] == res.arch
    bad = subprocess.run([*cmd[:4], "--proxies", "no_such_column", "--datasets", "cifar10", "--budgets", "5",
                          "--out", str(out)],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "lacks" in bad.stderr and "Traceback" not in bad.stderr
