"""The run lifecycle of maxent/training/run.py on a cheap agent (UCB1 on a recharging bandit): a
fresh run is built, the same run resumes where it stopped, a save killed between its two renames
still resumes, a second trainer is refused before it reads anything, Ctrl-C leaves the last
checkpoint intact and says so, and a resume with other settings is refused naming them."""

from __future__ import annotations

import csv
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from maxent.agents.bandits import UCB1, UCB1Config
from maxent.training import logging as mlog
from maxent.training.agent import Callback
from maxent.training.runlock import RunLockedError
from maxent.training.run import (MODEL_SUBDIR, RunHooks, RunSpec, checkpoint_dir, default_run_dir,
                                 has_checkpoint, read_header, train)

ENV = "maxent/RechargingBandit-v0"


def spec(run_dir: Path, total_steps: int, **changes) -> RunSpec:
    return RunSpec(**{"run_dir": run_dir, "total_steps": total_steps, "seed": 3, "env": ENV,
                      "config": UCB1Config(), "checkpoint_every": 4, "log": None, **changes})


def hooks() -> RunHooks:
    return RunHooks(UCB1, eval_episodes=1)


def log_rows(run_dir: Path) -> list[dict]:
    return list(csv.DictReader((run_dir / "progress.csv").read_text().splitlines()))


class Recording(RunHooks):
    """Default hooks that record which of them ran."""

    def __init__(self):
        super().__init__(UCB1, eval_episodes=1)
        self.calls: list[str] = []

    def build(self, run):
        self.calls.append("build")
        return super().build(run)

    def load(self, run, overrides):
        self.calls.append("load")
        return super().load(run, overrides)

    def before_learn(self, agent, run):
        self.calls.append(f"before_learn at {agent.num_timesteps}")


def test_a_run_is_built_then_resumed_where_it_stopped(tmp_path):
    run_dir = tmp_path / "run"
    assert not has_checkpoint(run_dir) and checkpoint_dir(run_dir) == run_dir
    first = Recording()
    result = train(spec(run_dir, 8), first)
    assert first.calls == ["build", "before_learn at 0"]
    assert result.resumed_from is None and result.trained == 8 and result.agent.num_timesteps == 8
    assert checkpoint_dir(run_dir) == run_dir / MODEL_SUBDIR
    assert read_header(run_dir)["kind"] == "UCB1"
    rows = log_rows(run_dir)
    assert int(rows[-1]["step"]) == 8
    evaluation = result.evaluation.row[mlog.EVAL_RETURN]
    assert float(rows[-1][mlog.EVAL_RETURN]) == pytest.approx(evaluation)  # joined to the last row

    again = Recording()
    result = train(spec(run_dir, 12), again)
    assert again.calls == ["load", "before_learn at 8"]
    assert result.resumed_from == 8 and result.trained == 4 and result.agent.num_timesteps == 12
    steps = [int(r["step"]) for r in log_rows(run_dir)]
    assert steps[-1] == 12 and steps.count(8) == 1  # the resumed log continues, no duplicate row

    # Nothing left: no training and no new log row, but still the evaluation.
    result = train(spec(run_dir, 12), hooks())
    assert result.trained == 0 and result.evaluation.text.startswith("eval return")
    assert [int(r["step"]) for r in log_rows(run_dir)] == steps


def test_a_save_killed_between_its_renames_resumes_from_the_old_sibling(tmp_path):
    run_dir = tmp_path / "run"
    train(spec(run_dir, 8), hooks())
    # What a save killed after its first rename leaves: only .model.old-<pid>-<hex>.
    (run_dir / MODEL_SUBDIR).rename(run_dir / f".{MODEL_SUBDIR}.old-999999-abcd1234")
    assert has_checkpoint(run_dir) and checkpoint_dir(run_dir) == run_dir / MODEL_SUBDIR
    with pytest.warns(UserWarning, match="interrupted save"):
        assert read_header(run_dir)["kind"] == "UCB1"
    with pytest.warns(UserWarning, match="interrupted save"):
        result = train(spec(run_dir, 12), hooks())
    assert result.resumed_from == 8 and result.agent.num_timesteps == 12
    assert (run_dir / MODEL_SUBDIR / "config.json").exists()
    assert not list(run_dir.glob(f".{MODEL_SUBDIR}.old-*"))  # the next save cleaned it up


def test_a_second_trainer_is_refused_before_it_reads_the_run(tmp_path):
    run_dir = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from maxent.training import runlock
        with runlock.hold({str(run_dir)!r}, purpose="the first trainer"):
            print("holding", flush=True)
            sys.stdin.read()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        second = Recording()
        with pytest.raises(RunLockedError, match=rf"pid {holder.pid}"):
            train(spec(run_dir, 8), second)
        assert second.calls == [] and not has_checkpoint(run_dir)
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert train(spec(run_dir, 8), hooks()).trained == 8  # free once the first one ends


class Interrupt(Callback):
    """Ctrl-C during step ``at``."""

    def __init__(self, at: int):
        self.at = at

    def on_step(self, agent) -> bool:
        if agent.num_timesteps == self.at:
            raise KeyboardInterrupt
        return True


def test_ctrl_c_keeps_the_last_checkpoint_and_says_how_to_resume(tmp_path):
    run_dir = tmp_path / "run"
    with pytest.raises(SystemExit) as stop:
        train(spec(run_dir, 20), hooks(), callbacks=[Interrupt(6)])
    message = str(stop.value.code)
    assert message.strip() == (f"maxent train: interrupted at step 6; the last checkpoint in "
                               f"{run_dir / MODEL_SUBDIR} is intact; run the same command to resume")
    assert UCB1.load(run_dir / MODEL_SUBDIR).num_timesteps == 4  # the checkpoint before Ctrl-C
    result = train(spec(run_dir, 20), hooks())
    assert result.resumed_from == 4 and result.agent.num_timesteps == 20


@pytest.mark.parametrize("change,refusal", [
    ({"config": UCB1Config(c=0.5)}, r"was trained with a different config \(c differ\)"),
    ({"seed": 4}, r"was trained with --seed 3, not 4; resume with --seed 3"),
    ({"env": "maxent/LSDBandit-v0"}, r"was trained with --env maxent/RechargingBandit-v0, not "
                                     r"maxent/LSDBandit-v0"),
    ({"resume": False}, r"already holds a checkpoint; drop --no-resume"),
])
def test_a_resume_with_other_settings_is_refused(tmp_path, change, refusal):
    run_dir = tmp_path / "run"
    train(spec(run_dir, 4), hooks())
    with pytest.raises(SystemExit, match=refusal):
        train(spec(run_dir, 8, **change), hooks())
    assert UCB1.load(run_dir / MODEL_SUBDIR).num_timesteps == 4  # untouched


def test_a_checkpoint_of_another_agent_is_refused(tmp_path):
    from maxent.agents.bandits import Thompson, ThompsonConfig

    run_dir = tmp_path / "run"
    train(spec(run_dir, 4), hooks())
    with pytest.raises(SystemExit, match=r"holds a UCB1 agent, not Thompson; choose another"):
        train(spec(run_dir, 8, config=ThompsonConfig()), RunHooks(Thompson, eval_episodes=1))


def test_default_run_dir_names_algorithm_env_and_seed():
    assert default_run_dir("grpo", "maxent/TextArithmetic-v0", 2) == \
        Path("runs/grpo-maxent_TextArithmetic-v0-s2")
