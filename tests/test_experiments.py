"""Smoke test of experiments/: every script runs from another directory on a tiny setting.

Each script runs as a user would run it (a subprocess, ``cwd`` a temporary directory, not the
repository) with its smallest setting and every output (``--out``, caches, run directories, the
statistics cache through ``EZNAS_CACHE_DIR``) under ``tmp_path``; the test checks the exit status
and that the output exists and parses. Nothing is written under experiments/results/. Scripts
whose real work cannot run cheaply here get the cheapest meaningful check, said at their case.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from eznas import config as config_mod
from eznas import evolve

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"
TIMEOUT_S = 300


def tiny_config(tmp: Path) -> dict:
    """The embedded digits benchmark, NB201 nets of width 4 and one cell per stage, 2 generations."""
    return {"seed": 0, "run_dir": str(tmp / "run"),
            "tasks": [{"space": "nb201", "dataset": "digits", "benchmark": "digits"}],
            "split": {"evolve": 10, "validate": 6, "test": 8}, "network": {"width": 4, "depth": 1},
            "stats": {"batch_size": 8, "R": 2, "s": 2, "cache_dir": str(tmp / "cache")},
            "search": {"primitive_set": "eznas", "population": 8, "offspring": 8, "generations": 2,
                       "subsample": None, "hall_of_fame": 3},
            "evaluate": {"proxies": ["params"], "batch_size": 8}}


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with ``tiny.yaml`` and ``run/``, a finished search on it (a few seconds)."""
    tmp = tmp_path_factory.mktemp("tiny")
    cfg = config_mod.from_dict(tiny_config(tmp))
    config_mod.dump(cfg, tmp / "tiny.yaml")
    evolve.run(cfg, tmp / "run", progress=False)
    return tmp


def run_script(name: str, args: list[str], cwd: Path, expect_rc: int = 0) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg", EZNAS_CACHE_DIR=str(cwd / "stats-cache"),
               PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    done = subprocess.run(["nice", "-n", "5", sys.executable, str(EXPERIMENTS / name), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == expect_rc, f"{name} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def tiny_main_results(tiny: Path, tmp: Path) -> Path:
    """A main_results.json of one setting: the tiny config and its run's best program."""
    best = json.loads((tiny / "run" / "hall_of_fame.json").read_text())["hall_of_fame"][0]["infix"]
    path = tmp / "main_results.json"
    path.write_text(json.dumps({"settings": {"tiny": {"config": str(tiny / "tiny.yaml"),
                                                      "runs": [{"seed": 0, "best": best}]}}}))
    return path


def readme_copy(tmp: Path) -> Path:
    dest = tmp / "README.md"
    shutil.copy(ROOT / "README.md", dest)
    return dest


# name -> function (tiny folder, tmp_path) -> (arguments, the output file that must parse as JSON)
Case = Callable[[Path, Path], tuple[list[str], Path]]
CASES: dict[str, Case] = {
    "baseline_pass_sharing.py": lambda t, p: (
        ["--nets", "2", "--batch-size", "8", "--width", "4", "--depth", "1", "--proxies", "params", "synflow", "snip",
         "nwot", "--out", str(p / "o.json")], p / "o.json"),
    "check_published_proxies.py": lambda t, p: (
        ["--n", "4", "--width", "4", "--depth", "1", "--cache", str(p / "cache.json"), "--out", str(p / "pub")],
        p / "pub" / "published_check.json"),
    # the command line on 3 held-out NB301 nets: eznas-nb301 and the four target baselines
    "builtin_endtoend.py": lambda t, p: (
        ["--checks", "nb301", "--nets", "3", "--chunk", "3", "--work", str(p / "w"), "--out", str(p / "o.json")],
        p / "o.json"),
    "check_sota_proxies.py": lambda t, p: (
        ["--n", "3", "--batch-size", "16", "--width", "4", "--depth", "1", "--out", str(p / "o.json")], p / "o.json"),
    "digits_bench_report.py": lambda t, p: (["--out", str(p / "o.json")], p / "o.json"),
    "ensemble_study.py": lambda t, p: ([str(t / "run"), "--k", "1", "2", "--out", str(p / "o.json")], p / "o.json"),
    "eval_throughput.py": lambda t, p: (
        ["--config", str(t / "run" / "config.yaml"), "--programs", "5", "--nets", "4", "--repeats", "1",
         "--out", str(p / "o.json")], p / "o.json"),
    # the CPU-against-CPU mode of the same code on tiny nets (the CUDA path is checked on a GPU machine)
    "gpu_check.py": lambda t, p: (
        ["--device", "cpu", "--smoke", "--nets", "3", "--throughput-nets", "2", "--warmup", "1", "--cpu-nets", "1",
         "--out", str(p / "o.json")], p / "o.json"),
    # NASLib's published NB301 scores (no statistics): the first 60 nets split in thirds, 2 generations
    # 8 cells of one dataset at full size (their statistics: about 10 s), a 4 x 1 search
    "search_timing.py": lambda t, p: (
        ["--datasets", "cifar10", "--evolve", "4", "--validate", "2", "--test", "2", "--population", "4",
         "--generations", "1", "--workers", "1", "--work", str(p / "w"), "--out", str(p / "o.json")], p / "o.json"),
    "hybrid_search.py": lambda t, p: (
        ["--settings", "nb301", "nb301-eznas", "--seeds", "0", "1", "--population", "20", "--generations", "2",
         "--limit", "60",
         "--resamples", "20", "--out", str(p / "o.json")], p / "o.json"),
    "nas_study.py": lambda t, p: (
        ["--proxies", "params", "--datasets", "cifar10", "--budgets", "4", "--seeds", "1", "--strategies", "random",
         "--out", str(p / "o.json"), "--cache", str(p / "cache.json")], p / "o.json"),
    # 3 test cells, params only, with its own score cache: the evolved programs' statistics are
    # computed for 3 full-size nets (in EZNAS_CACHE_DIR under tmp_path)
    "natsbench_eval.py": lambda t, p: (
        ["--datasets", "cifar10", "--limit", "3", "--resamples", "20", "--proxies", "params",
         "--cache-dir", str(p / "scores"), "--out", str(p / "o.json")], p / "o.json"),
    # 2 / 2 / 2 of the pool's full-size cells, 1 generation of 4, params only, own caches
    "natsbench_pool_search.py": lambda t, p: (
        ["--datasets", "cifar10", "--seeds", "0", "--evolve", "2", "--validate", "2", "--test", "2",
         "--population", "4", "--generations", "1", "--proxies", "params", "--work", str(p / "work"),
         "--cache-dir", str(p / "scores"), "--out", str(p / "o.json")], p / "o.json"),
    # 3 test cells of cifar10: the programs' statistics computed for 3 full-size nets (EZNAS_CACHE_DIR)
    "natsbench_pool_table.py": lambda t, p: (
        ["--datasets", "cifar10", "--limit", "3", "--out", str(p / "pool")], p / "pool" / "meta.json"),
    "gpu_summary.py": lambda t, p: (["--out", str(p / "o.json")], p / "o.json"),
    "table_scores.py": lambda t, p: (
        ["--limit", "1", "--datasets", "ImageNet16-120", "--backend", "serial", "--no-programs", "--baselines",
         "params", "nwot", "--device", "cpu", "--out", str(p / "ts")], p / "ts" / "meta.json"),
    "nb201_search.py": lambda t, p: (
        ["--config", str(t / "tiny.yaml"), "--run-dir", str(p / "run"), "--eval-dir", str(p / "eval"),
         "--out", str(p / "o.json")], p / "o.json"),
    "primitive_profile.py": lambda t, p: (
        ["--config", str(t / "run" / "config.yaml"), "--nets", "2", "--repeats", "1", "--programs", "10",
         "--out", str(p / "o.json")], p / "o.json"),
    "ray_local.py": lambda t, p: (["--tiny", "--out", str(p / "o.json")], p / "o.json"),
    "run_main_experiments.py": lambda t, p: (
        ["--setting", "nb201", "--config", str(_own_config(t, p)), "--seeds", "0", "--baselines", "params",
         "--out", str(p / "main.json"), "--eval-dir", str(p / "eval")], p / "main.json"),
    "search_study.py": lambda t, p: (
        ["--config", str(t / "tiny.yaml"), "--variants", "default", "--seeds", "0", "--out", str(p / "o.json"),
         "--runs-dir", str(p / "runs")], p / "o.json"),
    # reads the committed main_results.json / builtin_validation.json; writes only under tmp_path
    "ship_proxies.py": lambda t, p: (
        ["--package-dir", str(p / "pkg"), "--summary", str(p / "o.json"), "--readme", str(readme_copy(p))],
        p / "o.json"),
    "ship_validation.py": lambda t, p: (
        ["--main", str(tiny_main_results(t, p)), "--settings", "tiny", "--out", str(p / "o.json")], p / "o.json"),
    "stats_fidelity.py": lambda t, p: (
        ["--nets", "3", "--R", "2", "--s", "2", "--batch-size", "8", "--width", "4", "--depth", "1", "--threads", "1",
         "--out", str(p / "o.json")], p / "o.json"),
    "stats_throughput.py": lambda t, p: (
        ["--nets", "2", "--width", "4", "--depth", "1", "--threads", "1", "--datasets", "cifar10",
         "--out", str(p / "o.json")], p / "o.json"),
    "structure_check.py": lambda t, p: ([str(t / "run"), "--out", str(p / "o.json")], p / "o.json"),
    "worker_speedup.py": lambda t, p: (
        ["--nets", "6", "--width", "4", "--depth", "1", "--batch-size", "8",
         "--out", str(p / "o.json")], p / "o.json"),
}


#: what the output must say beyond parsing (the scripts' own checks, on the tiny setting)
CHECKS: dict[str, Callable[[dict], bool]] = {
    "baseline_pass_sharing.py": lambda d: d["identical_scores"] and len(d["nets"]) == 2,
    "check_published_proxies.py": lambda d: d["n"] == 4 and d["proxies"]["params"]["rho_vs_published"] is not None,
    "builtin_endtoend.py": lambda d: d["checks"]["nb301"]["tasks"]["nb301/cifar10"]["nets"] == 3
    and set(d["checks"]["nb301"]["tasks"]["nb301/cifar10"]["spearman"]) == {"eznas-nb301", "params", "flops", "nwot",
                                                                          "zico"},
    "check_sota_proxies.py": lambda d: d["setting"]["n"] == 3 and "az_nas" in d["results"],
    "digits_bench_report.py": lambda d: d["archs"] > 0 and d["space"] == "nb201",
    "ensemble_study.py": lambda d: {"run top-1", "run top-2", "best of each run"} <= set(d),
    "eval_throughput.py": lambda d: set(d["sets"]) == {"compact", "eznas"},
    "gpu_check.py": lambda d: d["smoke"] and d["agreement"]["agree"] and d["agreement"]["rel_err_float32_max"] == 0,
    "search_timing.py": lambda d: d["generations_done"] == 1 and d["programs_evaluated"] >= 4
    and d["search_wall_s"] > 0,
    "hybrid_search.py": lambda d: d["settings"]["nb301"]["tasks"]["nb301/cifar10"]["nets"]["test"] == 20
    and d["settings"]["nb301"]["tasks"]["nb301/cifar10"]["columns"]["nwot"]["baseline"]
    and len(d["settings"]["nb301"]["searches"][0]["runs"]) == 2
    and d["settings"]["nb301-eznas"]["tasks"]["nb301/cifar10"]["nets"]["test"] == 20
    and "az_expressivity" in d["settings"]["nb301-eznas"]["terminals"],
    "nas_study.py": lambda d: any(r["proxy"] == "params" for r in d["rows"]),
    "natsbench_eval.py": lambda d: d["tasks"]["nb201/cifar10"]["nets"] == 3
    and "params" in d["tasks"]["nb201/cifar10"]["proxies"],
    "natsbench_pool_search.py": lambda d: d["tasks"]["nb201/cifar10"]["nets"] == 2
    and {"evolved seed 0", "params"} <= set(d["tasks"]["nb201/cifar10"]["proxies"]),
    "natsbench_pool_table.py": lambda d: d["cells"] == {"cifar10": 3} and "eznas-nb201" in d["columns"],
    "gpu_summary.py": lambda d: d["one_process"]["nets_per_s"] > 0 and "score_agreement_cuda_vs_cpu" in d,
    "table_scores.py": lambda d: d["cells_done"] == {"ImageNet16-120": 1} and d["columns"] == ["params", "nwot"],
    "nb201_search.py": lambda d: d["generations"] == 2 and "nb201/digits" in d["test_spearman"],
    "primitive_profile.py": lambda d: len(d["primitives"]) > 10,
    "ray_local.py": lambda d: d["identical"],
    "run_main_experiments.py": lambda d: d["settings"]["nb201"]["baseline_names"] == ["params"]
    and "nb201/digits" in d["settings"]["nb201"]["baselines"],
    "search_study.py": lambda d: [r["variant"] for r in d["runs"]] == ["default"],
    "ship_proxies.py": lambda d: "eznas-nb201" in d["shipped"],
    "ship_validation.py": lambda d: d["tiny"]["nets_per_task"] == {"nb201/digits": 6},
    "stats_fidelity.py": lambda d: d["nets"] == 3 and len(d["spearman"]) == 10,
    "stats_throughput.py": lambda d: d["tasks"]["cifar10"]["nets"] == 2 and d["tasks"]["cifar10"]["bytes_per_net"] > 0,
    "structure_check.py": lambda d: set(d["runs"][0]["noise"]) == {"nb201/digits"},
    "worker_speedup.py": lambda d: len(d["runs"]) == 4,
}


def _own_config(tiny: Path, tmp: Path) -> Path:
    """The tiny config with its run directory under ``tmp`` (run_main_experiments adds ``-s<seed>``)."""
    cfg = config_mod.from_dict({**tiny_config(tiny), "run_dir": str(tmp / "run")})
    path = tmp / "tiny.yaml"
    config_mod.dump(cfg, path)
    return path


def test_every_script_has_a_case() -> None:
    """A new script must get a smoke case (or a reasoned cheap check below)."""
    cheap = {"builtin_fresh_venv.py", "export_fresh_venv.py", "update_readme.py"}
    assert sorted(p.name for p in EXPERIMENTS.glob("*.py")) == sorted(set(CASES) | cheap)
    assert set(CHECKS) == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_script_runs_on_tiny_setting(name: str, tiny: Path, tmp_path: Path) -> None:
    args, out = CASES[name](tiny, tmp_path)
    if name == "ray_local.py" and importlib.util.find_spec("ray") is None:  # Ray is an optional extra
        done = run_script(name, args, tmp_path, expect_rc=1)
        assert "ray is not installed" in done.stderr and not out.exists()
        return
    run_script(name, args, tmp_path)
    assert out.is_file(), f"{name} did not write {out}"
    doc = json.loads(out.read_text())
    assert CHECKS[name](doc), f"{name}: unexpected output {json.dumps(doc)[:2000]}"


@pytest.mark.parametrize("name", ["builtin_fresh_venv.py", "export_fresh_venv.py"])
def test_fresh_venv_scripts_parse_their_options(name: str, tmp_path: Path) -> None:
    """These create a virtual environment and pip-install torch (minutes, a local wheel): only
    their command line is checked here; run them by hand."""
    done = run_script(name, ["--help"], tmp_path)
    assert "--workdir" in done.stdout


def test_update_readme_rewrites_the_given_copy(tmp_path: Path) -> None:
    """Regenerates the results block of a copy of the README (the script writes no JSON)."""
    original = (ROOT / "README.md").read_text()
    begin, end = "<!-- results:begin -->", "<!-- results:end -->"
    head, rest = original.split(begin, 1)
    readme = tmp_path / "README.md"
    readme.write_text(head + begin + "\nstale block\n" + end + rest.split(end, 1)[1])
    run_script("update_readme.py", ["--readme", str(readme)], tmp_path)
    block = readme.read_text().split(begin, 1)[1].split(end, 1)[0]
    assert "stale block" not in block and block.lstrip().startswith("## Results")
    assert (ROOT / "README.md").read_text() == original


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_gpu_check_without_cuda_says_so(tmp_path: Path) -> None:
    done = run_script("gpu_check.py", ["--out", str(tmp_path / "o.json")], tmp_path, expect_rc=1)
    assert "no CUDA device here" in done.stderr
    assert not (tmp_path / "o.json").exists()


def test_search_scripts_keep_an_existing_run_directory(tiny: Path, tmp_path: Path) -> None:
    """An existing run directory is never deleted: the script stops and names it."""
    run_dir = tmp_path / "run"
    shutil.copytree(tiny / "run", run_dir)
    files = sorted(p.name for p in run_dir.iterdir())
    done = run_script("nb201_search.py", ["--config", str(tiny / "tiny.yaml"), "--run-dir", str(run_dir),
                                          "--out", str(tmp_path / "o.json")], tmp_path, expect_rc=1)
    assert "exists" in done.stderr and str(run_dir) in done.stderr
    assert sorted(p.name for p in run_dir.iterdir()) == files
    assert not (tmp_path / "o.json").exists()
