"""The import graph of fairseq/ and fairseq_cli/, as layers: `python tests/import_graph.py [--floors] [--repo DIR]`.

Every module (a .py file; a package is its __init__.py) is a node; every import it makes, at the top or
inside a function, is an edge to the deepest module it names (`from fairseq.data import Dictionary` ->
fairseq.data, `from fairseq import utils` -> fairseq.utils). Layers: a module sits one above the highest
module it imports, so a module only ever imports modules below it. An import cycle cannot be layered:
each cycle is printed, and the imports that close one are counted as running back up a layer (which
edge closes it is chosen deterministically: the edge a depth-first search in sorted order finds
going back). tests/test_import_graph.py holds the house rules (docs/ARCHITECTURE.md):
  - the only cycle is RobertaModel.from_pretrained's deliberate one (ALLOWED_BACK_EDGES);
  - nothing under fairseq/ imports fairseq_cli;
  - no module is longer than MAX_LINES.
`--floors` prints the layers of the top-level floors (fairseq/data/, fairseq/checkpoint/, ... and each
top-level module) instead: the picture docs/ARCHITECTURE.md draws.
"""
from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Set, Tuple

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("fairseq", "fairseq_cli")
MAX_LINES = 450
# RobertaModel.from_pretrained is fairseq's hub entry point on the model class; the loader it calls
# (fairseq.hub_utils) builds models through the registry that model.py fills.
ALLOWED_BACK_EDGES = {("fairseq.models.roberta.model", "fairseq.hub_utils")}

Graph = Dict[str, Set[str]]


def module_files(repo: Path = REPO) -> Dict[str, Path]:
    """Module name -> file, for every .py (and the compiled-extension .pyx sources) of the packages."""
    found = {}
    for package in PACKAGES:
        for path in sorted((repo / package).rglob("*")):
            if path.suffix not in (".py", ".pyx") or "__pycache__" in path.parts:
                continue
            parts = list(path.relative_to(repo).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _resolve(name: str, modules: Dict[str, Path]) -> str:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name


def build_graph(modules: Dict[str, Path]) -> Graph:
    graph: Graph = {m: set() for m in modules}
    for mod, path in modules.items():
        if path.suffix != ".py":
            continue
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            for name in names:
                if name.split(".")[0] in PACKAGES:
                    target = _resolve(name, modules)
                    if target and target != mod:
                        graph[mod].add(target)
    return graph


def back_edges(graph: Graph) -> List[Tuple[str, str]]:
    """The edges a depth-first search (sorted order) finds pointing back into its own path: removing
    them leaves an acyclic graph, and there are none exactly when the graph has no cycle."""
    state: Dict[str, int] = {}
    found = []
    sys.setrecursionlimit(max(10000, sys.getrecursionlimit()))

    def visit(m):
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                found.append((m, n))
            elif n not in state:
                visit(n)
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    return found


def cycles(graph: Graph) -> List[List[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    out = []

    def strong(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def layers(graph: Graph, removed: Set[Tuple[str, str]]) -> Dict[str, int]:
    """Layer of each module once the `removed` edges are gone: 0 for a module importing nothing of ours."""
    memo: Dict[str, int] = {}

    def layer(m):
        if m not in memo:
            deps = [n for n in graph[m] if (m, n) not in removed]
            memo[m] = 1 + max((layer(n) for n in deps), default=-1)
        return memo[m]

    for m in graph:
        layer(m)
    return memo


def floor_of(module: str) -> str:
    """The floor a module belongs to: fairseq/<folder>/ for a subpackage, else the module itself."""
    parts = module.split(".")
    if parts[0] == "fairseq_cli":
        return "fairseq_cli"
    return ".".join(parts[:2]) if len(parts) > 1 else parts[0]


def report(repo: Path = REPO) -> dict:
    modules = module_files(repo)
    graph = build_graph(modules)
    in_cycle = {m for c in cycles(graph) for m in c}
    allowed = sorted((a, b) for a, b in ALLOWED_BACK_EDGES if a in in_cycle and b in in_cycle and b in graph[a])
    rest = {m: {n for n in graph[m] if (m, n) not in ALLOWED_BACK_EDGES} for m in graph}
    back = allowed + back_edges(rest)
    level = layers(graph, set(back))
    upward_into_cli = sorted((a, b) for a in graph for b in graph[a]
                             if a.split(".")[0] == "fairseq" and b.split(".")[0] == "fairseq_cli")
    long_modules = sorted((m, n) for m, p in modules.items()
                          if p.suffix == ".py" and (n := len(p.read_text().splitlines())) > MAX_LINES)
    floors: Graph = defaultdict(set)
    for a in graph:
        floors[floor_of(a)] |= {floor_of(b) for b in graph[a] if floor_of(b) != floor_of(a)}
    floor_back = back_edges(dict(floors))
    return {"modules": len(modules), "imports": sum(len(v) for v in graph.values()), "graph": graph,
            "cycles": cycles(graph), "back_edges": back, "layers": level,
            "num_layers": 1 + max(level.values()), "upward_into_cli": upward_into_cli,
            "long_modules": long_modules, "floors": dict(floors), "floor_back_edges": floor_back,
            "floor_layers": layers(dict(floors), set(floor_back))}


def main(argv: List[str]) -> int:
    r = report(Path(argv[argv.index("--repo") + 1]) if "--repo" in argv else REPO)
    print(f"{r['modules']} modules, {r['imports']} imports, {r['num_layers']} layers; "
          f"{len(r['back_edges'])} import(s) running back up a layer, {len(r['cycles'])} cycle(s), "
          f"{len(r['upward_into_cli'])} import(s) of fairseq_cli from fairseq/, "
          f"{len(r['long_modules'])} module(s) over {MAX_LINES} lines")
    for a, b in r["back_edges"]:
        note = " (allowed: RobertaModel.from_pretrained)" if (a, b) in ALLOWED_BACK_EDGES else ""
        print(f"  back up: {a} -> {b}{note}")
    for c in r["cycles"]:
        print(f"  cycle of {len(c)}: {', '.join(c)}")
    for a, b in r["upward_into_cli"]:
        print(f"  library imports the command line: {a} -> {b}")
    for m, n in r["long_modules"]:
        print(f"  {n} lines: {m}")
    if "--floors" in argv:
        by_layer = defaultdict(list)
        for f, n in r["floor_layers"].items():
            by_layer[n].append(f)
        for n in sorted(by_layer, reverse=True):
            print(f"  floor layer {n}: {', '.join(sorted(by_layer[n]))}")
        for a, b in r["floor_back_edges"]:
            print(f"  floor import back up: {a} -> {b}")
    else:
        by_layer = defaultdict(list)
        for m, n in r["layers"].items():
            by_layer[n].append(m)
        for n in sorted(by_layer, reverse=True):
            print(f"  layer {n}: {', '.join(sorted(by_layer[n]))}")
    bad = (set(r["back_edges"]) - ALLOWED_BACK_EDGES) or r["upward_into_cli"] or r["long_modules"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
