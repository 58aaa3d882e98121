"""Evolved proxies outside the search: writing them as standalone modules, loading them safely, scoring.

- :mod:`eznas.export.writing`  ``eznas export``: a torch-only module embedding :mod:`eznas.runtime`
  verbatim (plus :mod:`eznas.export.doc`, its docstring);
- :mod:`eznas.export.loading`  :func:`load_proxy` (the file format, the trust model), run
  directories (:func:`load_run_proxies`), baselines by name, the one way to call a proxy;
- :mod:`eznas.export.score`    ``eznas score``.

An exported module, the in-process :class:`Proxy` of its file and the search run the same
runtime code; see :mod:`eznas.runtime` for when their scores agree bit for bit.
"""
from __future__ import annotations

from eznas.export.loading import (FORMAT, HASH_PREFIX, JSON_BEGIN, JSON_END, MARKER, Proxy, ProxySettings,
                                  call_proxy, load_proxy, load_run_proxies, proxy_kind, read_proxy_file)
from eznas.export.score import cmd_score
from eznas.export.writing import ExportResult, cmd_export, export_proxy, module_source, program_source

__all__ = ["FORMAT", "HASH_PREFIX", "JSON_BEGIN", "JSON_END", "MARKER", "ExportResult", "Proxy", "ProxySettings",
           "call_proxy", "cmd_export", "cmd_score", "export_proxy", "load_proxy", "load_run_proxies",
           "module_source", "program_source", "proxy_kind", "read_proxy_file"]
