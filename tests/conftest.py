"""Shared fixtures. Tests that need the benchmark data fail (never skip) when it is missing."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from eznas import datadir

# Tests use small networks: one intra-op thread is as fast and is not slowed down by
# oversubscription when the machine is busy.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The data directory from EZNAS_DATA_DIR; a clear failure if it is not there."""
    d = datadir.data_dir(None)
    missing = [name for name, status in datadir.verify(d) if status == "missing"]
    if not os.environ.get(datadir.ENV_VAR):
        pytest.fail("EZNAS_DATA_DIR is not set; point it at the benchmark data (e.g. ../shared/data) "
                    "or run `eznas data download`", pytrace=False)
    if missing:
        pytest.fail(f"benchmark data missing from {d}: {', '.join(missing)}; run `eznas data download`",
                    pytrace=False)
    return d
