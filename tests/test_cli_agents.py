"""`maxent train NAME` for every agent of agents/registry.py: train a few steps, evaluate,
resume; the same run-directory behaviour as SAC (checkpoint, progress.csv, TensorBoard, refusal of
a changed setting). The built-in default runs themselves are the slow test at the end."""

from __future__ import annotations

import csv
import re
import time
from pathlib import Path

import pytest

from maxent.training.checkpoint import read_checkpoint_header
from maxent.cli.main import main
from maxent.cli.algorithms import ALGORITHMS

COMMON = ["--no-progress-bar"]
# Small settings per agent so that each test trains in a second or two.
SMALL = {
    "ucb1": [], "thompson": [], "boltzmann": [], "greedy-oracle": [], "exact-planner": [],
    "lp-planner": ["--config.n-samples", "4"], "isi-combucb1": [], "combucb1": [],
    "optimistic-planner": [], "surgery": [], "naive": [], "causal-ucb": [],
    "homeostatic": ["--config.hidden", "16", "16"],
    "rehearsal": ["--stream.n-tasks", "2", "--config.hidden-sizes", "32"],
    "ewc": ["--stream.n-tasks", "2", "--config.hidden-sizes", "32"],
    "sac-discrete": ["--config.hidden-sizes", "16", "16", "--config.batch-size", "16",
                     "--config.learning-starts", "4", "--config.buffer-size", "1000"],
    "ads": ["--config.hidden", "32", "--config.n-layers", "1", "--config.sample-steps", "3",
            "--config.n-particles", "2", "--env", "maxent/MeasurementAcquisition-v0"],
    "llm-agent": ["--config.n-samples", "2", "--config.tiny-hidden-size", "16",
                  "--config.tiny-layers", "1", "--config.tiny-heads", "2",
                  "--config.max-new-tokens", "8"],
}
NEW = sorted(set(ALGORITHMS) - {"sac", "qarl", "rarl", "grpo"})


def test_every_new_algorithm_has_small_settings():
    assert sorted(SMALL) == NEW


def _flags(algo: str) -> list[str]:
    episodes = ["--eval-episodes", "1"] if ALGORITHMS[algo].eval_episodes is not None else []
    return [*COMMON, *episodes, *SMALL[algo]]


def _steps_and_summary(out: str, algo: str) -> int:
    algorithm = ALGORITHMS[algo]
    match = re.search(rf"{algorithm.kind} .*?: (\d+) steps, [\d.]+ s, [\d.]+ (?:steps/s|s/step), eval "
                      rf"{algorithm.metric} (-?[\d.]+)( ± [\d.]+)? over \d+ "
                      rf"{algorithm.eval_unit.rstrip('s')}", out)
    assert match, out
    return int(match.group(1))


@pytest.mark.parametrize("algo", NEW)
def test_train_eval_resume(algo, tmp_path, capsys):
    run = tmp_path / "run"
    flags = ["train", algo, "--run-dir", str(run), *_flags(algo), "--checkpoint-every", "4"]
    assert main([*flags, "--total-steps", "8"]) == 0
    assert _steps_and_summary(capsys.readouterr().out, algo) == 8
    header = read_checkpoint_header(run / "model")
    assert header["kind"] == ALGORITHMS[algo].agent.rsplit(":", 1)[1]
    rows = list(csv.DictReader((run / "progress.csv").read_text().splitlines()))
    column = "eval/mean_return" if ALGORITHMS[algo].metric == "return" else "eval/accuracy"
    assert rows and int(rows[-1]["step"]) == 8 and column in rows[-1]
    assert list(run.glob("events.out.tfevents.*"))

    assert main(["eval", str(run), "--episodes", "1"]) == 0
    assert re.search(rf"{ALGORITHMS[algo].metric} -?[\d.]+( ± [\d.]+)? over .*trained 8 steps",
                     capsys.readouterr().out)

    assert main([*flags, "--total-steps", "12"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"resuming .*model at step 8\b", out), out
    assert _steps_and_summary(out, algo) == 12
    assert [int(r["step"]) for r in csv.DictReader((run / "progress.csv").read_text().splitlines())
            ].count(8) == 1


def test_resume_refuses_a_changed_setting(tmp_path):
    flags = ["train", "boltzmann", "--run-dir", str(tmp_path), *_flags("boltzmann"),
             "--total-steps", "5"]
    assert main(flags) == 0
    with pytest.raises(SystemExit, match="alpha"):
        main([*flags, "--config.alpha", "0.5", "--total-steps", "10"])
    with pytest.raises(SystemExit, match="--env"):
        main([*flags, "--env", "maxent/LSDBandit-v0", "--total-steps", "10"])


@pytest.mark.slow
@pytest.mark.parametrize("algo", [a for a in ALGORITHMS if a not in ("sac", "qarl", "rarl", "grpo")])
def test_built_in_default_runs(algo, tmp_path, capsys):
    """The command with no flags but a run directory, as a user would type it first."""
    start = time.perf_counter()
    assert main(["train", algo, "--run-dir", str(tmp_path / "run"), "--no-progress-bar"]) == 0
    elapsed = time.perf_counter() - start
    out = capsys.readouterr().out
    steps = _steps_and_summary(out, algo)
    assert steps > 0
    print(f"{algo}: {elapsed:.1f} s for {steps} steps")  # reported by `pytest -m slow -s`
    assert Path(tmp_path / "run" / "model" / "config.json").exists()
