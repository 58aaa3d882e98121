"""Regenerate the built-in evolved proxies (``eznas/builtin_proxies/<name>.json``) from committed results.

For each setting, the shipped program is the GP seed's best program with the highest VALIDATION
fitness (ties: the lower GP seed); test figures are never looked at for the choice. Inputs, all
committed under ``experiments/results/``:

* ``main_results.json``        each GP seed's best program, its run, its test Spearman / Kendall per
                               task and the baselines' test Spearman on the same nets;
* ``builtin_validation.json``  each of those programs' validation fitness, recomputed through the
                               search's scoring path by ``experiments/ship_validation.py``.

Settings: ``eznas-nb201`` from configs/nb201.yaml (3 GP seeds), ``eznas-all`` from
configs/all-spaces.yaml. ``eznas-nb101`` / ``eznas-nb301`` / ``eznas-tnb`` are shipped only from a
per-space setting of main_results.json (a config whose tasks are all of that space); where none is
committed the script says so and ships nothing for it. Prints the chosen programs with their
validation and test figures; writes the JSON files and ``experiments/results/builtin_proxies.json``.

    python experiments/ship_proxies.py [--package-dir DIR] [--summary FILE] [--readme FILE]
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from eznas import config as config_mod  # noqa: E402
from eznas import program  # noqa: E402
from eznas.builtin_proxies import FORMAT  # noqa: E402
from eznas.export.loading import config_settings  # noqa: E402
from eznas.errors import run_main  # noqa: E402

RESULTS = ROOT / "experiments/results"
MAIN = RESULTS / "main_results.json"
VALIDATION = RESULTS / "builtin_validation.json"
PACKAGE = ROOT / "eznas/builtin_proxies"
SUMMARY = RESULTS / "builtin_proxies.json"
README = ROOT / "README.md"
BEGIN, END = "<!-- builtin-proxies:begin -->", "<!-- builtin-proxies:end -->"

#: built-in name -> (main_results setting, summary line)
SETTINGS = {
    "eznas-nb201": ("nb201", "evolved on NAS-Bench-201 (CIFAR-10, CIFAR-100, ImageNet16-120)"),
    "eznas-all": ("all-spaces", "evolved on NB201, NB101, NB301 and the seven TransNAS-Bench-101 micro tasks together"),
}
#: per-space built-ins -> the space a setting's tasks must all belong to
PER_SPACE = {"eznas-nb101": "nb101", "eznas-nb301": "nb301", "eznas-tnb": "tnb_micro"}


def per_space_settings(main: dict) -> dict[str, str]:
    """Built-in name -> main_results setting, for settings whose config has tasks of one space only."""
    found = {}
    for key, entry in main.items():
        cfg = config_mod.load(ROOT / entry["config"])
        spaces = {t.space for t in cfg.tasks}
        for name, space in PER_SPACE.items():
            if spaces == {space} and entry.get("runs"):
                found[name] = key
    return found


def choose(name: str, setting: str, entry: dict, validation: dict, summary: str) -> dict:
    val = validation.get(setting)
    if val is None:
        raise SystemExit(f"{VALIDATION.name} has no setting {setting!r}: run experiments/ship_validation.py")
    by_seed = {r["seed"]: r for r in val["runs"]}
    candidates = []
    for run in entry["runs"]:
        v = by_seed.get(run["seed"])
        if v is None or v["program"] != run["best"]:
            raise SystemExit(f"{setting} GP seed {run['seed']}: no validation fitness for {run['best']!r}; "
                             "run experiments/ship_validation.py")
        candidates.append((run, v))
    run, v = max(candidates, key=lambda c: (c[1]["validate"], -c[0]["seed"]))
    cfg = config_mod.load(ROOT / entry["config"])
    pset = cfg.search.primitive_set
    program.parse_expression(run["best"], program.load_primitive_set(pset))  # it must parse in its set
    test = {}
    for task, r in run["per_task"].items():
        base = max(entry["baselines"][task].items(), key=lambda kv: kv[1]) if entry.get("baselines") else None
        test[task] = {"spearman": r["evolved"], "kendall": run["kendall"][task], "nets": run["nets"][task],
                      "best_baseline": list(base) if base else None}
    provenance = {
        "config": entry["config"], "tasks": [f"{t.space}/{t.dataset}" for t in cfg.tasks], "gp_seed": run["seed"],
        "run_dir": run["run_dir"], "fitness": val["fitness"], "validate": v["validate"],
        "validate_per_task": v["validate_per_task"],
        "validate_nets_per_task": sorted(set(val["nets_per_task"].values()))[0],
        "chosen_by": f"highest validation fitness among the best programs of GP seeds "
                     f"{', '.join(str(r['seed']) for r, _ in candidates)}",
        "candidates": [{"gp_seed": r["seed"], "validate": c["validate"], "program": r["best"]} for r, c in candidates],
        "test_source": "experiments/results/main_results.json (test split; baselines: eznas evaluate on the same nets)",
        "validation_source": "experiments/results/builtin_validation.json (experiments/ship_validation.py)",
        "regenerate": "python experiments/ship_validation.py && python experiments/ship_proxies.py",
    }
    return {"format": FORMAT, "name": name, "summary": summary, "expression": run["best"], "primitive_set": pset,
            "settings": asdict(config_settings(cfg)), "provenance": provenance, "test": test}


def markdown(shipped: dict[str, dict]) -> str:
    """The README table of the shipped proxies (validation figures, test figures, best baselines)."""
    lines = ["| built-in | program (config, GP seed) | validation fitness of each seed's best program | "
             "test Spearman rho (nets per task) | best baseline on the same nets |", "|---|---|---|---|---|"]
    for name, doc in shipped.items():
        p = doc["provenance"]
        cands = " / ".join(f"{'**' if c['gp_seed'] == p['gp_seed'] else ''}s{c['gp_seed']} {c['validate']:.3f}"
                           f"{'**' if c['gp_seed'] == p['gp_seed'] else ''}" for c in p["candidates"])
        tests = ", ".join(f"{t.split('/')[-1] if t.startswith('nb201') else t.split('/')[0]}"
                          f"{'' if not t.startswith('tnb') else '/' + t.split('/')[1]} {r['spearman']:.3f}"
                          for t, r in doc["test"].items())
        nets = sorted({r["nets"] for r in doc["test"].values()})
        bases = ", ".join(f"{r['best_baseline'][0]} {r['best_baseline'][1]:.3f}" for r in doc["test"].values()
                          if r.get("best_baseline"))
        lines.append(f"| `{name}` | `{doc['expression']}` ({p['config']}, GP seed {p['gp_seed']}) | {cands} | "
                     f"{tests} ({'/'.join(map(str, nets))}) | {bases} |")
    lines.append("")
    for name, doc in shipped.items():
        p, rows = doc["provenance"], doc["test"].values()
        above = sum(r["spearman"] > r["best_baseline"][1] for r in rows if r.get("best_baseline"))
        lines.append(f"- `{name}`: validation on {p['validate_nets_per_task']} nets per task ({p['fitness']}); "
                     f"test rho above the best baseline of the same run on {above} of {len(doc['test'])} tasks.")
    return "\n".join(lines)


def update_readme(table: str, readme: Path = README) -> None:
    text = readme.read_text()
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        print(f"README has no {BEGIN} ... {END} block; table not written")
        return
    readme.write_text(text[:start + len(BEGIN)] + "\n" + table + "\n" + text[end:])
    print(f"updated the built-in proxies table of {readme}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--package-dir", type=Path, default=PACKAGE, help="where the built-in JSON files go")
    ap.add_argument("--summary", type=Path, default=SUMMARY)
    ap.add_argument("--readme", type=Path, default=README, help="the README whose built-in proxies table is rewritten")
    args = ap.parse_args()
    package = args.package_dir
    package.mkdir(parents=True, exist_ok=True)
    main_results = json.loads(MAIN.read_text())["settings"]
    validation = json.loads(VALIDATION.read_text()) if VALIDATION.is_file() else {}
    settings = {name: key for name, (key, _) in SETTINGS.items()}
    summaries = {name: text for name, (_, text) in SETTINGS.items()}
    for name, key in per_space_settings(main_results).items():
        settings[name] = key
        summaries[name] = f"evolved on {PER_SPACE[name]} alone"
    shipped, report = {}, {}
    for name, key in settings.items():
        doc = choose(name, key, main_results[key], validation, summaries[name])
        (package / f"{name}.json").write_text(json.dumps(doc, indent=1) + "\n")
        shipped[name] = doc
        p = doc["provenance"]
        print(f"{name}: GP seed {p['gp_seed']} of {p['config']}  {doc['expression']}")
        for c in p["candidates"]:
            mark = "  <- shipped" if c["gp_seed"] == p["gp_seed"] else ""
            print(f"    GP seed {c['gp_seed']}: validation {c['validate']:.4f}{mark}")
        for task, r in doc["test"].items():
            b = r["best_baseline"]
            print(f"    test {task:26s} Spearman {r['spearman']:.3f}  Kendall {r['kendall']:.3f}  ({r['nets']} nets)"
                  + (f"  best baseline {b[0]} {b[1]:.3f}" if b else ""))
        report[name] = {"config": p["config"], "gp_seed": p["gp_seed"], "expression": doc["expression"],
                        "validate": p["validate"], "candidates": p["candidates"],
                        "test_spearman": {t: r["spearman"] for t, r in doc["test"].items()}}
    missing = [n for n in PER_SPACE if n not in settings]
    for name in missing:
        print(f"{name}: not shipped - no per-space ({PER_SPACE[name]}-only) run is committed in {MAIN.name}")
    for stale in package.glob("eznas-*.json"):
        if stale.stem not in shipped and json.loads(stale.read_text()).get("primitive_set") != "hybrid":
            # (hybrid proxies are written by experiments/hybrid_search.py --ship, not from main_results)
            stale.unlink()
            print(f"removed {stale} (no committed run backs it)")
    table = markdown(shipped)
    print(table)
    update_readme(table, args.readme)
    args.summary.parent.mkdir(parents=True, exist_ok=True)
    args.summary.write_text(json.dumps({"markdown": table, "shipped": report,
                                        "not_shipped": {n: f"no {PER_SPACE[n]}-only run committed" for n in missing}},
                                       indent=1) + "\n")
    print(f"wrote {', '.join(str(package / f'{n}.json') for n in shipped)} and {args.summary}")


if __name__ == "__main__":
    run_main(main, Path(__file__).name)
