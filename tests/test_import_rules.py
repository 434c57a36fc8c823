"""The architecture's import rules, checked over the source's syntax trees:

- the layer (``maxent`` less the fronts: the command line ``maxent.cli`` and the Stable-Baselines3
  front ``maxent.sb3``) imports no agent (``maxent.agents``), no environment (``maxent.envs``) and
  no front;
- the entropy layer (``maxent.entropy``) imports nothing else of maxent: it is pure functions of
  tensors and numbers that every other part may use;
- training plumbing (``maxent.training``) does not import the LLM machinery (``maxent.llm``);
- environments import no agent and not the command line;
- no library module imports ``benchmarks`` or ``examples``;
- no module imports itself through others (no import cycle).

Every import counts, also one inside a function (a lazy import is still a dependency). The
checker is shown to fail on a deliberate violation of each rule, so a passing run means something.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Source folders and the package each installs as (pyproject.toml's package-dir).
PACKAGES = {"maxent": "maxent", "envs": "maxent.envs", "agents": "maxent.agents"}
COMMAND_LINE = "maxent.cli"
SB3_FRONT = "maxent.sb3"
TRL_FRONT = "maxent.trl"
FRONTS = (COMMAND_LINE, SB3_FRONT, TRL_FRONT)
ENTROPY = "maxent.entropy"
TRAINING = "maxent.training"
LLM = "maxent.llm"


def _module_name(root: Path, path: Path) -> str:
    folder = path.relative_to(root).parts[0]
    rest = path.relative_to(root / folder).with_suffix("").parts
    parts = [PACKAGES[folder], *rest]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(tree: ast.AST, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, imported module) for every import in ``tree``, relative ones resolved."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[:len(package) - (node.level - 1)]
                base = ".".join(p for p in [*package, base] if p)
            found.append((node.lineno, base))
            # `from maxent import agents` imports the submodule maxent.agents.
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def _within(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


@functools.lru_cache(maxsize=None)
def _parse(path: Path, text: str) -> ast.AST:
    return ast.parse(text, filename=str(path))


def _graph(root: Path, appended: dict[str, str]) -> dict[str, tuple[str, list[tuple[int, str]]]]:
    """module -> (its file, [(line, imported module)]) over the three source folders."""
    graph = {}
    for folder in PACKAGES:
        for path in sorted((root / folder).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            extra = appended.get(str(path.relative_to(root)))
            if extra is not None:
                text += "\n" + extra + "\n"
            module = _module_name(root, path)
            graph[module] = (str(path.relative_to(root)),
                             _imports(_parse(path, text), module, path.name == "__init__.py"))
    return graph


def _rule_broken(module: str, target: str) -> str | None:
    if _within(target, "benchmarks", "examples"):
        return f"library module {module} imports {target}"
    if _within(module, ENTROPY) and _within(target, "maxent") and not _within(target, ENTROPY):
        if target != "maxent":
            return f"the entropy layer ({module}) imports {target}"
    if _within(module, TRAINING) and _within(target, LLM):
        return f"training plumbing ({module}) imports the LLM machinery {target}"
    in_layer = _within(module, "maxent") and not _within(
        module, "maxent.agents", "maxent.envs", *FRONTS)
    if in_layer and _within(target, "maxent.agents", "maxent.envs", *FRONTS):
        return f"the layer ({module}) imports {target}"
    if _within(module, "maxent.envs") and _within(target, "maxent.agents", *FRONTS):
        return f"environment {module} imports {target}"
    return None


def _cycles(graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    edges = {m: sorted({t for _, t in imports if t in graph and t != m})
             for m, (_, imports) in graph.items()}
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def violations(root: Path, appended: dict[str, str] | None = None) -> list[str]:
    """Every broken import rule in the source tree at ``root``, as ``file:line: message``;
    ``appended`` maps a file (relative to ``root``) to code added at its end, to test the test."""
    graph = _graph(root, appended or {})
    problems = []
    for module, (file, imports) in graph.items():
        for line, target in imports:
            broken = _rule_broken(module, target)
            if broken:
                problems.append(f"{file}:{line}: {broken}")
    problems += [f"{graph[cycle[0]][0]}: import cycle {' -> '.join(cycle)}" for cycle in _cycles(graph)]
    return problems


def test_the_tree_keeps_the_import_rules():
    assert violations(REPO) == []


@pytest.mark.parametrize("file,line,rule", [
    ("maxent/entropy/estimates.py", "from maxent.agents.sac import SAC",
     "the entropy layer (maxent.entropy.estimates) imports maxent.agents"),
    ("maxent/entropy/temperature.py", "def f():\n    from maxent.training import config",
     "the entropy layer (maxent.entropy.temperature) imports maxent.training"),
    ("maxent/training/replay.py", "def f():\n    import maxent.envs.lsd",
     "the layer (maxent.training.replay) imports maxent.envs"),
    ("maxent/training/agent.py", "from maxent import agents", "the layer (maxent.training.agent) imports"),
    ("maxent/llm/models.py", "from maxent.cli import robustness", "imports maxent.cli"),
    ("maxent/training/checkpoint.py", "from maxent.llm import models",
     "training plumbing (maxent.training.checkpoint) imports the LLM machinery"),
    ("envs/lsd.py", "from maxent.agents import bandits", "environment maxent.envs.lsd imports"),
    ("envs/text.py", "from ..agents import grpo", "environment maxent.envs.text imports"),
    ("envs/text.py", "from maxent.cli import main", "environment maxent.envs.text imports maxent.cli"),
    ("agents/sac.py", "import benchmarks.sac_vs_sb3", "library module maxent.agents.sac imports"),
    ("maxent/training/logging.py", "from examples import sac_pendulum", "imports examples"),
    ("maxent/entropy/soft.py", "from maxent.entropy import law", "import cycle"),
    ("maxent/training/agent.py", "def f():\n    from maxent.sb3 import SAC",
     "the layer (maxent.training.agent) imports maxent.sb3"),
    ("envs/text.py", "from maxent.sb3 import zoo", "environment maxent.envs.text imports maxent.sb3"),
])
def test_a_broken_rule_is_caught(file, line, rule):
    found = violations(REPO, appended={file: line} if "cycle" not in rule else
                       {file: line, "maxent/entropy/law.py": "from maxent.entropy import soft"})
    assert len(found) >= 1, found
    assert any(rule in v for v in found), found


def test_the_command_line_may_import_agents():
    assert violations(REPO, appended={"maxent/cli/robustness.py":
                                      "from maxent.agents.sac import SAC"}) == []


def test_the_sb3_front_may_import_agents():
    assert violations(REPO, appended={"maxent/sb3/zoo.py": "from maxent.agents.sac import SAC"}) == []
