"""eznas: discover zero-cost proxies for neural architecture search with genetic programming."""
from __future__ import annotations

__version__ = "0.1.0"

from eznas.errors import EznasError

__all__ = ["EznasError", "__version__", "load_proxy"]


def load_proxy(path_or_name: str, trust: bool = False):  # pragma: no cover - thin re-export
    """Load an exported proxy file, a run directory, a built-in evolved proxy (``"eznas-nb201"``, see
    :mod:`eznas.builtin_proxies`) or a baseline by name (see :mod:`eznas.export.loading`)."""
    from eznas.export.loading import load_proxy as _load

    return _load(path_or_name, trust=trust)
