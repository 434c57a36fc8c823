"""What a newcomer met in the first hour of `maxent`: every algorithm's summary and `maxent eval`
report the measure its evaluation really takes (metric, unit, count) and the same number; help shows
each algorithm's own defaults in plain text; progress bars know the run's real length; errors are
one line, usage errors with exit status 2."""

from __future__ import annotations

import dataclasses
import inspect
import re
import subprocess
import sys

import pytest

from maxent.cli.algorithms import ALGORITHMS
from maxent.cli.main import main

# Tiny settings per algorithm so that each trains in a second or two.
SMALL = {
    "sac": ["--config.hidden-sizes", "16", "16", "--config.batch-size", "16",
            "--config.learning-starts", "4", "--config.buffer-size", "1000"],
    "qarl": ["--config.hidden-sizes", "16", "16", "--config.batch-size", "16",
             "--config.learning-starts", "4", "--config.buffer-size", "1000",
             "--env", "InvertedPendulum-v5", "--config.episodes-per-phase", "2",
             "--config.samples-per-update", "4", "--config.max-episode-steps", "20"],
    "rarl": ["--config.hidden-sizes", "16", "16", "--config.batch-size", "16",
             "--config.learning-starts", "4", "--config.buffer-size", "1000",
             "--env", "InvertedPendulum-v5", "--config.episodes-per-phase", "2",
             "--config.samples-per-update", "4", "--config.max-episode-steps", "20"],
    "grpo": ["--warmup-steps", "0", "--eval-prompts", "4", "--config.tiny-hidden-size", "16",
             "--config.tiny-layers", "1", "--config.tiny-heads", "2", "--config.prompts-per-step",
             "2", "--config.group-size", "2", "--config.max-new-tokens", "3"],
    "sac-discrete": ["--config.hidden-sizes", "16", "16", "--config.batch-size", "16",
                     "--config.learning-starts", "4", "--config.buffer-size", "1000"],
    "lp-planner": ["--config.n-samples", "4"],
    "homeostatic": ["--config.hidden", "16", "16"],
    "rehearsal": ["--stream.n-tasks", "2", "--config.hidden-sizes", "32"],
    "ewc": ["--stream.n-tasks", "2", "--config.hidden-sizes", "32"],
    "ads": ["--config.hidden", "32", "--config.n-layers", "1", "--config.sample-steps", "3",
            "--config.n-particles", "2"],
    "llm-agent": ["--config.n-samples", "2", "--config.tiny-hidden-size", "16",
                  "--config.tiny-layers", "1", "--config.tiny-heads", "2",
                  "--config.max-new-tokens", "8"],
}
STEPS = {"grpo": "1"}


def expected_count(algo: str) -> int:
    """What the final evaluation of the tiny run counts: the --eval-episodes given, the
    --eval-prompts given, the stream's tasks, or the held-out images of the digits split."""
    algorithm = ALGORITHMS[algo]
    if algo == "grpo":
        return 4
    if algorithm.stream:
        return 2
    if algorithm.eval_episodes is None:  # homeostatic: sklearn's 1797 digits, 20% held out
        return 359
    return 2


def test_registry_declares_every_algorithms_evaluation():
    for name, algorithm in ALGORITHMS.items():
        assert algorithm.metric and algorithm.eval_unit, name
        if algorithm.metric == "return":
            assert algorithm.eval_unit == "episodes" and algorithm.eval_episodes, name
    assert ALGORITHMS["homeostatic"].metric == "held-out accuracy"
    assert ALGORITHMS["homeostatic"].eval_unit == "test images"
    assert (ALGORITHMS["rehearsal"].metric, ALGORITHMS["rehearsal"].eval_unit) == \
        ("test accuracy", "tasks")
    assert ALGORITHMS["grpo"].eval_unit == "prompts"


@pytest.mark.parametrize("algo", sorted(ALGORITHMS))
def test_summary_and_eval_report_the_same_measure(algo, tmp_path, capsys):
    algorithm = ALGORITHMS[algo]
    run = tmp_path / "run"
    flags = ["train", algo, "--run-dir", str(run), "--no-progress-bar",
             "--total-steps", STEPS.get(algo, "6"), *SMALL.get(algo, [])]
    if algorithm.eval_episodes is not None:
        flags += ["--eval-episodes", "2"]
    assert main(flags) == 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    count, unit = expected_count(algo), algorithm.eval_unit
    assert main(["eval", str(run)]) == 0
    evaluated = capsys.readouterr().out
    if algo == "grpo":
        # The summary gives held-out accuracy before -> after training; eval the after.
        after = re.search(rf"held-out greedy accuracy [\d.]+ -> ([\d.]+) \({count} prompts",
                          summary)
        assert after, summary
        assert f"held-out greedy accuracy {after.group(1)} over {count} prompts" in evaluated
        return
    measure = re.search(rf"eval ({re.escape(algorithm.metric)} (-?[\d.]+)(?: ± [\d.]+)? over "
                        rf"{count} {unit})", summary)
    assert measure, summary
    assert measure.group(1) in evaluated, (summary, evaluated)  # the same number, same words
    if algorithm.metric != "return":
        assert 0.0 <= float(measure.group(2)) <= 1.0


def test_eval_with_other_seeds_says_so(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "ucb1", "--run-dir", str(run), "--total-steps", "6", "--no-progress-bar",
                 "--eval-episodes", "3"]) == 0
    capsys.readouterr()
    assert main(["eval", str(run)]) == 0
    assert "over 3 episodes (evaluation seed 10000;" in capsys.readouterr().out
    assert main(["eval", str(run), "--seed", "5", "--episodes", "2"]) == 0
    assert "over 2 episodes (evaluation seed 5;" in capsys.readouterr().out


# --------------------------------------------------------------------------- help and lengths


def help_text(algo: str, capsys, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as exc:
        main(["train", algo, "--help"])
    assert exc.value.code in (0, None)
    return " ".join(capsys.readouterr().out.replace("│", " ").split())


@pytest.mark.parametrize("algo", sorted(ALGORITHMS))
def test_help_shows_the_algorithms_own_defaults_in_plain_text(algo, capsys, monkeypatch):
    algorithm = ALGORITHMS[algo]
    text = help_text(algo, capsys, monkeypatch)
    if algorithm.stream:
        assert "--env" not in text
        assert re.search(r"--total-steps \{None\}\|INT .*?whole stream.*?\(default: None\)", text)
    else:
        assert re.search(rf"--env STR .*?\(default: {re.escape(algorithm.env)}\)", text), text
        assert re.search(rf"--total-steps INT {re.escape(algorithm.unit)} in total.*?"
                         rf"\(default: {algorithm.total_steps}\)", text, re.IGNORECASE), text
    assert re.search(rf"--checkpoint-every INT .*?\(default: {algorithm.checkpoint_every}\)", text)
    assert ("--eval-episodes" in text) == (algorithm.eval_episodes is not None)
    replay = "include_replay_buffer" in inspect.signature(algorithm.agent_class().save).parameters
    assert ("--save-replay-buffer" in text) == replay  # shown only where a replay buffer is saved
    if algo in ("sac", "qarl", "rarl", "ucb1", "grpo", "rehearsal"):
        assert replay == (algo in ("sac", "qarl", "rarl"))
    for markup in ("``", ":class:", ":mod:", ":func:", ":meth:", ":attr:", ":data:"):
        assert markup not in text, markup


def test_help_names_constants_by_their_values(capsys, monkeypatch):
    from maxent.agents import sac

    text = help_text("sac", capsys, monkeypatch)
    assert "AUTO_COMPILE_MIN_UPDATES" not in text and "BACKGROUND_MIN_CORES" not in text
    assert f"at least {sac.AUTO_COMPILE_MIN_UPDATES} updates" in text
    assert "OMP_NUM_THREADS" in text  # an environment variable a user sets stays named


def test_stream_run_and_its_bar_have_the_streams_length(tmp_path, capsys):
    from maxent.cli.train import StreamArgs
    from maxent.envs.continual import PermutedTaskStream

    length = PermutedTaskStream(**dataclasses.asdict(StreamArgs(n_tasks=2))).total_batches()
    assert main(["train", "rehearsal", "--run-dir", str(tmp_path / "run"), "--stream.n-tasks", "2",
                 "--config.hidden-sizes", "16"]) == 0
    captured = capsys.readouterr()
    totals = {int(t) for t in re.findall(r"step \d+/(\d+)", captured.out + captured.err)}
    assert totals == {length}, captured
    assert f": {length} steps," in captured.out
    # A shorter --total-steps is honoured, a longer one is the stream's end.
    assert main(["train", "rehearsal", "--run-dir", str(tmp_path / "short"), "--stream.n-tasks",
                 "2", "--config.hidden-sizes", "16", "--total-steps", "10",
                 "--no-progress-bar"]) == 0
    assert ": 10 steps," in capsys.readouterr().out


# --------------------------------------------------------------------------- errors

USAGE_ERRORS = [
    (["train", "sac", "--bogus", "1"], "--bogus"),
    (["train", "sac", "--config.learning-rat", "1"], "did you mean --config.learning-rate"),
    (["train", "sac", "--total-steps", "abc"], "--total-steps"),
    (["train", "sac", "--config.tau", "2"], "tau"),
    (["train", "sac", "--total-steps", "0"], "--total-steps must be positive"),
    (["train", "grpo", "--config.chat-template", "maybe"], "chat-template"),
    (["train", "dqn"], "unknown algorithm 'dqn'"),
    (["train"], "name an algorithm"),
    (["fit"], "unknown command 'fit'"),
    ([], "name a command"),
    (["eval"], "maxent eval"),
    (["eval", "somewhere", "--episodes", "0"], "--episodes must be positive"),
    (["robustness", "somewhere", "--episodes", "x"], "--episodes"),
    (["robustness", "somewhere", "--grid", "mass=3:9"], "grid spec 'mass=3:9' does not parse"),
    (["sweep", "--bogus"], "unrecognized arguments: --bogus"),
    (["export"], "maxent export"),
]


@pytest.mark.parametrize("argv,named", USAGE_ERRORS)
def test_usage_errors_are_one_line_with_status_2(argv, named, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["maxent", *argv])
    assert main() == 2  # as the console script runs it
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("maxent"), captured.err
    assert named in lines[0]
    assert not list(tmp_path.iterdir())  # nothing was trained or written
    # Called from Python, the same line is raised.
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    assert str(exc.value.code) == lines[0]


def test_runtime_refusals_are_one_line_with_status_1(tmp_path):
    (tmp_path / "notes.txt").write_text("not a run")
    result = subprocess.run([sys.executable, "-m", "maxent.cli.main", "eval", str(tmp_path)],
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1 and "maxent eval:" in result.stderr
    result = subprocess.run([sys.executable, "-m", "maxent.cli.main", "train", "sac", "--nope"],
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "maxent train sac: unrecognized options: --nope (see `maxent train sac --help`)"]


# --------------------------------------------------------------------------- GRPO from Python


def test_grpo_from_python_needs_the_documented_warmup():
    """A fresh tiny model answers in no format, so GRPO alone scores 0.0; `maxent train grpo`
    warms it up first, and the Python API's docstring says to call `warmup` as it does."""
    from maxent.agents.grpo import GRPO

    assert "warmup" in GRPO.__doc__ and "0.0" in GRPO.__doc__
    agent = GRPO("tiny", "maxent/TextArithmetic-v0", seed=0)
    assert agent.evaluate_accuracy(32) == 0.0
    history = agent.warmup(600, stop_accuracy=0.1)
    assert history[-1][1] >= 0.1 and agent.warmed_up
    assert agent.evaluate_accuracy(64) > 0.0
    agent.close()
