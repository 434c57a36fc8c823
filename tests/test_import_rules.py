"""The architecture's import rules (DESIGN.md), checked over the source's syntax trees:

- the layer (``maxent`` less its command-line side, ``maxent.cli`` and ``maxent.commands``) imports
  no agent (``maxent.agents``), no environment (``maxent.envs``) and not the command-line side;
- environments import no agent;
- no library module imports ``benchmarks`` or ``examples``.

Every import counts, also one inside a function (a lazy import is still a dependency). The
checker is shown to fail on deliberate violations, so a passing run means something.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Source folders and the package each installs as (pyproject.toml's package-dir).
PACKAGES = {"maxent": "maxent", "envs": "maxent.envs", "agents": "maxent.agents"}
COMMAND_SIDE = ("maxent.cli", "maxent.commands")
# Deprecated aliases of moved modules (maxent.deprecated): each re-exports its new home for one
# release and is removed in 0.3; the rule would otherwise flag the alias's own import.
DEPRECATED_ALIASES = {"maxent.robustness": "maxent.commands.robustness"}


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


def _within(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


@functools.lru_cache(maxsize=None)
def _parse(path: Path, text: str) -> ast.AST:
    return ast.parse(text, filename=str(path))


def violations(root: Path, appended: dict[str, str] | None = None) -> list[str]:
    """Every broken import rule in the source tree at ``root``, as ``file:line: message``;
    ``appended`` maps a file (relative to ``root``) to code added at its end, to test the test."""
    appended = appended or {}
    problems = []
    for folder in PACKAGES:
        for path in sorted((root / folder).rglob("*.py")):
            module = _module_name(root, path)
            text = path.read_text(encoding="utf-8")
            extra = appended.get(str(path.relative_to(root)))
            if extra is not None:
                text += "\n" + extra + "\n"
            tree = _parse(path, text)
            in_layer = _within(module, ["maxent"]) and not _within(
                module, ["maxent.agents", "maxent.envs", *COMMAND_SIDE])
            in_envs = _within(module, ["maxent.envs"])
            for line, target in _imports(tree, module, path.name == "__init__.py"):
                where = f"{path.relative_to(root)}:{line}"
                if _within(target, ["benchmarks", "examples"]):
                    problems.append(f"{where}: library module {module} imports {target}")
                if in_layer and DEPRECATED_ALIASES.get(module) == target:
                    continue
                if in_layer and _within(target, ["maxent.agents", "maxent.envs", *COMMAND_SIDE]):
                    problems.append(f"{where}: the layer ({module}) imports {target}")
                if in_envs and _within(target, ["maxent.agents"]):
                    problems.append(f"{where}: environment {module} imports agent {target}")
    return problems


def test_the_tree_keeps_the_import_rules():
    assert violations(REPO) == []


@pytest.mark.parametrize("file,line,rule", [
    ("maxent/entropy.py", "from maxent.agents.sac import SAC", "the layer (maxent.entropy) imports"),
    ("maxent/temperature.py", "def f():\n    import maxent.envs.lsd", "the layer (maxent.temperature)"),
    ("maxent/soft.py", "from maxent import agents", "the layer (maxent.soft) imports maxent.agents"),
    ("maxent/token.py", "from maxent.commands import robustness", "imports maxent.commands"),
    ("envs/lsd.py", "from maxent.agents import bandits", "environment maxent.envs.lsd imports agent"),
    ("envs/text.py", "from ..agents import grpo", "environment maxent.envs.text imports agent"),
    ("agents/sac.py", "import benchmarks.sac_vs_sb3", "library module maxent.agents.sac imports"),
    ("maxent/logging.py", "from examples import sac_pendulum", "imports examples"),
])
def test_a_broken_rule_is_caught(file, line, rule):
    found = violations(REPO, appended={file: line})
    assert len(found) >= 1 and all(file in v for v in found), found
    assert any(rule in v for v in found), found


def test_the_command_side_may_import_agents():
    assert violations(REPO, appended={"maxent/commands/robustness.py":
                                      "from maxent.agents.sac import SAC"}) == []
