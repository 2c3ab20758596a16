"""Targeted mutation testing of the core stages: does the suite notice when the code is broken?

Each mutant is one small, deliberate bug in one module — a comparison flipped (``<`` → ``>``) or moved by one
(``<`` → ``<=``), ``+``/``-`` or ``*``/``/`` or ``&``/``|`` swapped, a number off by one (ints) or by 10% (floats),
``True``/``False`` swapped, ``and``/``or`` swapped, a minus or ``not`` or ``~`` dropped, ``min``/``max`` (and
``argmin``/``argmax``, ``floor``/``ceil``, ``any``/``all``) swapped, a reversal (``[::-1]``, ``reverse=``)
undone, a statement dropped (a call, an update, an ``if`` without ``else``, a ``raise``/``continue``/``break``).
Every mutant is applied to a private copy of the tree (never to the working tree) and the module's test files are
run against it with ``pytest -x``; the mutant is *killed* when they fail (or hang past ``--timeout``), *survives*
when they pass. Tests that already fail on the unmutated tree are deselected first (and listed), so a red
baseline does not count as a kill.

Docstrings, annotations, log calls and the text of error messages are not mutated (a wrong word in a message is
not what these tests are for; a message's presence is, and dropping a ``raise`` is a mutant).

Usage (from the repository root; minutes per module on 2 cores, so it is not part of CI)::

    python -m tests.mutation.run                     # every target below
    python -m tests.mutation.run scheduler labels    # some targets
    python -m tests.mutation.run --list scheduler    # print the mutants, run nothing
    python -m tests.mutation.run --jobs 2 --json out.json

It prints, per target, ``killed/total`` and every survivor as ``path:line  description``, and exits 0 (the
score is a report, not a gate: some survivors are equivalent mutants, e.g. ``<`` → ``<=`` on a float that is
never equal; those are explained in ``tests/mutation/SURVIVORS.md``).
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Target:
    """One module (or some of its top-level functions/classes) and the tests that guard it."""

    path: str
    tests: tuple[str, ...]
    scope: tuple[str, ...] = ()  # top-level names to mutate; empty: the whole module
    select: str = ""  # pytest -k expression choosing the tests of the scope (empty: every test of the files)

    def pytest_args(self) -> tuple[str, ...]:
        return (*self.tests, *(("-k", self.select) if self.select else ()))


_TRACKING_TESTS = ("tests/stream/test_tracking.py", "tests/stream/test_tracking_reference.py",
                   "tests/stream/test_identity.py")
# The identity stage's own tests first: pytest -x then stops at the first failure sooner.
_IDENTITY_TESTS = ("tests/stream/test_identity.py", "tests/stream/test_tracking.py",
                   "tests/stream/test_tracking_reference.py")

TARGETS: dict[str, Target] = {
    "scheduler": Target("stream/scheduler.py", (
        "tests/stream/test_scheduler.py",
        "tests/stream/test_identity.py::test_scheduler_never_classifies_a_track_that_is_mostly_implausible")),
    "tracking_core": Target("stream/tracking/core.py", _TRACKING_TESTS),
    "tracking_kalman": Target("stream/tracking/kalman.py", _TRACKING_TESTS),
    "tracking_matching": Target("stream/tracking/matching.py", _TRACKING_TESTS),
    "tracking_cuts": Target("stream/tracking/cuts.py", _IDENTITY_TESTS),
    "tracking_identity": Target("stream/tracking/identity.py", _IDENTITY_TESTS),
    "plausible": Target("stream/plausible.py", ("tests/stream/test_identity.py",)),
    "trackbook": Target("stream/trackbook.py", ("tests/stream/test_trackbook.py",
                                                   "tests/stream/test_trackbook_fusion.py",
                                                   "tests/stream/test_identity.py")),
    "align": Target("stream/align.py", ("tests/stream/test_align.py", "tests/stream/test_align_reference.py")),
    "yunet": Target("stream/detectors/yunet.py", ("tests/stream/test_detector_parity.py",
                                                   "tests/stream/test_detectors.py"), select="yunet"),
    "retinaface": Target("stream/detectors/retinaface.py", ("tests/stream/test_detector_parity.py",
                                                             "tests/stream/test_detectors.py"), select="retinaface"),
    "detector_base": Target("stream/detectors/base.py", ("tests/stream/test_detector_parity.py",
                                                          "tests/stream/test_detectors.py")),
    # The rule's unit tests (the test over every registered classifier on real clips takes a minute a run).
    "labels": Target("stream/labels.py", ("tests/stream/test_labels.py", "tests/stream/test_label_overlay.py"),
                     select="not every_classifier"),
    "config": Target("stream/config.py", ("tests/stream/test_config.py", "tests/stream/test_config_rules.py")),
    "redact": Target("stream/redact.py", ("tests/stream/test_hostile_inputs.py", "tests/stream/test_sources.py",
                                          "tests/stream/test_sinks.py"),
                     select="redact or credential or password or secret or scrub or at_sign"),
}

_CMP_SWAPS: dict[type, list[type]] = {
    ast.Lt: [ast.LtE, ast.Gt], ast.LtE: [ast.Lt, ast.GtE], ast.Gt: [ast.GtE, ast.Lt], ast.GtE: [ast.Gt, ast.LtE],
    ast.Eq: [ast.NotEq], ast.NotEq: [ast.Eq], ast.In: [ast.NotIn], ast.NotIn: [ast.In],
    ast.Is: [ast.IsNot], ast.IsNot: [ast.Is],
}
_BIN_SWAPS: dict[type, type] = {
    ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.FloorDiv: ast.Div,
    ast.Pow: ast.Mult, ast.BitAnd: ast.BitOr, ast.BitOr: ast.BitAnd, ast.Mod: ast.FloorDiv,
}
_NAME_SWAPS = {"min": "max", "max": "min", "minimum": "maximum", "maximum": "minimum", "argmin": "argmax",
               "argmax": "argmin", "floor": "ceil", "ceil": "floor", "any": "all", "all": "any",
               "nanmax": "nanmin", "nanmin": "nanmax"}
_LOG_NAMES = {"logger", "logging", "log", "warnings"}


@dataclass(frozen=True)
class Mutant:
    target: str
    path: str
    line: int
    description: str
    source: str = field(repr=False)


def _is_docstring(node: ast.AST, parent: ast.AST | None) -> bool:
    return (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
            and parent is not None and getattr(parent, "body", [None])[0] is node)


def _is_log_call(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    while isinstance(func, ast.Attribute):
        func = func.value
    return isinstance(func, ast.Name) and func.id in _LOG_NAMES


def _skipped_nodes(tree: ast.AST) -> set[int]:
    """ids of nodes never mutated: docstrings, annotations, log calls, f-strings and raise arguments."""
    skip: set[int] = set()

    def mark(node: ast.AST | None) -> None:
        if node is not None:
            skip.update(id(n) for n in ast.walk(node))

    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            if _is_docstring(child, node):
                mark(child)
        if isinstance(node, ast.arg):
            mark(node.annotation)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            mark(node.returns)
            mark(node.args)  # default values are settings; config mutants cover them
            for decorator in node.decorator_list:
                mark(decorator)
        elif isinstance(node, ast.AnnAssign):
            mark(node.annotation)
        elif isinstance(node, ast.JoinedStr) or _is_log_call(node):
            mark(node)
        elif isinstance(node, ast.Raise):
            mark(node.exc)  # the message; dropping the raise itself is a mutant
        elif (
            (isinstance(node, ast.Constant) and isinstance(node.value, str))
            or isinstance(node, (ast.Import, ast.ImportFrom, ast.Global, ast.Nonlocal))
            or (isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
        ):
            mark(node)
    return skip


def _in_scope_nodes(tree: ast.Module, scope: tuple[str, ...]) -> Iterator[ast.AST]:
    for top in tree.body:
        if scope and getattr(top, "name", None) not in scope:
            continue
        yield from ast.walk(top)


def _parents(tree: ast.AST) -> dict[int, ast.AST]:
    return {id(child): node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _mutations(node: ast.AST, parent: ast.AST | None) -> list[tuple[str, object]]:
    """``(description, how)`` for each mutation of ``node`` (``how`` is applied by :func:`_apply`)."""
    out: list[tuple[str, object]] = []
    if isinstance(node, ast.Compare):
        for i, op in enumerate(node.ops):
            for new in _CMP_SWAPS.get(type(op), []):
                out.append((f"{_op(op)} -> {_op(new())}", ("cmp", i, new)))
    elif isinstance(node, ast.BinOp) and type(node.op) in _BIN_SWAPS:
        new = _BIN_SWAPS[type(node.op)]
        out.append((f"{_op(node.op)} -> {_op(new())}", ("bin", new)))
    elif isinstance(node, ast.AugAssign) and type(node.op) in _BIN_SWAPS:
        new = _BIN_SWAPS[type(node.op)]
        out.append((f"{_op(node.op)}= -> {_op(new())}=", ("bin", new)))
    elif isinstance(node, ast.BoolOp):
        out.append(("and -> or" if isinstance(node.op, ast.And) else "or -> and", ("bool",)))
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.Not, ast.Invert)):
        out.append((f"drop unary {_op(node.op)}", ("unwrap",)))
    elif isinstance(node, ast.Constant) and type(node.value) in (int, float, bool):
        value = node.value
        if isinstance(value, bool):
            out.append((f"{value} -> {not value}", ("const", not value)))
        elif isinstance(value, int):
            out.append((f"{value} -> {value + 1}", ("const", value + 1)))
        elif value != 0:
            out.append((f"{value!r} -> {value * 1.1!r}", ("const", value * 1.1)))
        else:
            out.append(("0.0 -> 0.1", ("const", 0.1)))
    elif isinstance(node, ast.Name) and node.id in _NAME_SWAPS and isinstance(parent, ast.Call) and parent.func is node:
        out.append((f"{node.id} -> {_NAME_SWAPS[node.id]}", ("rename",)))
    elif (isinstance(node, ast.Attribute) and node.attr in _NAME_SWAPS and isinstance(parent, ast.Call)
          and parent.func is node):
        out.append((f".{node.attr} -> .{_NAME_SWAPS[node.attr]}", ("rename",)))
    elif (isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Slice) and node.slice.lower is None
          and node.slice.upper is None and isinstance(node.slice.step, ast.UnaryOp)
          and isinstance(node.slice.step.op, ast.USub)):
        out.append(("drop [::-1]", ("unslice",)))
    elif isinstance(node, ast.keyword) and node.arg == "reverse":
        out.append(("toggle reverse=", ("reverse",)))
    if isinstance(node, ast.stmt) and not isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
        droppable = (
            isinstance(node, (ast.AugAssign, ast.Raise, ast.Continue, ast.Break))
            or (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call))
            or (isinstance(node, ast.Assign) and any(isinstance(t, (ast.Attribute, ast.Subscript))
                                                      for t in node.targets))
            or (isinstance(node, ast.If) and not node.orelse)
        )
        if droppable:
            out.append((f"drop {type(node).__name__.lower()} statement", ("drop",)))
    return out


def _op(op: ast.AST) -> str:
    return {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=",
            ast.In: "in", ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not", ast.Add: "+", ast.Sub: "-",
            ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Pow: "**", ast.BitAnd: "&", ast.BitOr: "|",
            ast.Mod: "%", ast.USub: "-", ast.Not: "not", ast.Invert: "~"}[type(op)]


def _apply(tree: ast.Module, node: ast.AST, parent: ast.AST, how: tuple) -> None:
    kind = how[0]
    if kind == "cmp":
        node.ops[how[1]] = how[2]()
    elif kind == "bin":
        node.op = how[1]()
    elif kind == "bool":
        node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
    elif kind == "unwrap":
        _replace(parent, node, node.operand)
    elif kind == "const":
        node.value = how[1]
    elif kind == "rename":
        if isinstance(node, ast.Name):
            node.id = _NAME_SWAPS[node.id]
        else:
            node.attr = _NAME_SWAPS[node.attr]
    elif kind == "unslice":
        _replace(parent, node, node.value)
    elif kind == "reverse":
        node.value = ast.UnaryOp(ast.Not(), node.value)
    elif kind == "drop":
        _replace(parent, node, ast.Pass())


def _replace(parent: ast.AST, old: ast.AST, new: ast.AST) -> None:
    for name, value in ast.iter_fields(parent):
        if value is old:
            setattr(parent, name, new)
            return
        if isinstance(value, list):
            for i, item in enumerate(value):
                if item is old:
                    value[i] = new
                    return
    raise RuntimeError(f"{old!r} not found in {parent!r}")


def mutants(name: str, target: Target) -> list[Mutant]:
    """Every mutant of one target, in source order."""
    source = (REPO / target.path).read_text(encoding="utf-8")
    tree = ast.parse(source)
    skip = _skipped_nodes(tree)
    parents = _parents(tree)
    sites = []
    for node in _in_scope_nodes(tree, target.scope):
        if id(node) in skip:
            continue
        for description, how in _mutations(node, parents.get(id(node))):
            sites.append((node, description, how))
    index = {id(n): i for i, n in enumerate(ast.walk(tree))}
    out = []
    for node, description, how in sites:
        fresh = copy.deepcopy(tree)
        fresh_nodes = list(ast.walk(fresh))
        fresh_node = fresh_nodes[index[id(node)]]
        fresh_parents = _parents(fresh)
        _apply(fresh, fresh_node, fresh_parents.get(id(fresh_node)), how)
        ast.fix_missing_locations(fresh)
        mutated = ast.unparse(fresh)
        line = getattr(node, "lineno", None) or getattr(parents.get(id(node)), "lineno", 0)
        out.append(Mutant(name, target.path, line, description, mutated))
    return sorted(out, key=lambda m: m.line)


def _copy_tree(dest: Path) -> None:
    ignore = shutil.ignore_patterns(".git", ".venv", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache",
                                    "node_modules", "*.pyc")
    shutil.copytree(REPO, dest, ignore=ignore, symlinks=True)


def _pytest(root: Path, tests: tuple[str, ...], deselect: list[str], timeout: float,
            extra: tuple[str, ...] = ()) -> tuple[int | None, str]:
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-p", "no:randomly",
               *tests, *extra]
    for node_id in deselect:
        command += ["--deselect", node_id]
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PYTHONPATH=str(root))
    try:
        done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, "timeout"
    return done.returncode, done.stdout[-2000:] + done.stderr[-2000:]


def _baseline_failures(root: Path, tests: tuple[str, ...], timeout: float) -> tuple[list[str], float]:
    """Tests that fail on the unmutated tree (node ids), and how long the test files take."""
    started = time.monotonic()
    failures = root / "baseline-failures.txt"
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.mutation.failures_plugin",
               *tests]
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PYTHONPATH=str(root), MUTATION_FAILURES=str(failures))
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    elapsed = time.monotonic() - started
    if done.returncode not in (0, 1):
        raise SystemExit(f"error: the baseline run of {' '.join(tests)} did not complete:\n{done.stdout[-3000:]}")
    failed = failures.read_text(encoding="utf-8").splitlines() if failures.exists() else []
    return sorted(set(failed)), elapsed


def run_target(name: str, target: Target, jobs: int, timeout: float | None) -> dict:
    found = mutants(name, target)
    with tempfile.TemporaryDirectory(prefix=f"mutate-{name}-") as tmp:
        workdirs = []
        for j in range(max(1, jobs)):
            root = Path(tmp) / f"tree{j}"
            _copy_tree(root)
            workdirs.append(root)
        deselect, elapsed = _baseline_failures(workdirs[0], target.pytest_args(), timeout=1800)
        limit = timeout or max(60.0, 5 * elapsed + 30)
        print(f"{name}: {len(found)} mutants of {target.path}; tests {' '.join(target.tests)} "
              f"({elapsed:.0f} s; {len(deselect)} already failing, deselected)", flush=True)
        for node_id in deselect:
            print(f"  deselected (fails unmutated): {node_id}", flush=True)
        original = (REPO / target.path).read_text(encoding="utf-8")
        free = list(workdirs)
        results: list[tuple[Mutant, str]] = []

        def one(mutant: Mutant) -> tuple[Mutant, str]:
            root = free.pop()
            try:
                (root / target.path).write_text(mutant.source, encoding="utf-8")
                code, _ = _pytest(root, target.pytest_args(), deselect, limit)
                return mutant, "killed (timeout)" if code is None else ("survived" if code == 0 else "killed")
            finally:
                (root / target.path).write_text(original, encoding="utf-8")
                free.append(root)

        with ThreadPoolExecutor(max_workers=len(workdirs)) as pool:
            for mutant, status in pool.map(one, found):
                results.append((mutant, status))
                if status == "survived":
                    print(f"  SURVIVED {mutant.path}:{mutant.line}  {mutant.description}", flush=True)
    killed = sum(status != "survived" for _, status in results)
    total = len(results)
    score = killed / total if total else 1.0
    print(f"{name}: killed {killed}/{total} ({score:.0%})", flush=True)
    return {"target": name, "path": target.path, "tests": list(target.tests), "killed": killed, "total": total,
            "deselected": deselect,
            "survivors": [{"line": m.line, "mutation": m.description} for m, s in results if s == "survived"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutation.run", description=__doc__.split("\n")[0])
    parser.add_argument("targets", nargs="*", help=f"targets to run (default: all): {', '.join(TARGETS)}")
    parser.add_argument("--list", action="store_true", help="print the mutants and run nothing")
    parser.add_argument("--jobs", type=int, default=1, help="mutants tested at once (default 1)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds before a mutant's test run counts as hung (default: 5x the baseline + 30)")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args(argv)
    unknown = [t for t in args.targets if t not in TARGETS]
    if unknown:
        parser.error(f"unknown target(s) {', '.join(unknown)}; valid: {', '.join(TARGETS)}")
    names = args.targets or list(TARGETS)
    if args.list:
        for name in names:
            for m in mutants(name, TARGETS[name]):
                print(f"{name}  {m.path}:{m.line}  {m.description}")
        return 0
    report = [run_target(name, TARGETS[name], args.jobs, args.timeout) for name in names]
    print("\nmutation score per target:")
    for entry in report:
        print(f"  {entry['target']:<14} {entry['killed']:>4}/{entry['total']:<4} "
              f"{entry['killed'] / max(entry['total'], 1):.0%}  {entry['path']}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
