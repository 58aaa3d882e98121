"""Primitive sets from YAML, infix round trips, parse errors, random trees and the evaluator."""
from __future__ import annotations

import pickle
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from deap import gp

from eznas import expression
from eznas import primitives as P
from eznas import simplify as simp
from eznas.errors import EznasError
from eznas.primitives import Scalar, Tensor
from eznas.program import (Evaluator, PrimitiveSet, builtin_sets, load_primitive_set, parse_expression,
                           parse_infix, random_tree, to_expr, to_infix, to_tree)
from eznas.tensors import INDEX, TENSOR_NAMES

ROOT = Path(__file__).resolve().parents[1]
SETS = ("compact", "eznas")


def _write(tmp_path: Path, text: str, name: str = "custom.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.fixture(scope="module")
def values() -> torch.Tensor:
    """Small statistics (rows=6, 22, R=2, s=4) with zeros, huge values, NaN and inf in places."""
    v = torch.randn(6, len(TENSOR_NAMES), 2, 4, 4, generator=torch.Generator().manual_seed(1))
    v[0] = 0.0
    v[1, :, :, 2:, :] = 0.0  # zero padding
    v[2, 3] *= 1e30
    v[3, 5, 0, 0, 0] = float("nan")
    v[4, 7, 1, 1, 1] = float("inf")
    return v


def _nodes_key(tree: gp.PrimitiveTree) -> list[tuple]:
    return [(type(n).__name__, n.name, getattr(n, "value", None) if n.arity == 0 else None, n.ret, n.arity)
            for n in tree]


# ---------------------------------------------------------------------------- sets


@pytest.mark.parametrize("name", SETS)
def test_builtin_set(name: str) -> None:
    ps = load_primitive_set(name)
    assert isinstance(ps, PrimitiveSet) and ps.name == name
    assert ps.pset.ret is Scalar and ps.terminals == TENSOR_NAMES
    assert ps.pset.arguments == list(TENSOR_NAMES)  # argument i is tensor i
    assert [t.value for t in ps.pset.terminals[Tensor]] == list(TENSOR_NAMES)
    assert ps.pset.terminals[Scalar], "typed generation needs a Scalar terminal"
    assert load_primitive_set(name) is ps  # cached: one DEAP set per file content


def test_compact_is_small() -> None:
    assert 10 <= len(load_primitive_set("compact").primitives) <= 14
    assert len(load_primitive_set("eznas").primitives) >= 40
    assert set(SETS) <= set(builtin_sets())


def test_load_by_path_and_symlink() -> None:
    ps = load_primitive_set(str(ROOT / "primitives" / "compact.yaml"))
    assert ps.primitives == load_primitive_set("compact").primitives


def test_unknown_set() -> None:
    with pytest.raises(EznasError, match="unknown primitive set 'nope'.*compact.*eznas"):
        load_primitive_set("nope")
    with pytest.raises(EznasError, match="does not exist"):
        load_primitive_set("no/such/file.yaml")


@pytest.mark.parametrize("text, match", [
    ("primitives: [add, mean, frobnicate]", r"unknown primitive\(s\) frobnicate; valid names: add, sub"),
    ("primitives: [add, mean]\nterminals: [W, Q_D]", r"unknown terminal\(s\) Q_D"),
    ("primitives: [add, mean]\ncolour: red", r"unknown key\(s\) colour"),
    ("primitives: [add, mean]\nconstants: [1.0, x]", "finite number"),
    ("primitives: [mean, mul_s]", "at least one primitive returning a Tensor"),
    ("primitives: [add, add_s]", "at least one reduction"),
    ("primitives: [add, add, mean]", "listed twice"),
    ("primitives: add", "non-empty list"),
    ("primitives: [add, mean]\nephemeral: {low: 2, high: 1}", "low < high"),
    ("- a\n- b", "YAML mapping"),
    ("primitives: [add, mean", "not valid YAML"),
])
def test_bad_yaml(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(EznasError, match=match) as info:
        load_primitive_set(_write(tmp_path, text))
    assert "\n" not in str(info.value)


def test_terminal_subset(tmp_path: Path) -> None:
    ps = load_primitive_set(_write(tmp_path, "primitives: [add, mean]\nterminals: [W, gW_D]\n"))
    assert ps.terminals == ("W", "gW_D") and ps.constants == (1.0,)
    assert ps.pset.arguments == list(TENSOR_NAMES)
    rng = random.Random(0)
    used = {n.value for _ in range(50) for n in random_tree(ps, rng, 1, 4)
            if n.arity == 0 and isinstance(n.value, str)}
    assert used <= {"W", "gW_D"}
    with pytest.raises(EznasError, match="unknown name 'A_D'"):
        parse_infix("mean(A_D)", ps)


# ---------------------------------------------------------------------------- infix


@pytest.mark.parametrize("name", SETS + ("ephemeral",))
def test_round_trip(tmp_path: Path, name: str) -> None:
    if name == "ephemeral":
        ps = load_primitive_set(_write(tmp_path, "primitives: [add, mul, mean, cosine, add_s, mul_s, div_s]\n"
                                                 "constants: [1.0]\nephemeral: {low: -2, high: 2, decimals: 2}\n"))
    else:
        ps = load_primitive_set(name)
    rng = random.Random(7)
    constants = 0
    for _ in range(200):
        tree = random_tree(ps, rng, 1, 6)
        text = to_infix(tree)
        back = parse_infix(text, ps)
        assert to_infix(back) == text == str(tree)
        assert _nodes_key(back) == _nodes_key(tree)
        constants += sum(1 for n in tree if n.ret is Scalar and n.arity == 0)
    assert constants > 0
    if name == "ephemeral":
        assert any(isinstance(type(n), gp.MetaEphemeral) for _ in range(50) for n in random_tree(ps, rng, 2, 5))


def test_infix_example() -> None:
    ps = load_primitive_set("eznas")
    text = "div_s(mean_abs(mul(gW_D, W)), add_s(std(A_N), 2.0))"
    tree = parse_infix(text, ps)
    assert to_infix(tree) == text
    assert to_infix(parse_infix("  div_s( mean_abs(mul(gW_D,W)) ,add_s(std(A_N),2) ) ", ps)) == text
    assert to_infix(parse_infix("mul(gW_D, W)", ps, ret=Tensor)) == "mul(gW_D, W)"


@pytest.mark.parametrize("text, match", [
    ("mean(W", r"column 7: expected '\)' but found the end"),
    ("mean(W))", "column 8: expected the end but found '\\)'"),
    ("mean(W, W)", r"column 7: expected '\)' but found ','"),
    ("cosine(W)", "column 9: expected ',' but found '\\)'"),
    ("meen(W)", "column 1: unknown name 'meen' \\(did you mean mean"),
    ("add(W, W)", "column 1: 'add' gives a Tensor where a Scalar is expected"),
    ("mean(2.0)", "column 6: '2.0' gives a Scalar where a Tensor is expected"),
    ("add_s(mean(W), 3.25)", "column 16: constant 3.25 is not in the primitive set"),
    ("mean W", "column 6: expected '\\(' but found 'W'"),
    ("mean(W) # x", "column 9: unexpected character '#'"),
    ("", "column 1: expected a name or number but found the end"),
    ("mean(,)", "column 6: expected a name or number but found ','"),
])
def test_parse_errors(text: str, match: str) -> None:
    with pytest.raises(EznasError, match=match):
        parse_infix(text, load_primitive_set("eznas"))


# ---------------------------------------------------------------------------- random trees


def test_random_tree_seeding() -> None:
    ps = load_primitive_set("eznas")
    state = random.getstate()
    a = [to_infix(random_tree(ps, random.Random(3), 2, 5)) for _ in range(3)]
    b = [to_infix(random_tree(ps, 3, 2, 5)) for _ in range(3)]
    assert len(set(a)) == 1 and a == b
    assert random.getstate() == state  # a Random instance leaves the global state alone
    rng = random.Random(3)
    first, second = random_tree(ps, rng, 2, 5), random_tree(ps, rng, 2, 5)
    assert to_infix(first) == a[0] and to_infix(second) != a[0]  # the generator advances
    for _ in range(50):
        tree = random_tree(ps, rng, 1, 6)
        assert tree[0].ret is Scalar and 1 <= tree.height <= 6
    with pytest.raises(EznasError):
        random_tree(ps, rng, 4, 2)


def test_tree_pickles(tmp_path: Path) -> None:
    ps = load_primitive_set(_write(tmp_path, "primitives: [add, mean, add_s]\nephemeral: {low: 0, high: 1}\n"))
    rng = random.Random(0)
    for _ in range(20):
        tree = random_tree(ps, rng, 1, 4)
        assert to_infix(pickle.loads(pickle.dumps(tree))) == to_infix(tree)


# ---------------------------------------------------------------------------- evaluator


def test_hand_computation(values: torch.Tensor) -> None:
    ps = load_primitive_set("eznas")
    ev = Evaluator(values, ps)
    got = ev(parse_infix("div_s(mean_abs(mul(gW_D, W)), add_s(std(A_N), 2.0))", ps))
    v = values[:, [INDEX["gW_D"], INDEX["W"], INDEX["A_N"]]].double()
    num = (v[:, 0] * v[:, 1]).abs().mean((1, 2, 3))
    den = v[:, 2].std((1, 2, 3), correction=0) + 2.0
    want = torch.where(torch.isfinite(num / den), num / den, float("nan")).float()
    assert got.shape == (values.shape[0],) and got.dtype == torch.float32
    torch.testing.assert_close(got, want, equal_nan=True)
    assert torch.equal(ev.terminal("W"), values[:, 0])
    assert ev(parse_infix("2.0", ps)).tolist() == [2.0] * values.shape[0]
    assert ev(parse_infix("abs(W)", ps, ret=object)).shape == values[:, 0].shape


def test_cache_matches_no_cache(values: torch.Tensor) -> None:
    ps = load_primitive_set("eznas")
    cached, plain = Evaluator(values, ps), Evaluator(values, ps, cache_bytes=0)
    trees = [random_tree(ps, random.Random(i), 1, 5) for i in range(40)]
    first = [cached(t) for t in trees]
    again = [cached(t) for t in trees]
    for tree, a, b in zip(trees, first, again):
        torch.testing.assert_close(a, plain(tree), equal_nan=True)
        torch.testing.assert_close(b, a, equal_nan=True)
    assert cached.cache_info["hits"] > 0 and plain.cache_info["entries"] == 0
    first[0][:] = 123.0  # results are copies: changing one does not change the cache
    torch.testing.assert_close(cached(trees[0]), again[0], equal_nan=True)
    cached.clear_cache()
    assert cached.cache_info["entries"] == 0


def test_cache_budget(values: torch.Tensor) -> None:
    ps = load_primitive_set("compact")
    budget = 3 * values[:, 0].numel() * 4
    ev = Evaluator(values, ps, cache_bytes=budget)
    for i in range(30):
        ev(random_tree(ps, random.Random(i), 2, 6))
        assert ev.cache_info["bytes"] <= budget


@pytest.mark.parametrize("name", SETS)
def test_random_trees_never_raise(values: torch.Tensor, name: str) -> None:
    ps = load_primitive_set(name)
    ev = Evaluator(values, ps)
    rng = random.Random(11)
    for _ in range(200):
        out = ev(random_tree(ps, rng, 1, 6))
        assert out.shape == (values.shape[0],) and out.dtype == torch.float32
        assert not torch.isinf(out).any()
    assert ev.errors == 0, ev.last_error  # no primitive raised, not even caught


def test_float16_values(values: torch.Tensor) -> None:
    ps = load_primitive_set("compact")
    tree = parse_infix("div_s(frob(mul(gZ_D, Z_D)), mean_abs(W))", ps)
    half = values.clamp(-100, 100).nan_to_num(0.0).half()
    torch.testing.assert_close(Evaluator(half, ps)(tree), Evaluator(half.float(), ps)(tree), equal_nan=True)


def test_evaluator_errors(values: torch.Tensor) -> None:
    ps = load_primitive_set("compact")
    with pytest.raises(EznasError, match="statistics must be"):
        Evaluator(values[:, :3], ps)
    ev = Evaluator(values, ps)
    with pytest.raises(EznasError, match="unknown tensor"):
        ev.terminal("Q")
    with pytest.raises(EznasError, match="not in primitive set"):
        ev(parse_infix("mean(exp(W))", load_primitive_set("eznas")))
    with pytest.raises(EznasError, match="malformed"):
        ev(gp.PrimitiveTree(list(parse_infix("mean(W)", ps))[:1]))


# ---------------------------------------------------------------------------- one representation


def _recorded_programs() -> list[str]:
    """Programs written by real runs into experiments/results (hall-of-fame infix strings)."""
    found: dict[str, None] = {}
    for path in sorted((ROOT / "experiments" / "results").rglob("*.json")):
        for m in re.finditer(r'"(?:best|program|infix)": "([^"]+)"', path.read_text()):
            found.setdefault(m.group(1))
    return list(found)


def test_recorded_programs_parse_identically() -> None:
    """Infix strings of existing runs parse into the same tree as text of the shared expression
    parser, print back unchanged, and convert between tree and expression exactly."""
    texts = _recorded_programs()
    assert len(texts) >= 20
    ps = load_primitive_set("eznas")
    for text in texts:
        tree = parse_infix(text, ps)
        assert to_infix(tree) == text == str(tree)
        expr = expression.parse(text)
        assert to_expr(tree) == expr == parse_expression(text, ps) and expression.to_infix(expr) == text
        assert _nodes_key(to_tree(expr, ps)) == _nodes_key(tree)


def test_simplified_constants_round_trip(tmp_path: Path) -> None:
    """Folded constants are printed briefly and read back exactly, by the expression parser and
    by a primitive set with an ephemeral constant."""
    ps = load_primitive_set(_write(tmp_path, "primitives: [add, mean, std, add_s, sub_s, mul_s, div_s, log_s, neg_s]\n"
                                             "constants: [1.0, 2.0]\nephemeral: {low: -2, high: 2, decimals: 3}\n"))
    folded = simp.simplify("add_s(mean(W), log_s(div_s(2.0, neg_s(1.0))))")
    assert expression.to_infix(folded) == "add_s(mean(W), 0.6931472)"  # not 0.6931471824645996
    rng = random.Random(3)
    trees = [random_tree(ps, rng, 2, 6) for _ in range(300)]
    changed = 0
    for tree in trees:
        simple = simp.simplify(tree)
        text = expression.to_infix(simple)
        assert expression.parse(text) == simple
        if expression.type_of(simple) is Scalar:
            assert to_expr(parse_infix(text, ps)) == simple
        changed += text != to_infix(tree)
    assert changed > 20
    with pytest.raises(EznasError, match="constant 0.6931472 is not in the primitive set"):
        parse_infix(expression.to_infix(folded), load_primitive_set("eznas"))


def _reference(tree: gp.PrimitiveTree, ps: PrimitiveSet, values: torch.Tensor) -> torch.Tensor:
    """The evaluator as it was before the shared one: the set's functions applied in post-order on
    the DEAP tree, no memo, a numerical failure -> NaN rows."""
    rows = values.shape[0]
    stack: list[torch.Tensor] = []
    try:
        with torch.no_grad():
            for node in reversed(tree):
                if node.arity == 0 and isinstance(node.value, str):
                    stack.append(values[:, INDEX[node.value]].float())
                elif node.arity == 0:
                    stack.append(torch.full((rows,), float(node.value), dtype=torch.float32))
                else:
                    args = [stack.pop() for _ in range(node.arity)]
                    stack.append(ps.pset.context[node.name](*args))
    except Exception:  # noqa: BLE001
        return torch.full((rows,), float("nan"))
    return stack[0].expand(rows) if stack[0].dim() == 0 else stack[0]


@pytest.fixture(scope="module")
def real_values(data_dir: Path) -> torch.Tensor:
    """Statistics of 4 tiny NB201 nets as the cache stores them (float16)."""
    from eznas import records
    from eznas.stats import StatsSettings, compute_net, net_batches

    st = StatsSettings("nb201", "cifar10", batch_size=8, seed=0, R=4, s=4, dtype="float16", width=4, depth=1)
    batches = net_batches(st)
    archs = records.load_task("nb201", "cifar10", None).archs[:4]
    return torch.cat([compute_net(a, st, batches)[0] for a in archs]).half()


@pytest.mark.parametrize("name", SETS)
def test_evaluator_equals_reference_on_real_statistics(real_values: torch.Tensor, name: str) -> None:
    ps = load_primitive_set(name)
    memo = Evaluator(real_values, ps)
    rng = random.Random(17)
    finite = 0
    for _ in range(150):
        tree = random_tree(ps, rng, 1, 6)
        want = _reference(tree, ps, real_values)
        for got in (memo(tree), expression.evaluate(to_expr(tree), real_values), memo(to_infix(tree))):
            assert torch.equal(got.nan_to_num(7.5), want.nan_to_num(7.5)), to_infix(tree)
        finite += bool(torch.isfinite(want).all())
    assert finite > 50 and memo.cache_info["hits"] > 0


def test_shared_subtrees_once(values: torch.Tensor) -> None:
    """A subtree used twice in one expression is computed once, even without a memo."""
    ev = expression.Evaluator(values, cache_bytes=0)
    calls = {"n": 0}
    spec = P.REGISTRY["square"]
    original = spec.fn

    def counting(x: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        return original(x)

    try:
        object.__setattr__(spec, "fn", counting)  # PrimitiveSpec is frozen
        out = ev("add_s(mean(square(W)), std(square(W)))")
    finally:
        object.__setattr__(spec, "fn", original)
    assert calls["n"] == 1
    assert torch.equal(out.nan_to_num(7.5), expression.evaluate(
        "add_s(mean(square(W)), std(square(W)))", values).nan_to_num(7.5))


def test_expression_parser_limits_and_errors() -> None:
    deep = "mean(" + "abs(" * 250 + "W" + ")" * 251
    with pytest.raises(EznasError, match="nesting deeper than 200"):
        expression.parse(deep)
    tree = parse_infix(deep, load_primitive_set("eznas"))  # as before: a set's programs are bounded by max_depth
    assert len(tree) == 252 and to_infix(tree) == deep and expression.size(to_expr(tree)) == 252
    with pytest.raises(EznasError, match="column 6: 'mean' gives a Scalar where a Tensor is expected"):
        expression.parse("mean(mean(W))")
    with pytest.raises(EznasError, match="unknown primitive 'frob2'"):
        expression.evaluate(expression.Call("frob2", (expression.Var("W"),)), torch.zeros(2, 22, 1, 2, 2))


def test_no_import_back_from_simplify() -> None:
    """Expressions, simplification and LaTeX need neither DEAP nor the primitive-set module."""
    code = ("import sys, eznas.simplify, eznas.latex, eznas.expression; "
            "bad = [m for m in ('eznas.program', 'deap', 'yaml') if m in sys.modules]; "
            "assert not bad, bad")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
