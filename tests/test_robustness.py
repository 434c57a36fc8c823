"""Robustness benchmark (maxent/robustness.py and `maxent robustness`): grid specs, lockstep grid
evaluation equal to one-by-one evaluation, confidence intervals, and the CLI on a tiny grid over
SAC, QARL and RARL run directories made by `maxent train`."""

from __future__ import annotations

import contextlib
import csv
import io
import math

import gymnasium as gym
import numpy as np
import pytest

from maxent.training.agent import evaluate
from maxent.cli.main import main
from maxent.envs.adversarial import MassFrictionPerturbation
from maxent.cli.robustness import GridEvaluator, Job, confidence_interval, load_run, parse_grid

TASK = "InvertedPendulum-v5"
SMALL = ["--env", TASK, "--config.hidden-sizes", "32", "32", "--config.batch-size", "32",
         "--config.buffer-size", "5000", "--config.learning-starts", "50", "--config.log-interval",
         "100", "--config.torch-threads", "1", "--no-progress-bar", "--eval-episodes", "1",
         "--checkpoint-every", "1000", "--total-steps", "200"]
ADVERSARIAL = ["--config.episodes-per-phase", "2", "--config.samples-per-update", "4",
               "--config.max-episode-steps", "50"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, str]:
    """One tiny SAC, QARL and RARL run directory each, trained by the CLI."""
    root = tmp_path_factory.mktemp("robust")
    out = {}
    for algo, extra in (("sac", []), ("qarl", ADVERSARIAL + ["--config.performance-bound", "1"]),
                        ("rarl", ADVERSARIAL)):
        out[algo] = str(root / algo)
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(["train", algo, "--run-dir", out[algo], *SMALL, *extra]) == 0
    return out


def test_parse_grid():
    grid = parse_grid(["mass=3:9:11", "friction=0.1:1.9:11"])
    np.testing.assert_allclose(grid["mass"], np.linspace(3, 9, 11))
    assert list(grid) == ["mass", "friction"] and grid["friction"][-1] == pytest.approx(1.9)
    assert parse_grid(["mass_scale=0.5,1,2"])["mass_scale"].tolist() == [0.5, 1.0, 2.0]
    assert parse_grid(["friction=1e-1"])["friction"].tolist() == [0.1]


@pytest.mark.parametrize("specs,match", [
    (["mass=3:9"], "does not parse"),
    (["mass 3:9:11"], "does not parse"),
    (["mass=a:b:3"], "does not parse"),
    (["gravity=1:2:3"], "unknown axis 'gravity'"),
    (["mass=1:2:3", "mass=2:3:3"], "given twice"),
    (["mass=0:9:3"], "mass values must be finite and > 0"),
    (["mass=1:2:0"], "N must be >= 1"),
    (["mass=1:2:3", "mass_scale=1,2"], "not both"),
    (["mass=1:2:3", "friction=1:2:3", "friction_scale=1"], "at most two axes"),
])
def test_bad_grid_specs(specs, match):
    with pytest.raises(ValueError, match=match):
        parse_grid(specs)


def test_confidence_interval():
    mean, half = confidence_interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(4.302653 / math.sqrt(3), rel=1e-5)
    assert math.isnan(confidence_interval([4.0])[1])


def test_lockstep_grid_equals_one_by_one_evaluation(runs):
    run = load_run(runs["qarl"])
    evaluator = GridEvaluator(TASK, max_episode_steps=60, pool_size=3)
    cells = [{"mass": 2.0, "friction": 0.5}, {"mass": 9.0, "friction": 1.5}, {"mass_scale": 0.5}]
    jobs = [Job((i,), seed, settings) for i, settings in enumerate(cells) for seed in (0, 1)]
    evaluator.run(jobs, lambda obs: run.agent.predict(obs))
    for job in jobs:
        env = MassFrictionPerturbation(gym.make(TASK, max_episode_steps=60), **job.settings)
        expected = evaluate(run.agent, env, n_episodes=1, seed=job.seed)[0]
        env.close()
        assert job.out == [pytest.approx(expected)], job.settings
    # Pool envs are back to the nominal model after a run.
    model = evaluator._pools["task"][0].unwrapped.model
    assert model.body_mass[model.body("pole").id] == pytest.approx(
        gym.make(TASK).unwrapped.model.body_mass[2])
    evaluator.close()


def test_cli_writes_csv_heatmaps_and_summary(runs, tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["robustness", runs["sac"], runs["qarl"], runs["rarl"], "--grid", "mass=2:10:3",
                 "friction=0.1:1.9:2", "--episodes", "2", "--out", str(out),
                 "--max-episode-steps", "60"]) == 0
    printed = capsys.readouterr().out
    for method in ("SAC", "QARL", "RARL"):
        assert f"| {method} | 1 |" in printed
    with open(out / "robustness.csv") as f:
        rows = list(csv.DictReader(f))
    grid_rows = [r for r in rows if r["condition"] == "grid"]
    assert len(grid_rows) == 3 * 3 * 2
    assert {r["condition"] for r in rows} == {"grid", "nominal", "adversary"}
    assert not any(r["condition"] == "adversary" and r["method"] == "SAC" for r in rows)
    assert {float(r["mass"]) for r in grid_rows} == {2.0, 6.0, 10.0}
    returns = [float(r["mean_return"]) for r in grid_rows]
    assert all(1 <= x <= 60 for x in returns)
    with open(out / "summary.csv") as f:
        summary = {r["method"]: r for r in csv.DictReader(f)}
    qarl = [float(r["mean_return"]) for r in grid_rows if r["method"] == "QARL"]
    assert float(summary["QARL"]["grid_mean"]) == pytest.approx(np.mean(qarl))
    assert float(summary["QARL"]["worst_cell"]) == pytest.approx(min(qarl))
    assert (out / "heatmaps.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "grid mean" in (out / "summary.md").read_text()


def test_cli_rejects_bad_input(runs, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["robustness", runs["sac"], "--grid", "mass=3:9", "--out", str(tmp_path)])
    assert "grid spec 'mass=3:9' does not parse" in str(exc.value.code)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit) as exc:
        main(["robustness", str(empty), "--out", str(tmp_path)])
    assert "holds no protagonist" in str(exc.value.code)
    with pytest.raises(SystemExit) as exc:
        main(["robustness", runs["sac"], "--episodes", "0"])
    assert "--episodes must be positive" in str(exc.value.code)


def test_train_help_lists_the_adversarial_algorithms(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit):
        main(["train", "qarl", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for flag in ("--config.curriculum", "--config.performance-bound", "--config.max-force",
                 "--config.episodes-per-phase", "Hopper-v5"):
        assert flag in out, flag
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "robustness" in capsys.readouterr().out
    try:  # `maxent train --help` lists the algorithms (it returns, or exits like argparse)
        main(["train", "--help"])
    except SystemExit:
        pass
    out = capsys.readouterr().out
    assert "qarl" in out and "rarl" in out


class _Linear:
    """A fixed linear policy: cheap, deterministic, and sensitive to the dynamics."""

    def __init__(self, dim: int, seed: int = 0):
        self.weights = np.random.default_rng(seed).normal(size=(dim, 1)).astype(np.float32)

    def predict(self, obs, deterministic=True):
        return np.clip(np.asarray(obs, np.float32) @ self.weights, -3, 3)


def test_mesh_evaluation_covers_both_bounds_and_equals_one_by_one():
    from maxent.cli.robustness import evaluate_mesh, mesh_scores
    from maxent.envs.uncertainty import PhysicsPerturbation, mesh

    policy = _Linear(4)
    result = evaluate_mesh(policy, "invertedpendulum-2d", points_per_dim=3, episodes=2, seed=5,
                           max_episode_steps=40, pool_size=4)
    assert result.points == mesh("invertedpendulum-2d", 3) and result.returns.shape == (9, 2)
    poles = {p["mass:pole"] for p in result.points}
    assert min(poles) == 1.0 and max(poles) == 31.0        # both bounds of the RRLS range
    for point, returns in zip(result.points[::4], result.returns[::4]):
        env = PhysicsPerturbation(gym.make(TASK, max_episode_steps=40), point)
        np.testing.assert_allclose(returns, evaluate(policy, env, n_episodes=2, seed=5))
        env.close()
    scores = result.scores()
    cells = result.returns.mean(axis=1)
    assert scores == mesh_scores(cells)
    assert scores["worst"] == cells.min() and scores["mean"] == pytest.approx(cells.mean())
    assert scores["worst"] <= scores["p10"] <= scores["mean"]
    assert mesh_scores(np.arange(11.0))["p10"] == pytest.approx(1.0)
