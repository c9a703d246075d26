"""The folder tells the architecture: the top-level modules of experiments/ (and the
``__main__`` of a command that is a package) are the commands,
the library sits in subpackages that never import a command, the imports between the modules
of experiments/ form no cycle, every room stands on a declared floor and imports only from the
floors below it, models and guides never import experiments, and loading a finished run never
imports the training loop."""
import ast
import json
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Set

import pytest

from experiments import __main__ as elbolab
from experiments.training.end_to_end import run as train

ROOT = Path(__file__).resolve().parent.parent
#: the commands: the modules ``elbolab`` runs, and ``elbolab`` itself
COMMANDS = set(elbolab.COMMANDS.values()) | {"experiments.__main__"}

#: the rooms of the house (a package of experiments/, a top-level package, or a command) by
#: floor, lowest first: a room imports only from the rooms of the floors below its own
FLOORS = [
    {"experiments"},                            # the package itself: its version, lazy exports
    {"experiments.common", "experiments.estimators", "models"},
    {"guides", "experiments.data", "experiments.recording"},  # recording knows the losses
    {"experiments.config"},                     # Config: knows the parts and data by name
    {"experiments.parts"},                      # builds them, from names or a Config
    {"experiments.evaluation"},
    {"experiments.figures"},
    {"experiments.training"},
    {"experiments.comparison", "benchmarks"},
    {"experiments.lessons", "experiments.results"},
    COMMANDS,
]
PACKAGES = ("experiments", "models", "guides", "benchmarks")


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


def import_graph(packages=("experiments",)) -> Dict[str, Set[str]]:
    known = {name: path for package in packages for name, path in modules(package).items()}
    return {name: imported(name, path, set(known)) - {name} for name, path in known.items()}


def room(module: str) -> str:
    """The room a module lives in: a command, a package of experiments/, or a top-level
    package (``experiments.parts.build`` → ``experiments.parts``, ``guides.mvn`` → ``guides``)."""
    if module in COMMANDS:
        return module
    top, _, rest = module.partition(".")
    return f"{top}.{rest.split('.')[0]}" if top == "experiments" and rest else top


def upward_imports(graph: Dict[str, Set[str]], floors: List[Set[str]]) -> List[str]:
    """Every import of ``graph`` from one room to another on the same floor or a higher one,
    as "module -> module (floor a -> floor b)"; a room on no floor is reported as such."""
    floor = {name: level for level, rooms in enumerate(floors) for name in rooms}
    offenders = sorted(f"{room(name)} stands on no floor" for name in graph
                       if room(name) not in floor)
    for name, targets in sorted(graph.items()):
        for target in sorted(targets):
            here, there = room(name), room(target)
            if here != there and floor.get(there, -1) >= floor.get(here, -1) >= 0:
                offenders.append(f"{name} -> {target} (floor {floor[here]} -> {floor[there]})")
    return sorted(set(offenders))


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
           if (path.parent == ROOT / "experiments" and path.name != "__init__.py")
           or path.name == "__main__.py"}
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


def test_every_room_stands_on_a_floor_and_imports_only_from_the_floors_below():
    assert upward_imports(import_graph(PACKAGES), FLOORS) == []


def test_the_floor_check_finds_an_import_up_or_across_and_a_room_on_no_floor():
    floors = [{"experiments.common"}, {"experiments.config", "experiments.data"},
              {"experiments.parts"}]
    graph = {"experiments.config.config": {"experiments.parts.build", "experiments.data.x",
                                           "experiments.common.errors"},
             "experiments.parts.build": {"experiments.config.config"},
             "experiments.data.x": set(), "experiments.common.errors": set(),
             "experiments.new.y": set()}
    assert upward_imports(graph, floors) == [
        "experiments.config.config -> experiments.data.x (floor 1 -> 1)",
        "experiments.config.config -> experiments.parts.build (floor 1 -> 2)",
        "experiments.new stands on no floor"]


#: what training takes and loading a run must not: the loop, its stepper, a run end to end
TRAINING_ONLY = ("experiments.training.loop", "experiments.training.restarts",
                 "experiments.training.end_to_end", "experiments.recording")
LOAD = """
import json, sys
from experiments import load
trained = load(sys.argv[1])
trained.samples(2)
print(json.dumps(sorted(sys.modules)))
"""


@pytest.mark.slow
def test_loading_a_finished_run_never_imports_the_training_loop(quick_config):
    finished = train(quick_config(epochs=1, num_train=64, num_test=16, iwae_samples=4))
    loaded = subprocess.run([sys.executable, "-c", LOAD, str(finished.run_dir)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert loaded.returncode == 0, loaded.stderr
    imported = json.loads(loaded.stdout)
    assert "experiments.training.trained" in imported
    assert [m for m in imported if m.startswith(TRAINING_ONLY)] == []
