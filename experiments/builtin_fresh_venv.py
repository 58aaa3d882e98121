"""The built-in evolved proxies load by name from an installed copy of eznas, outside the repository.

1. exports the committed tree (``git archive HEAD``) into a temporary directory outside the
   repository and creates a fresh virtual environment there;
2. installs ``torch==2.13.0`` (the local wheel this project's machines carry) and then that copy of
   eznas, not editable (a built wheel: only what the package data declares is installed);
3. in that venv, from a directory outside the repository, with PYTHONPATH unset, the proxy
   variables pointing at a closed port (no network) and no run directory anywhere: checks that
   ``eznas`` is imported from the venv's site-packages, loads every built-in by name with
   ``eznas.load_proxy``, reads its docstring and scores a plain PyTorch CNN on a fixed batch; runs
   ``eznas proxies list`` and ``eznas proxies show eznas-nb201`` with the venv's console script;
4. scores the same model and batch in this process (the repository's eznas) and checks equality.

    python experiments/builtin_fresh_venv.py [--workdir DIR] [--keep]

Writes experiments/results/builtin_fresh_venv.txt; exits 1 if a check fails.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from eznas.errors import run_main


ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "experiments/results/builtin_fresh_venv.txt"

RUNNER = r'''
import json, sys
import torch
from torch import nn
import eznas
from eznas import builtin_proxies
torch.set_num_threads(1)
torch.manual_seed(0)
model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                      nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                      nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
g = torch.Generator().manual_seed(0)
x, y = torch.randn(16, 3, 16, 16, generator=g), torch.arange(16) % 10
out = {"eznas_file": eznas.__file__, "names": builtin_proxies.names(), "proxies": {}}
for name in builtin_proxies.names():
    p = eznas.load_proxy(name)
    out["proxies"][name] = {"score": p(model, x, y), "expression": p.raw, "doc_first_line": p.__doc__.splitlines()[0],
                            "doc_lines": len(p.__doc__.splitlines())}
print(json.dumps(out))
'''


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if res.returncode != 0:
        sys.exit(f"command failed ({res.returncode}): {' '.join(cmd)}\n{res.stdout[-2000:]}\n{res.stderr[-4000:]}")
    return res


def in_repo_scores() -> dict[str, float]:
    """The same RUNNER with this repository's eznas (PYTHONPATH) and this interpreter."""

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = run([sys.executable, "-c", RUNNER], env=env, cwd=ROOT)
    return {name: r["score"] for name, r in json.loads(res.stdout.splitlines()[-1])["proxies"].items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--out", type=Path, default=OUT, help="the report (text)")
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="eznas-builtin-")).resolve()
    assert ROOT not in work.parents, "the work directory must be outside the repository"
    lines: list[str] = []

    def say(text: str) -> None:
        print(text)
        lines.append(text.replace(str(work), "<tmp>"))

    try:
        src = work / "src"
        src.mkdir(parents=True, exist_ok=True)
        commit = run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]).stdout.strip()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", "HEAD"], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
        say(f"exported the committed tree (HEAD {commit}) to <tmp>/src")
        venv = work / "venv"
        py = venv / "bin" / "python"
        t0 = time.perf_counter()
        if py.is_file():  # --workdir of an earlier run: keep its torch, reinstall eznas from this tree
            run([str(py), "-m", "pip", "install", "--quiet", "--force-reinstall", "--no-deps", str(src)])
            say(f"reused the venv of --workdir; reinstalled eznas (built, non-editable): "
                f"{time.perf_counter() - t0:.0f} s")
        else:
            run([sys.executable, "-m", "venv", str(venv)])
            run([str(py), "-m", "pip", "install", "--quiet", "torch==2.13.0"])
            run([str(py), "-m", "pip", "install", "--quiet", str(src)])
            say(f"fresh venv with torch==2.13.0 and a built (non-editable) install of eznas: "
                f"{time.perf_counter() - t0:.0f} s")
        shutil.rmtree(src)  # nothing of the source tree is left to import from
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "EZNAS_DATA_DIR", "EZNAS_CACHE_DIR")}
        env.update({"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
                    "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "OMP_NUM_THREADS": "1"})
        cwd = work / "elsewhere"
        cwd.mkdir(exist_ok=True)
        res = json.loads(run([str(py), "-c", RUNNER], cwd=cwd, env=env).stdout.strip().splitlines()[-1])
        site = Path(res["eznas_file"]).resolve()
        ok = venv.resolve() in site.parents and ROOT not in site.parents
        say(f"in the venv: eznas imported from {site.parent} (venv site-packages, not the repository: {ok})")
        say(f"built-in proxies found: {', '.join(res['names'])}")
        ok &= set(res["names"]) >= {"eznas-nb201", "eznas-all"}
        mine = in_repo_scores()
        for name, r in res["proxies"].items():
            same = r["score"] == mine.get(name)
            ok &= same and r["doc_lines"] > 20
            say(f"{name}: {r['expression']}")
            say(f"  docstring: {r['doc_first_line']!r} ({r['doc_lines']} lines)")
            say(f"  plain CNN, fixed batch: installed copy {r['score']!r}, repository {mine.get(name)!r}, "
                f"equal: {same}")
        listing = run([str(venv / "bin" / "eznas"), "proxies", "list"], cwd=cwd, env=env).stdout
        show = run([str(venv / "bin" / "eznas"), "proxies", "show", "eznas-nb201"], cwd=cwd, env=env).stdout
        ok &= "eznas-nb201" in listing and "Provenance" in show and "Test figures" in show
        say("`eznas proxies list` in the venv:")
        lines.extend("    " + ln for ln in listing.rstrip().splitlines())
        print(listing.rstrip())
        say(f"`eznas proxies show eznas-nb201` in the venv: {len(show.splitlines())} lines, "
            "provenance and test figures present")
        say("PASS" if ok else "FAIL")
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    sys.exit(0 if lines[-1] == "PASS" else 1)


if __name__ == "__main__":
    run_main(main, Path(__file__).name)
