"""eznas.errors.run_main: the entry point of every experiment script (one error line, no traceback)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import sys, time
from eznas.errors import EznasError, run_main

def main():
    what = sys.argv[1]
    if what == "error":
        raise EznasError("no such cache: /nowhere")
    if what == "interrupt":
        raise KeyboardInterrupt
    if what == "dict":
        return {"rows": 3}
    return int(what)

run_main(main, "demo.py")
"""


@pytest.mark.parametrize("arg, code, stderr", [("error", 1, "demo.py: error: no such cache: /nowhere"),
                                                ("interrupt", 130, "demo.py: interrupted"),
                                                ("dict", 0, ""), ("3", 3, ""), ("0", 0, "")])
def test_run_main_exit_status_and_one_line(tmp_path: Path, arg: str, code: int, stderr: str) -> None:
    script = tmp_path / "demo.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(script), arg], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == code
    assert done.stderr.strip() == stderr  # one line, never a traceback


def test_every_experiment_script_runs_through_run_main() -> None:
    scripts = sorted((ROOT / "experiments").glob("*.py"))
    assert len(scripts) > 20
    missing = [p.name for p in scripts
               if 'if __name__ == "__main__":\n    run_main(main, Path(__file__).name)' not in p.read_text()]
    assert missing == []
