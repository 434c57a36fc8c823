"""The ``maxent`` command: help, train, resume, eval, every bad input rejected with its flag's name,
the installed console script, and the README commands that CI runs."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from maxent.training import logging as mlog
from maxent.training.checkpoint import read_checkpoint_header
from maxent.cli.main import main, parse_count

REPO = Path(__file__).resolve().parents[1]
# Small networks, few steps, one eval episode: a 300-step run takes about a second.
SMALL = ["--config.hidden-sizes", "32", "32", "--config.batch-size", "32",
         "--config.buffer-size", "10000", "--config.learning-starts", "50",
         "--config.log-interval", "100", "--no-progress-bar", "--eval-episodes", "1",
         "--checkpoint-every", "100"]
SUMMARY = re.compile(r"SAC Pendulum-v1: (\d+) steps, [\d.]+ s, ([\d.]+ (?:steps/s|s/step)), eval return "
                     r"(-?[\d.]+)")


def train(run_dir: Path, *extra: str, total: str = "300") -> None:
    main(["train", "sac", "--run-dir", str(run_dir), "--total-steps", total, *SMALL, *extra])


def exit_message(excinfo: pytest.ExceptionInfo) -> str:
    """The text of a ``SystemExit(message)``; fails for a bare exit code."""
    code = excinfo.value.code
    assert isinstance(code, str), f"expected an exit with a message, got code {code!r}"
    return code


def digest(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, str]:
    """One 300-step run (given as ``3e2``), shared by the tests that only read it."""
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["train", "sac", "--run-dir", str(run_dir), "--total-steps", "3e2", *SMALL]) == 0
    return run_dir, out.getvalue()


@pytest.fixture
def run_copy(trained, tmp_path) -> Path:
    """A copy of the shared run for tests that resume it (or should leave it alone but might not)."""
    return Path(shutil.copytree(trained[0], tmp_path / "run"))


# --------------------------------------------------------------------------- help


def test_top_level_help_lists_commands_and_algorithms(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code in (0, None)
    out = capsys.readouterr().out
    assert "train" in out and "eval" in out and "sac" in out


def test_train_help_shows_config_fields_with_defaults(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # one flag per line, no wrapping of the defaults
    with pytest.raises(SystemExit) as exc:
        main(["train", "sac", "--help"])
    assert exc.value.code in (0, None)
    out = " ".join(capsys.readouterr().out.split())
    for flag in ("--config.learning-rate", "--config.batch-size", "--config.gamma", "--total-steps",
                 "--env", "--run-dir", "--no-resume"):
        assert flag in out, flag
    assert re.search(r"--config\.learning-rate FLOAT .*?\(default: 0\.0003\)", out)
    assert re.search(r"--config\.batch-size INT .*?\(default: 256\)", out)
    assert "Pendulum-v1" in out


# --------------------------------------------------------------------------- train and resume


def test_train_prints_summary_and_writes_run(trained):
    run_dir, out = trained
    lines = [line for line in out.splitlines() if line.strip()]
    summaries = [line for line in lines if SUMMARY.search(line)]
    assert len(summaries) == 1, out
    steps, fps, _ = SUMMARY.search(summaries[0]).groups()
    assert int(steps) == 300  # --total-steps 3e2
    assert float(fps.split()[0]) > 0
    assert str(run_dir / "model") in summaries[0]

    model = run_dir / "model"
    assert (model / "config.json").is_file() and (model / "weights.safetensors").is_file()
    header = read_checkpoint_header(model)
    assert header["kind"] == "SAC"
    config = header["config"]  # the flags reached the agent
    assert config["hidden_sizes"] == [32, 32] and config["batch_size"] == 32
    assert config["learning_starts"] == 50 and config["buffer_size"] == 10_000

    rows = list(csv.DictReader((run_dir / "progress.csv").read_text().splitlines()))
    assert [int(r["step"]) for r in rows] == [100, 200, 300]
    events = list(run_dir.glob("events.out.tfevents.*"))
    assert events
    assert any(mlog.CRITIC_LOSS.encode() in e.read_bytes() for e in events)


def test_rerun_resumes_then_trains_nothing_more(run_copy, capsys):
    run_dir = run_copy
    # A changed log_interval only changes how the run executes, so it may differ on resume, and
    # the resumed run uses it.
    train(run_dir, "--config.log-interval", "50", total="400")
    out = capsys.readouterr().out
    assert re.search(r"resuming .*model at step 300\b", out), out
    assert [int(m.group(1)) for m in SUMMARY.finditer(out)] == [400]
    rows = list(csv.DictReader((run_dir / "progress.csv").read_text().splitlines()))
    assert [int(r["step"]) for r in rows][-3:] == [300, 350, 400]
    config = read_checkpoint_header(run_dir / "model")["config"]
    assert config["gamma"] == 0.99 and config["log_interval"] == 50

    # Same total again: nothing to train, the checkpoint stays as it is, the summary still prints.
    before = digest(run_dir / "model")
    train(run_dir, total="400")
    out = capsys.readouterr().out
    assert re.search(r"resuming .*model at step 400\b", out), out
    match = SUMMARY.search(out)
    assert match and int(match.group(1)) == 400, out
    assert "nan" not in out.lower()
    assert digest(run_dir / "model") == before


def test_resume_rejects_a_changed_learning_setting(run_copy):
    run_dir = run_copy
    before = digest(run_dir / "model")
    with pytest.raises(SystemExit) as exc:
        train(run_dir, "--config.gamma", "0.9", total="400")
    assert "gamma" in exit_message(exc)
    assert digest(run_dir / "model") == before


@pytest.mark.parametrize("flag,value", [("--env", "MountainCarContinuous-v0"), ("--seed", "1")])
def test_resume_rejects_another_env_or_seed(run_copy, flag, value):
    run_dir = run_copy
    before = digest(run_dir / "model")
    with pytest.raises(SystemExit) as exc:
        train(run_dir, flag, value, total="400")
    message = exit_message(exc)
    assert flag in message and value in message
    assert digest(run_dir / "model") == before


def test_no_resume_refuses_an_existing_checkpoint(run_copy):
    run_dir = run_copy
    before = digest(run_dir / "model")
    with pytest.raises(SystemExit) as exc:
        train(run_dir, "--no-resume", total="400")
    message = exit_message(exc)
    assert "already holds a checkpoint" in message and "--run-dir" in message
    assert digest(run_dir / "model") == before


# --------------------------------------------------------------------------- bad input


def test_parse_count():
    assert parse_count("300") == 300
    assert parse_count("3e2") == 300
    assert parse_count("20_000") == 20_000
    assert parse_count("1e6") == 1_000_000
    for bad in ("2.5", "abc", "inf", "nan", ""):
        with pytest.raises(ValueError):
            parse_count(bad)


@pytest.mark.parametrize("flag,value", [("--total-steps", "0"), ("--total-steps", "-5"),
                                        ("--checkpoint-every", "0"), ("--eval-episodes", "0")])
def test_nonpositive_counts_are_rejected_before_training(tmp_path, flag, value):
    args = ["train", "sac", "--run-dir", str(tmp_path / "run"), *SMALL, "--total-steps", "100",
            flag, value]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert flag in exit_message(exc)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("extra,named", [
    (["--config.bogus", "1"], "--config.bogus"),
    (["--config.batch-size", "abc"], "batch-size"),
    (["--total-steps", "2.5"], "total-steps"),
    (["--total-steps", "inf"], "total-steps"),
    (["--config.tau", "2"], "tau"),
])
def test_bad_flags_and_values_are_rejected(tmp_path, capsys, extra, named):
    with pytest.raises(SystemExit) as exc:
        main(["train", "sac", "--run-dir", str(tmp_path / "run"), *SMALL, *extra])
    assert exc.value.code not in (0, None)
    captured = capsys.readouterr()
    text = f"{captured.out}{captured.err}{exc.value.code}"
    assert named in text, text
    assert not (tmp_path / "run").exists()


def test_unknown_algorithm_names_the_choices(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "dqn"])
    message = exit_message(exc)
    assert "dqn" in message and "sac" in message


def test_unknown_env_suggests_registered_ids(tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["train", "sac", "--run-dir", str(tmp_path / "run"), *SMALL, "--env", "Pendulum-v0"])
    message = exit_message(exc)
    assert "Pendulum-v0" in message and "Pendulum-v1" in message


def test_unknown_command_is_rejected(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["fit"])
    assert exc.value.code not in (0, None)


# --------------------------------------------------------------------------- eval


def test_eval_on_run_dir_and_model_dir(trained, capsys):
    run_dir = trained[0]
    results = []
    for path in (run_dir, run_dir / "model"):
        assert main(["eval", str(path), "--episodes", "2"]) == 0
        out = capsys.readouterr().out
        match = re.search(r"SAC Pendulum-v1: return (-?[\d.]+) ± [\d.]+ over 2 episodes", out)
        assert match, out
        assert "trained 300 steps" in out
        results.append(float(match.group(1)))
    assert results[0] == results[1]  # deterministic policy, same seeds


def test_eval_on_a_directory_that_is_not_a_checkpoint(tmp_path):
    (tmp_path / "notes.txt").write_text("not a run")
    with pytest.raises(SystemExit) as exc:
        main(["eval", str(tmp_path)])
    assert "config.json" in exit_message(exc)
    with pytest.raises(SystemExit) as exc:
        main(["eval", str(tmp_path / "missing")])
    assert "missing" in exit_message(exc)


# --------------------------------------------------------------------------- install and README


def test_console_script_is_installed():
    exe = shutil.which("maxent")
    assert exe is not None, "the maxent console script is not on PATH (pip install -e .)"
    result = subprocess.run([exe, "--help"], check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "train" in result.stdout and "eval" in result.stdout


def readme_ci_command() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- ci-test-command -->\n(.*?)<!-- /ci-test-command -->", text, re.DOTALL)
    assert match, "README.md lacks the <!-- ci-test-command --> markers"
    block = re.fullmatch(r"\s*```\w*\n(.*?)\n```\s*", match.group(1), re.DOTALL)
    assert block, f"expected one fenced code block between the markers, got {match.group(1)!r}"
    return block.group(1).strip()


def test_readme_gives_the_train_and_test_commands():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)```", text, re.DOTALL)
    assert any(re.search(r"^\S.*maxent train sac\b", b, re.MULTILINE) for b in blocks)
    command = readme_ci_command()
    assert "\n" not in command and "pytest" in command


def test_ci_runs_exactly_the_readme_command():
    script = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    match = re.search(r"^test_command=\$\((.*)\)\s*$", script, re.MULTILINE)
    assert match, ".ci/run no longer reads the test command from README.md"
    pipeline = match.group(1)
    assert "README.md" in pipeline
    result = subprocess.run(["bash", "-c", pipeline], cwd=REPO, check=False,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == readme_ci_command()
    assert 'eval "$test_command"' in script


def test_train_grpo_goes_through_the_common_run(tmp_path, capsys):
    flags = ["train", "grpo", "--run-dir", str(tmp_path), "--warmup-steps", "0", "--eval-prompts",
             "4", "--no-progress-bar", "--total-steps", "1", "--config.tiny-hidden-size", "16",
             "--config.tiny-layers", "1", "--config.tiny-heads", "2", "--config.prompts-per-step",
             "2", "--config.group-size", "2", "--config.max-new-tokens", "3"]
    assert main(flags) == 0
    out = capsys.readouterr().out
    assert "GRPO maxent/TextArithmetic-v0: 1 steps" in out
    assert re.search(r"held-out greedy accuracy [\d.]+ -> [\d.]+ \(4 prompts", out), out
    rows = list(csv.DictReader((tmp_path / "progress.csv").read_text().splitlines()))
    assert int(rows[-1]["step"]) == 1 and float(rows[-1]["eval/accuracy"]) >= 0  # the final row
    # The refusals every algorithm has: another config, env or flag value.
    with pytest.raises(SystemExit, match=r"different config \(group_size differ\)"):
        main([*flags[:-4], "--config.group-size", "4", *flags[-2:]])
    with pytest.raises(SystemExit, match="trained with --env maxent/TextArithmetic-v0"):
        main([*flags, "--env", "maxent/TextCountdown-v0"])
    with pytest.raises(SystemExit, match="--eval-prompts must be positive"):
        main([*flags, "--eval-prompts", "0"])
    with pytest.raises(SystemExit, match="unknown algorithm 'nope'.*grpo"):
        main(["train", "nope"])


def test_eval_finds_the_checkpoint_an_interrupted_save_left(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "ucb1", "--run-dir", str(run), "--total-steps", "4", "--eval-episodes",
                 "1", "--no-progress-bar"]) == 0
    # A save killed between its two renames leaves only the .old sibling of model/.
    (run / "model").rename(run / ".model.old-999999-abcd1234")
    capsys.readouterr()
    with pytest.warns(UserWarning, match="interrupted save"):
        assert main(["eval", str(run), "--episodes", "1"]) == 0
    assert "trained 4 steps" in capsys.readouterr().out
