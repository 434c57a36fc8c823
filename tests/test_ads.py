"""Tests for agents/ads.py: the diffusion prior, guided posterior particles and the acquisition
rules of Active Diffusion Subsampling (Nolan et al., TMLR 2025)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from maxent.training.agent import FunctionCallback, evaluate
from maxent.agents.ads import ADS, ADSConfig
from maxent.training.checkpoint import CheckpointError
from maxent.envs.subsampling import MeasurementAcquisition

TINY = {"hidden": 128, "n_layers": 2, "sample_steps": 25, "batch_size": 128, "n_particles": 8}
TRAIN_STEPS = 1000


@pytest.fixture(scope="module")
def env():
    return MeasurementAcquisition(budget=16)


@pytest.fixture(scope="module")
def trained(env, tmp_path_factory):
    """A denoiser trained for a few seconds, saved once; tests load their own copies."""
    torch.set_num_threads(1)
    agent = ADS(env, ADSConfig(**TINY), seed=0).learn(TRAIN_STEPS)
    path = tmp_path_factory.mktemp("ads") / "model"
    agent.save(path)
    return agent, path


def random_mask(rng, k, shape=(8, 8)):
    m = np.zeros(shape[0] * shape[1])
    m[rng.permutation(m.size)[:k]] = 1
    return m.reshape(shape)


def test_config_and_call_errors_name_the_value(env, trained):
    with pytest.raises(ValueError, match="ADSConfig.n_particles must be an integer >= 1, got 0"):
        ADSConfig(n_particles=0)
    with pytest.raises(ValueError, match="ADSConfig.strategy must be one of .*got 'max'"):
        ADSConfig(strategy="max")
    with pytest.raises(ValueError, match="ADSConfig.sigma must be a positive number, got -1"):
        ADSConfig(sigma=-1.0)
    with pytest.raises(ValueError, match="sample_steps \\(2000\\) must be <= train_timesteps"):
        ADSConfig(sample_steps=2000)
    agent = ADS.load(trained[1], env=env)
    y = np.zeros((8, 8))
    with pytest.raises(ValueError, match="n_particles must be an integer >= 1, got 0"):
        agent.posterior(y, y, n_particles=0)
    with pytest.raises(ValueError, match=r"mask must have shape \(8, 8\) \(1 = measured\), got \(64,\)"):
        agent.posterior(y, np.zeros(64))
    with pytest.raises(ValueError, match=r"measurements must have shape \(8, 8\), got \(7, 8\)"):
        agent.predict({"measurements": np.zeros((7, 8)), "mask": y})
    with pytest.raises(ValueError, match="mask must hold only 0 and 1"):
        agent.posterior(y, np.full((8, 8), 0.5))
    with pytest.raises(ValueError, match="total_steps must be a positive integer, got 0"):
        agent.learn(0)
    with pytest.raises(ValueError, match=r"images are 28x28 but the env observes \(8, 8\)"):
        ADS(env, ADSConfig(**TINY), images=np.zeros((5, 28, 28), np.uint8))
    with pytest.raises(TypeError, match="got dtype int64"):
        ADS(env, ADSConfig(**TINY), images=np.zeros((5, 8, 8), np.int64))


def test_training_reduces_the_denoising_loss(trained):
    losses = trained[0].losses
    assert len(losses) == TRAIN_STEPS // 100
    assert losses[-1] < 0.6 * losses[0]


def test_every_pixel_measured_returns_the_image(env, trained):
    """DPS guidance alone (no hard replacement) pulls every particle onto the measured image."""
    agent = ADS.load(trained[1], env=env, hard_consistency=False)
    g = torch.Generator().manual_seed(0)
    for x in env.test_images[:4]:
        particles = agent.posterior(x, np.ones((8, 8)), generator=g)
        assert np.abs(particles - x).mean() < 0.05  # unconditional samples are ~0.25 off
    prior = agent.posterior(np.zeros((8, 8)), np.zeros((8, 8)), generator=g)
    assert np.abs(prior - env.test_images[0]).mean() > 0.1


def test_guided_error_falls_as_measurements_grow(env, trained):
    agent = ADS.load(trained[1], env=env)
    rng = np.random.default_rng(0)
    errors = {k: [] for k in (0, 16, 40)}
    for x in env.test_images[:8]:
        for k, errs in errors.items():
            m = random_mask(rng, k)
            g = torch.Generator().manual_seed(k)
            errs.append(np.abs(agent.reconstruct(x * m, m, generator=g) - x).mean())
    e0, e16, e40 = (np.mean(errors[k]) for k in (0, 16, 40))
    assert e16 < 0.85 * e0 and e40 < 0.7 * e16


def test_entropy_rule_picks_where_particles_disagree(env, trained):
    agent = ADS.load(trained[1], env=env)
    particles = np.full((8, 8, 8), 0.3)
    particles[:, 2, 5] = np.linspace(0, 1, 8)  # the one pixel the particles disagree on
    particles[:, 6, 1] = np.linspace(0.4, 0.6, 8)
    for strategy in ("ads", "gmm"):
        agent.config.strategy = strategy
        scores = agent.location_scores(particles)
        assert scores.shape == (64,)
        assert np.argsort(scores)[-1] == 2 * 8 + 5 and np.argsort(scores)[-2] == 6 * 8 + 1


def test_predict_acquires_only_unmeasured_locations(env, trained):
    for strategy in ("ads", "random", "data_variance"):
        agent = ADS.load(trained[1], env=env, strategy=strategy, n_particles=4)
        e = MeasurementAcquisition(budget=12)
        obs, _ = e.reset(seed=1)
        seen = []
        for _ in range(12):
            a = agent.predict(obs)
            assert isinstance(a, int) and a not in seen
            seen.append(a)
            obs, _, done, _, info = e.step(a)
            assert not info["repeated"]
        assert done
        if strategy == "data_variance":  # a fixed mask: highest training variance first
            order = np.argsort(-e.train_images.var(0).reshape(-1), kind="stable")[:12]
            assert seen == order.tolist()
    batch = {"measurements": np.zeros((3, 8, 8)), "mask": np.zeros((3, 8, 8))}
    assert agent.predict(batch).shape == (3,)


def test_ads_beats_random_masks_on_held_out_digits(env, trained):
    """The claim in miniature: 12 maximum-entropy measurements reconstruct held-out digits
    better than 12 random ones (paired over digits, same reconstruction noise)."""
    ads = ADS.load(trained[1], env=env, n_particles=8)
    rnd = ADS.load(trained[1], env=env, strategy="random")
    diffs = []
    for i in range(6):
        maes = []
        for agent in (ads, rnd):
            e = MeasurementAcquisition(budget=12)
            obs, _ = e.reset(options={"index": i})
            for _ in range(12):
                obs = e.step(agent.predict(obs))[0]
            g = torch.Generator().manual_seed(i)
            maes.append(np.abs(ads.reconstruct(obs["measurements"], obs["mask"], 8, g)
                               - e.image).mean())
        diffs.append(maes[0] - maes[1])
    assert np.mean(diffs) < 0 and sum(d < 0 for d in diffs) >= 4


def test_line_mode_scores_rows(trained):
    line_env = MeasurementAcquisition(mode="line", budget=4)
    agent = ADS.load(trained[1], env=line_env, n_particles=4)
    particles = np.full((4, 8, 8), 0.5)
    particles[:, 3, :] = np.linspace(0, 1, 4)[:, None]
    assert agent.location_scores(particles).argmax() == 3
    returns = evaluate(agent, line_env, n_episodes=1)
    assert returns.shape == (1,) and np.isfinite(returns).all()
    mask = np.zeros((8, 8))
    mask[[0, 5]] = 1
    assert agent.predict({"measurements": mask * 0, "mask": mask}) not in (0, 5)


def test_save_load_bit_identical_and_learning_continues(env, trained, tmp_path):
    a = ADS.load(trained[1], env=env)
    a.learn(20)
    a.save(tmp_path / "a")
    b = ADS.load(tmp_path / "a", env=env)
    for name, sd_a, sd_b in (("model", a.model.state_dict(), b.model.state_dict()),
                             ("ema", a.ema.state_dict(), b.ema.state_dict())):
        for k in sd_a:
            assert torch.equal(sd_a[k], sd_b[k]), f"{name}.{k}"
    assert b.num_timesteps == a.num_timesteps == TRAIN_STEPS + 20 and b.losses == a.losses
    # Same sampler stream: identical particles and decisions; same training stream after load.
    y, m = env.test_images[0], random_mask(np.random.default_rng(0), 10)
    np.testing.assert_array_equal(a.posterior(y * m, m), b.posterior(y * m, m))
    a.learn(10)
    b.learn(10)
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(pa, pb)
    stops = []
    b.learn(50, callback=FunctionCallback(lambda ag: stops.append(1) or len(stops) < 5))
    assert b.num_timesteps == TRAIN_STEPS + 35
    with pytest.raises(CheckpointError, match="invalid ADS config"):
        ADS.load(tmp_path / "a", env=env, n_particles=0)
    with pytest.raises(ValueError, match="pass env=..."):
        ADS.load(tmp_path / "a")
