"""The folder tells the architecture: the top-level modules of experiments/ are the commands,
the library sits in subpackages that never import a command, the imports between the modules
of experiments/ form no cycle, and models and guides never import experiments."""
import ast
from pathlib import Path
from typing import Dict, List, Set

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = {"experiments.train", "experiments.compare", "experiments.gaps", "experiments.list",
            "experiments.ais",
            "experiments.lessons"}


def modules(package: str) -> Dict[str, Path]:
    """Every module of ``package`` as found on disk (not through the import system, which an
    editable install may extend), by dotted name."""
    found = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported(name: str, path: Path, known: Set[str]) -> Set[str]:
    """The modules of ``known`` that module ``name`` imports, anywhere in its body (a lazy
    import inside a function counts)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                targets.add(full if full in known else base)
    return targets & known


def import_graph() -> Dict[str, Set[str]]:
    known = modules("experiments")
    return {name: imported(name, path, set(known)) - {name} for name, path in known.items()}


def find_cycle(graph: Dict[str, Set[str]]) -> List[str]:
    """One cycle of ``graph`` as a list of modules, or [] if there is none."""
    state: Dict[str, int] = {}         # 1: on the current path, 2: done

    def visit(node: str, path: List[str]) -> List[str]:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt, path + [nxt])
                if cycle:
                    return cycle
        state[node] = 2
        return []

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start, [start])
            if cycle:
                return cycle
    return []


def test_the_top_level_modules_are_the_commands():
    top = {name for name, path in modules("experiments").items()
           if path.parent == ROOT / "experiments" and path.name != "__init__.py"}
    assert top == COMMANDS
    for name in COMMANDS:
        tree = ast.parse(modules("experiments")[name].read_text())
        assert "main" in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}, name


def test_no_module_imports_a_command():
    graph = import_graph()
    offenders = {name: sorted(targets & COMMANDS) for name, targets in graph.items()
                 if targets & COMMANDS}
    assert not offenders


def test_the_imports_within_experiments_form_no_cycle():
    assert find_cycle(import_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) == []


def test_models_and_guides_never_import_experiments():
    for package in ("models", "guides"):
        for name, path in modules(package).items():
            tree = ast.parse(path.read_text())
            names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                     for alias in node.names}
            names |= {node.module or "" for node in ast.walk(tree)
                      if isinstance(node, ast.ImportFrom)}
            assert not {n for n in names if n.split(".")[0] == "experiments"}, name
