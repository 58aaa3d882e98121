"""The measurement runtime: the one implementation of what a zero-cost proxy measures.

Used by the search (:mod:`eznas.stats` records and caches statistics with it, :mod:`eznas.fitness`
aggregates with it, :func:`eznas.batches.make_batches` draws N and P with it) and copied verbatim by
``eznas export`` into every exported proxy module, so the two cannot drift apart. It imports only
torch and the standard library. Modules, in the order they are embedded:

- :mod:`.tensors`   the 22 tensor names, their order, sketch families and the sketch-seed formula;
- :mod:`.sketch`    the seeded (R, s, s) sketch indices;
- :mod:`.units`     which modules are units (eznas-style ReLU-Conv-BN units, else every Conv2d);
- :mod:`.record`    the hooks, the D / N / P forward + backward passes, the drawing of N and P;
- :mod:`.precision` the storage round trip (``quantise``) the search's cache applies;
- :mod:`.aggregate` per-unit scores -> network score (mean / sum / median);
- :mod:`.proxy`     a proxy's entry points: statistics, per-unit scores, network score.

Exactness: an exported proxy given the search's batch (``eznas.batches.make_batches``' D, N, P and
targets, the space's loss) on the search's network computes the statistics the search cached, bit
for bit (it applies the cache's storage round trip, :func:`quantise`), and the same per-unit and
network scores (tested on every net of a task: bit for bit, also for a counting program on
float16-cached statistics). Not guaranteed: (1) the search evaluates a program on all networks'
units of a task at once, a proxy on one network's units, so primitives whose torch kernels pick
another algorithm for another batch size (matmul-based ones: ``matmul``, ``slogdet``,
``eig_ratio``, ``svd_ratio``, ``cosine``) may differ in the last float32 bits; (2) a program that
raises on some unit makes the search's whole task NaN but only that network's score NaN here;
(3) another torch build or thread count changes the last bits of the statistics on both sides.
"""
from __future__ import annotations

from eznas.runtime.aggregate import UNIT_AGGREGATES, aggregate_net, aggregate_units, program_scores
from eznas.runtime.precision import STORAGE_DTYPES, decode, encode, quantise
from eznas.runtime.proxy import proxy_score, proxy_statistics, proxy_unit_scores
from eznas.runtime.record import Recorder, dnp_inputs, draw_noise, record_statistics, run_passes
from eznas.runtime.sketch import SketchIndex, make_index, weight_matrix
from eznas.runtime.tensors import FAMILY, FAMILY_SEED, INDEX, INPUTS, ROLES, TENSOR_NAMES, sketch_seed
from eznas.runtime.units import UNIT_ORDERS, find_units, is_unit, unit_weight

#: the runtime's modules in dependency order: ``eznas export`` embeds their code in this order
MODULES = ("tensors", "sketch", "units", "record", "precision", "aggregate", "proxy")

__all__ = ["FAMILY", "FAMILY_SEED", "INDEX", "INPUTS", "MODULES", "ROLES", "Recorder", "STORAGE_DTYPES",
           "SketchIndex", "TENSOR_NAMES", "UNIT_AGGREGATES", "UNIT_ORDERS", "aggregate_net", "aggregate_units",
           "decode", "dnp_inputs", "draw_noise", "encode", "find_units", "is_unit", "make_index", "program_scores",
           "proxy_score", "proxy_statistics", "proxy_unit_scores", "quantise", "record_statistics", "run_passes",
           "sketch_seed", "unit_weight", "weight_matrix"]
