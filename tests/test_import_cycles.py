"""No import cycles between sibling modules anywhere in busadv, type-checking imports included.

Why a test beside the `acyclic_siblings` contract: .importlinter leaves type-checking imports out (they do not
run), but a cycle through them is still two modules that cannot be understood apart; two such cycles
(training.config <-> modes <-> offline, experiments.backends <-> config <-> runner) hid there.
"""

from __future__ import annotations

from collections import defaultdict

import grimp
import pytest


def sibling_cycles(graph: grimp.ImportGraph, package: str) -> list[list[str]]:
    """Strongly connected groups (size > 1) of `package`'s children, each child standing for its whole subtree."""
    children = sorted(graph.find_children(package))
    owner = {}
    for child in children:
        owner[child] = child
        for descendant in graph.find_descendants(child):
            owner[descendant] = child
    edges: dict[str, set[str]] = defaultdict(set)
    for module, child in owner.items():
        for imported in graph.find_modules_directly_imported_by(module):
            target = owner.get(imported)
            if target is not None and target != child:
                edges[child].add(target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for child in children:
        if child not in index:
            visit(child)
    return groups


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("busadv", exclude_type_checking_imports=False)


def test_no_sibling_cycles_in_any_package(graph):
    packages = ["busadv"] + sorted(m for m in graph.find_descendants("busadv") if graph.find_children(m))
    cycles = {p: sibling_cycles(graph, p) for p in packages}
    assert {p: c for p, c in cycles.items() if c} == {}


def test_the_finder_sees_a_cycle():
    graph = grimp.ImportGraph()
    for name in ("pkg", "pkg.a", "pkg.b", "pkg.c"):
        graph.add_module(name)
    graph.add_import(importer="pkg.a", imported="pkg.b")
    graph.add_import(importer="pkg.b", imported="pkg.a")
    graph.add_import(importer="pkg.c", imported="pkg.a")
    assert sibling_cycles(graph, "pkg") == [["pkg.a", "pkg.b"]]
