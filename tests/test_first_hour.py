"""What a newcomer meets in the first hour: the progress bar ends with ``learn``, every example and
benchmark answers ``--help`` without running, inductor's cache is the persistent one, and a
misspelt config field is named with its closest valid field."""

import dataclasses
import glob
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from maxent.agents import SAC, QARLConfig, SACConfig
from maxent.training.agent import Callback
from maxent.training.config import AgentConfig, ConfigError

REPO = Path(__file__).resolve().parents[1]


# -- the progress bar ---------------------------------------------------------------------------


def _tiny_sac(**overrides):
    return SAC("Pendulum-v1", compile=False, hidden_sizes=(8,), batch_size=16, buffer_size=1000,
               learning_starts=50, log_interval=100, torch_threads=1, **overrides)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_on_a_terminal_is_closed_when_learn_returns(monkeypatch):
    stream = _Terminal()
    monkeypatch.setattr(sys, "stderr", stream)
    agent = _tiny_sac()
    try:
        agent.learn(200, progress_bar=True)
        assert not agent.logger.has_bar  # its time and rate stop with learn
        # What the caller prints next starts on a line of its own, not on the bar's line.
        assert stream.getvalue().endswith("\n")
        assert "200/200" in stream.getvalue().rsplit("\r", 1)[-1]
        agent.logger.dump(agent.num_timesteps)  # e.g. the CLI's final evaluation: no bar redraw
        written = stream.getvalue()
        print("after", file=sys.stderr)
        assert stream.getvalue() == written + "after\n"
    finally:
        agent.close()


def test_progress_outside_a_terminal_is_one_line_per_update(monkeypatch):
    stream = io.StringIO()  # a log file or a pipe: isatty() is False
    monkeypatch.setattr(sys, "stderr", stream)
    agent = _tiny_sac()
    try:
        agent.learn(300, progress_bar=True)
        print("after", file=sys.stderr)
    finally:
        agent.close()
    text = stream.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    updates = [line for line in lines if line.startswith("step ")]
    assert [u.split(",")[0] for u in updates] == ["step 100/300 (33%)", "step 200/300 (67%)",
                                                   "step 300/300 (100%)"]
    assert all("steps/s" in u and "fps=" in u for u in updates)
    assert lines[-1] == "after"


def test_progress_closes_before_a_callback_says_it_stopped_training(monkeypatch):
    stream = _Terminal()
    monkeypatch.setattr(sys, "stderr", stream)
    class StopAt150(Callback):
        def on_step(self, agent) -> bool:
            return agent.num_timesteps < 150

    agent = _tiny_sac()
    try:
        agent.learn(300, progress_bar=True, callback=StopAt150())
    finally:
        agent.close()
    message = [line for line in stream.getvalue().split("\n") if "stopped by a callback" in line]
    assert message and message[0].startswith("SAC: training stopped by a callback at step 150")


# -- every script answers --help ------------------------------------------------------------------

# A leading underscore marks a helper module the scripts import, not a script.
SCRIPTS = sorted(s for s in glob.glob(str(REPO / "examples" / "*.py"))
                 + glob.glob(str(REPO / "benchmarks" / "*.py")) if not Path(s).name.startswith("_"))
OPTIONAL = ("sbx", "trl", "vllm")

# One interpreter runs every script as __main__ with --help (torch and gymnasium load once, not
# once per script), each in an empty working directory of its own, while the optional packages
# cannot be imported: a script importing one at top level fails here as it would for a user
# without it. A line per script goes to the report as soon as it finishes, so a script that
# trains instead of answering is the one missing from it.
_RUN_HELP = f"""
import contextlib, io, json, os, runpy, sys
class Missing:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {OPTIONAL!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}")
sys.meta_path.insert(0, Missing())
report, root, scripts = sys.argv[1], sys.argv[2], sys.argv[3:]
path = list(sys.path)
for i, script in enumerate(scripts):
    cwd = os.path.join(root, str(i))
    os.makedirs(cwd)
    os.chdir(cwd)
    sys.argv, sys.path[:] = [script, "--help"], path
    out = io.StringIO()
    code = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            runpy.run_path(script, run_name="__main__")
        except SystemExit as stop:
            code = stop.code
        except BaseException as err:
            code = repr(err)
    with open(report, "a") as f:
        f.write(json.dumps({{"script": script, "code": code, "output": out.getvalue()[:4000],
                            "left": sorted(os.listdir(cwd))}}) + "\\n")
"""


@pytest.fixture(scope="module")
def help_answers(tmp_path_factory) -> dict[str, dict]:
    root = tmp_path_factory.mktemp("help")
    report = root / "report.jsonl"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    try:
        child = subprocess.run([sys.executable, "-c", _RUN_HELP, str(report), str(root / "cwd"),
                                *SCRIPTS], cwd=root, env=env, capture_output=True, text=True,
                               timeout=1200)
        trouble = child.stderr[-2000:]
    except subprocess.TimeoutExpired:
        trouble = "timed out"  # the scripts without a line in the report fail below
    lines = report.read_text().splitlines() if report.exists() else []
    answers = {entry["script"]: entry for entry in map(json.loads, lines)}
    answers["trouble"] = trouble
    return answers


@pytest.mark.parametrize("script", SCRIPTS, ids=[str(Path(s).relative_to(REPO)) for s in SCRIPTS])
def test_every_script_answers_help_without_running(script, help_answers):
    answer = help_answers.get(script)
    assert answer is not None, (f"{script} --help did not return (did it start a run?) "
                                f"{help_answers['trouble']}")
    assert answer["code"] == 0, answer["output"]  # argparse's --help exits 0; None: it ran on
    assert "usage" in answer["output"].lower()
    # Every script writes its runs and results under the working directory: nothing there means
    # nothing was trained or written.
    assert answer["left"] == []


def test_scripts_are_found():
    names = {Path(s).name for s in SCRIPTS}
    assert {"sac_pendulum.py", "concurrent_runs.py"} <= names


# -- inductor's persistent cache ------------------------------------------------------------------

_CACHE_CHECK = """
import os, sys
import torch
from torch._inductor.runtime.cache_dir_utils import cache_dir, default_cache_dir
import torch._inductor.utils  # any code that loads inductor first writes its temporary default
first = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
from maxent.training.fastpath import prepare_compile
prepare_compile(torch.device("cpu"))
print(repr((first, os.path.abspath(default_cache_dir()), cache_dir())))
"""


def _cache_dirs(tmp_path: Path, **env_changes: str) -> tuple:
    env = {k: v for k, v in os.environ.items() if k != "TORCHINDUCTOR_CACHE_DIR"}
    env.update(OMP_NUM_THREADS="1", XDG_CACHE_HOME=str(tmp_path / "xdg"), **env_changes)
    out = subprocess.run([sys.executable, "-c", _CACHE_CHECK], env=env, capture_output=True,
                         text=True, timeout=300, check=True).stdout
    return eval(out.strip().splitlines()[-1])  # noqa: S307 -- our own repr of three strings


def test_inductor_cache_is_the_persistent_one_even_after_inductor_loaded_first(tmp_path):
    first, torch_default, used = _cache_dirs(tmp_path)
    assert first == torch_default  # the situation users met: torch's temporary folder
    assert used == str(tmp_path / "xdg" / "maxent" / "inductor")
    assert Path(used).is_dir()


def test_inductor_cache_chosen_by_the_user_is_kept(tmp_path):
    mine = tmp_path / "my-cache"
    _, _, used = _cache_dirs(tmp_path, TORCHINDUCTOR_CACHE_DIR=str(mine))
    assert used == str(mine)


@pytest.mark.slow
def test_a_compiled_function_writes_into_the_persistent_cache(tmp_path):
    code = _CACHE_CHECK + (
        "f = torch.compile(lambda x: torch.sin(x) * 2 + 1)\n"
        "f(torch.randn(8))\n")
    env = {k: v for k, v in os.environ.items() if k != "TORCHINDUCTOR_CACHE_DIR"}
    env.update(OMP_NUM_THREADS="1", XDG_CACHE_HOME=str(tmp_path / "xdg"))
    subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                   timeout=900, check=True)
    cache = tmp_path / "xdg" / "maxent" / "inductor"
    assert any(p.is_file() for p in cache.rglob("*"))


# -- unknown config fields ------------------------------------------------------------------------


def test_an_unknown_config_field_is_named_with_the_closest_and_the_valid_ones():
    with pytest.raises(ConfigError) as info:
        SACConfig(lr=1)
    message = str(info.value)
    assert "\n" not in message
    assert "'lr'" in message
    assert "closest valid field: 'learning_rate'" in message
    for name in SACConfig.field_names():
        assert name in message
    assert isinstance(info.value, TypeError)  # code catching the dataclass's TypeError still does


@pytest.mark.parametrize("config_cls, typo, closest", [
    (SACConfig, "batchsize", "batch_size"),
    (SACConfig, "torch_thread", "torch_threads"),
    (QARLConfig, "max_forse", "max_force"),
])
def test_every_config_names_the_closest_field(config_cls, typo, closest):
    expected = (f"unknown {config_cls.__name__} field '{typo}' "
                f"\\(closest valid field: '{closest}'\\); valid fields: ")
    with pytest.raises(ConfigError, match=expected):
        config_cls(**{typo: 1})


def test_a_new_config_dataclass_gets_the_same_error():
    @dataclasses.dataclass
    class ToyConfig(AgentConfig):
        steps: int = 1
        rate: float = 0.5

    assert ToyConfig(steps=3).steps == 3
    with pytest.raises(ConfigError, match=r"unknown ToyConfig fields 'rat', 'zzz' \(closest valid "
                                          r"field: 'rate'\); valid fields: rate, steps$"):
        ToyConfig(rat=1, zzz=2)


def test_from_json_and_replace_use_the_same_message():
    with pytest.raises(ConfigError, match="unknown SACConfig field 'gama' .*'gamma'"):
        SACConfig.from_json({"gama": 0.9})
    with pytest.raises(ConfigError, match="unknown SACConfig field 'gama' .*'gamma'"):
        SACConfig().replace(gama=0.9)
