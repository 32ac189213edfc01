"""The source layout keeps its layering (docs/architecture.md, Layering):
types-only -t.h headers include only other -t.h headers (or common.h, the
macros-and-types base), and no two modules depend on each other through
their function headers, directly or around a cycle."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
INC = ROOT / "include" / "sluice"
SRC = ROOT / "src"
INCLUDE = re.compile(r'^#include "sluice/([^"]+)\.h"', re.M)


def test_t_headers_include_only_t_headers():
    bad = []
    for h in sorted(INC.glob("*-t.h")):
        for dep in INCLUDE.findall(h.read_text()):
            if not dep.endswith("-t") and dep != "common":
                bad.append(f"{h.name} includes {dep}.h")
    assert not bad, "a -t.h header includes a function header:\n" + "\n".join(bad)


def test_common_h_declares_no_functions():
    text = (INC / "common.h").read_text()
    decls = [ln for ln in text.splitlines()
             if re.match(r"^[a-z_].*\)\s*;\s*$", ln) and "typedef" not in ln]
    assert not decls, f"common.h declares functions: {decls}"


def module_graph():
    mods = {p.stem for p in SRC.glob("*.c")}
    graph = {}
    for m in mods:
        deps = {d for d in INCLUDE.findall((SRC / f"{m}.c").read_text())
                if not d.endswith("-t") and d in mods and d != m}
        graph[m] = deps
    return graph


def find_cycle(graph):
    """One cycle as a list of modules, or None (depth-first, colours)."""
    colour = {m: 0 for m in graph}
    stack = []

    def visit(m):
        colour[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if colour[d] == 1:
                return stack[stack.index(d):] + [d]
            if colour[d] == 0:
                found = visit(d)
                if found:
                    return found
        stack.pop()
        colour[m] = 2
        return None

    for m in sorted(graph):
        if colour[m] == 0:
            found = visit(m)
            if found:
                return found
    return None


def test_no_cycle_between_modules():
    cycle = find_cycle(module_graph())
    assert cycle is None, "modules depend on each other: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
