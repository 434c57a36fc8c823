"""Tests for agents/rehearsal.py: the EWC penalty and Fisher, the learner learning and
forgetting less with rehearsal, config checks, and exact save/load resumption."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from maxent.training.agent import FunctionCallback
from maxent.agents.rehearsal import (
    EWC,
    EWC_LAMBDA,
    EWCConfig,
    RehearsalConfig,
    RehearsalLearner,
    diagonal_fisher,
    ewc_penalty,
)
from maxent.training.checkpoint import CheckpointError
from maxent.envs.continual import PermutedTaskStream, average_accuracy, forgetting

SMALL = RehearsalConfig(hidden_sizes=(64,))


def tiny_stream(schedule="uniform", n_tasks=3, **kw):
    kw = {"rehearsal_fraction": 0.5, "epochs": 2, **kw}
    return PermutedTaskStream(n_tasks=n_tasks, schedule=schedule, **kw)


# --------------------------------------------------------------------------- EWC


def random_params(seed):
    g = torch.Generator().manual_seed(seed)
    return {"w": torch.randn(4, 3, generator=g), "b": torch.randn(3, generator=g)}


def test_ewc_penalty_is_zero_at_the_anchor_and_positive_away():
    anchor = random_params(0)
    fisher = {k: torch.rand(v.shape, generator=torch.Generator().manual_seed(1)) + 0.1
              for k, v in anchor.items()}
    assert ewc_penalty(anchor, [anchor], [fisher], 500.0).item() == 0.0
    moved = {k: v + 0.01 for k, v in anchor.items()}
    value = ewc_penalty(moved, [anchor], [fisher], 500.0)
    expected = 0.5 * 500.0 * sum((fisher[k] * 0.01**2).sum() for k in anchor)
    assert value.item() > 0
    assert value.item() == pytest.approx(expected.item(), rel=1e-4)
    # Zero Fisher entries leave those weights free; no earlier task gives no penalty.
    zero = {k: torch.zeros_like(v) for k, v in anchor.items()}
    assert ewc_penalty(moved, [anchor], [zero], 500.0).item() == 0.0
    assert ewc_penalty(moved, [], [], 500.0).item() == 0.0
    with pytest.raises(ValueError, match="one Fisher per anchor"):
        ewc_penalty(moved, [anchor], [], 1.0)


def test_ewc_penalty_gradient_pulls_towards_the_anchor():
    anchor = random_params(0)
    fisher = {k: torch.ones_like(v) for k, v in anchor.items()}
    moved = {k: (v + 0.5).requires_grad_() for k, v in anchor.items()}
    ewc_penalty(moved, [anchor], [fisher], 2.0).backward()
    for k, p in moved.items():  # d/dθ (λ/2) F (θ - θ*)^2 = λ F (θ - θ*) = 2 * 0.5
        torch.testing.assert_close(p.grad, torch.full_like(anchor[k], 1.0))


def test_diagonal_fisher_matches_a_per_sample_loop():
    stream = tiny_stream(n_tasks=1)
    agent = RehearsalLearner(stream, SMALL, seed=0)
    X = torch.as_tensor(stream.train_set(0)[0][:12])
    fisher = diagonal_fisher(agent.model, X, torch.Generator().manual_seed(3))
    with torch.no_grad():
        probs = torch.softmax(agent.model(X), -1)
    y = torch.multinomial(probs, 1, generator=torch.Generator().manual_seed(3))[:, 0]
    squares = {k: torch.zeros_like(p) for k, p in agent.model.named_parameters()}
    for i in range(len(X)):
        agent.model.zero_grad()
        torch.log_softmax(agent.model(X[i:i + 1]), -1)[0, y[i]].backward()
        for k, p in agent.model.named_parameters():
            squares[k] += p.grad**2 / len(X)
    for k, sq in squares.items():
        torch.testing.assert_close(fisher[k], sq, rtol=1e-4, atol=1e-8)
        assert torch.all(fisher[k] >= 0)


def test_learner_consolidated_penalty_equals_the_sum_over_tasks():
    stream = tiny_stream("none", n_tasks=3, epochs=1)
    agent = EWC(stream, EWCConfig(hidden_sizes=(32,)), seed=0).learn(10**6)
    assert len(agent.anchors) == 3
    params = dict(agent.model.named_parameters())
    direct = ewc_penalty(params, agent.anchors, agent.fishers, agent.config.ewc_lambda)
    torch.testing.assert_close(agent._consolidated_penalty(), direct, rtol=1e-4, atol=1e-6)


def test_ewc_default_lambda_and_effect():
    assert EWCConfig().ewc_lambda == EWC_LAMBDA == 500.0
    assert RehearsalConfig().ewc_lambda == 0.0
    stream = tiny_stream("none", n_tasks=2, epochs=1)
    plain = RehearsalLearner(stream, SMALL, seed=0).learn(10**6)
    ewc = EWC(stream, EWCConfig(hidden_sizes=(64,), ewc_lambda=5000.0), seed=0).learn(10**6)
    # A strong penalty keeps task 0 better than no penalty does.
    assert ewc.accuracy[1, 0] > plain.accuracy[1, 0] + 0.05


# --------------------------------------------------------------------------- learning


def test_learner_learns_a_task_well_above_chance():
    stream = tiny_stream("none", n_tasks=1, epochs=3)
    agent = RehearsalLearner(stream, SMALL, seed=0)
    before = agent.task_accuracy(0)
    agent.learn(10**6)
    assert agent.finished and agent.num_timesteps == stream.total_batches()
    assert before < 0.3  # chance is 0.1
    assert agent.accuracy[0, 0] > 0.85
    assert 0 <= agent.early_accuracy[0] < agent.accuracy[0, 0]


@pytest.mark.parametrize("seed", [0, 1])
def test_rehearsal_reduces_forgetting_versus_none(seed):
    result = {}
    for schedule in ("none", "uniform", "power"):
        agent = RehearsalLearner(tiny_stream(schedule, seed=seed), SMALL, seed=seed)
        agent.learn(10**6)
        result[schedule] = (forgetting(agent.accuracy), average_accuracy(agent.accuracy))
    for schedule in ("uniform", "power"):
        assert result[schedule][0] < result["none"][0] - 0.1
        assert result[schedule][1] > result["none"][1]


def test_accuracy_matrix_and_stopping():
    stream = tiny_stream("power", n_tasks=3, epochs=1)
    agent = RehearsalLearner(stream, SMALL, seed=0)
    agent.learn(stream.n_batches(0))
    assert agent.phase == 1 and np.isfinite(agent.accuracy[0]).all()
    assert np.isnan(agent.accuracy[1]).all()
    stop_after = agent.num_timesteps + 3
    agent.learn(10**6, callback=FunctionCallback(lambda a: a.num_timesteps < stop_after))
    assert agent.num_timesteps == stop_after
    agent.learn(10**6)
    assert agent.finished and np.isfinite(agent.accuracy).all()
    steps = agent.num_timesteps
    agent.learn(5)  # the stream is over: nothing more happens
    assert agent.num_timesteps == steps


def test_predict_shapes_and_errors():
    stream = tiny_stream(n_tasks=1, epochs=1)
    agent = RehearsalLearner(stream, SMALL, seed=0).learn(10**6)
    X, y = stream.test_set(0)
    labels = agent.predict(X)
    assert labels.shape == y.shape and labels.dtype == np.int64
    assert agent.predict(X[0]) == labels[0]
    sampled = agent.predict(X, deterministic=False)
    assert sampled.shape == y.shape and sampled.min() >= 0 and sampled.max() < 10
    # Sampling from the softmax agrees with the argmax as often as the top class is likely.
    top = torch.softmax(agent.logits(X), 1).max(1).values.mean().item()
    assert (sampled == labels).mean() == pytest.approx(top, abs=0.08)
    with pytest.raises(ValueError, match=r"observation must have shape \(64,\)"):
        agent.predict(np.zeros(10))


def test_config_and_argument_errors():
    with pytest.raises(ValueError, match="ewc_lambda must be a finite number >= 0, got -1"):
        EWCConfig(ewc_lambda=-1)
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\), got 1.0"):
        RehearsalConfig(dropout=1.0)
    with pytest.raises(ValueError, match="hidden_sizes must be positive integers"):
        RehearsalConfig(hidden_sizes=(0,))
    with pytest.raises(ValueError, match="fisher_samples must be an integer >= 1, got 0"):
        RehearsalConfig(fisher_samples=0)
    agent = RehearsalLearner(tiny_stream(n_tasks=1, epochs=1), SMALL)
    with pytest.raises(ValueError, match="total_steps must be a positive integer, got 0"):
        agent.learn(0)
    with pytest.raises(TypeError, match="config must be a EWCConfig"):
        EWC(tiny_stream(n_tasks=1, epochs=1), SMALL)


def test_learner_does_not_touch_the_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    RehearsalLearner(tiny_stream(n_tasks=1, epochs=1), SMALL, seed=5)
    torch.testing.assert_close(torch.rand(3), expected)


# --------------------------------------------------------------------------- save / load


@pytest.mark.parametrize("cls, config", [
    (RehearsalLearner, RehearsalConfig(hidden_sizes=(32,), dropout=0.2)),
    (EWC, EWCConfig(hidden_sizes=(32,), dropout=0.2)),
])
def test_save_load_resumes_exactly(tmp_path, cls, config):
    stream = tiny_stream("power", n_tasks=3, epochs=1)
    whole = cls(stream, config, seed=2).learn(10**6)

    part = cls(stream, config, seed=2)
    part.learn(stream.n_batches(0) + stream.n_new_batches() + 2)  # mid-rehearsal of phase 1
    part.save(tmp_path / "ckpt")
    loaded = cls.load(tmp_path / "ckpt")  # stream rebuilt from its saved config
    assert loaded.num_timesteps == part.num_timesteps and loaded.phase == 1
    assert len(loaded.anchors) == len(part.anchors)
    loaded.learn(10**6)

    assert loaded.finished and loaded.num_timesteps == whole.num_timesteps
    np.testing.assert_array_equal(loaded.accuracy, whole.accuracy)
    np.testing.assert_array_equal(loaded.early_accuracy, whole.early_accuracy)
    for (k, a), (_, b) in zip(loaded.model.state_dict().items(), whole.model.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)


def test_load_errors(tmp_path):
    X, y = PermutedTaskStream(n_tasks=1).X_train, PermutedTaskStream(n_tasks=1).y_train
    custom = PermutedTaskStream(n_tasks=2, data=(X, y), epochs=1)
    agent = RehearsalLearner(custom, SMALL).learn(3)
    agent.save(tmp_path / "a")
    with pytest.raises(ValueError, match="pass data="):
        RehearsalLearner.load(tmp_path / "a")
    again = RehearsalLearner.load(tmp_path / "a", env=custom).learn(2)
    assert again.num_timesteps == 5
    with pytest.raises(ValueError, match="trained on a different stream"):
        RehearsalLearner.load(tmp_path / "a", env=tiny_stream(n_tasks=2))
    with pytest.raises(CheckpointError, match="holds a RehearsalLearner checkpoint, not EWC"):
        EWC.load(tmp_path / "a", env=custom)
    with pytest.raises(CheckpointError, match="invalid RehearsalLearner config"):
        RehearsalLearner.load(tmp_path / "a", env=custom, dropout=2.0)
