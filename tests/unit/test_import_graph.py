"""No import cycle inside `taskyard`, on the graph of every import of ours: at the top of
a module, inside a function, or under `TYPE_CHECKING` (grimp, which import-linter builds
its graph with, sees them all). A cycle is an import `a -> b` with a chain back from `b`
to `a`; the test names each such import with the chain that closes it."""

from __future__ import annotations

import grimp


def _cycles(graph: grimp.ImportGraph) -> list[str]:
    found = []
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back is not None:
                found.append(" -> ".join((importer, *back)))
    return found


def test_no_module_of_ours_imports_itself_back() -> None:
    cycles = _cycles(grimp.build_graph("taskyard"))
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_a_cycle_is_found_and_named() -> None:
    graph = grimp.ImportGraph()
    for name in ("pkg", "pkg.a", "pkg.b", "pkg.c"):
        graph.add_module(name)
    graph.add_import(importer="pkg.a", imported="pkg.b")
    graph.add_import(importer="pkg.b", imported="pkg.c")
    assert _cycles(graph) == []
    graph.add_import(importer="pkg.c", imported="pkg.a")
    assert _cycles(graph) == [
        "pkg.a -> pkg.b -> pkg.c -> pkg.a",
        "pkg.b -> pkg.c -> pkg.a -> pkg.b",
        "pkg.c -> pkg.a -> pkg.b -> pkg.c",
    ]
