"""Declared checkpoint contents (maxent.training.saved): the Agent base writes, reads and
validates what an agent declares, refusing a mismatch with an error naming the file and field."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from maxent.entropy.temperature import AutoTemperature, FixedTemperature
from maxent.training.agent import Agent, AgentConfig
from maxent.training.checkpoint import CheckpointError
from maxent.training.saved import (
    Array,
    Check,
    Controller,
    Generator,
    Module,
    NumpyRNG,
    Optimizer,
    Tensor,
    Value,
)


@dataclass
class TinyConfig(AgentConfig):
    """No settings."""


class Tiny(Agent):
    """A small agent declaring one of every kind of entry; ``width`` and ``auto`` change the
    shapes and the temperature's kind, ``stats_dtype`` the dtype of a declared array."""

    config_cls = TinyConfig
    env_kind = "none"
    width = 3
    auto = True
    stats_dtype = np.float64

    def __init__(self, seed: int = 0, **overrides):
        super().__init__(None, None, seed, None, **overrides)
        torch.manual_seed(self.seed)
        self.net = torch.nn.Linear(2, self.width)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=1e-2)
        self.temperature = (AutoTemperature(-1.0, initial_alpha=0.5, lr=1e-2) if self.auto
                            else FixedTemperature(0.5))
        self.generator = torch.Generator().manual_seed(self.seed)
        self.stats = np.zeros(self.width, dtype=self.stats_dtype)
        self.history: list[float] = []
        self.n_updates = 0

    def _saved(self):
        return [
            Check("width", self.width, "width", fix="build it with that width"),
            Module("net", self.net),
            Optimizer("optim", self.optimizer, key=("optimizers", "net")),
            Controller("temperature", self.temperature),
            Generator("rng.torch", self.generator),
            NumpyRNG("rng_numpy", self.np_rng),
            Tensor("stats", self, "stats"),
            Value("n_updates", self, "n_updates", load=int),
            Array("history", self, "history"),
        ]

    def _learn_step(self) -> None:
        x = torch.randn(8, 2, generator=self.generator)
        loss = self.net(x).pow(2).mean()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.temperature.update(entropy=torch.tensor(0.1))
        self.stats += self.np_rng.random(self.width)
        self.history.append(float(loss.detach()))
        self.n_updates += 1
        self.num_timesteps += 1

    def predict(self, observation, deterministic=True):
        return self.net(torch.as_tensor(observation, dtype=torch.float32)).detach().numpy()

    @classmethod
    def _saved_env(cls, ckpt):
        return None

    @classmethod
    def _rebuild(cls, ckpt, env, config, log_dir, **arguments):
        return cls(seed=int(ckpt.state["seed"]))


def test_declared_contents_round_trip_exactly(tmp_path):
    agent = Tiny(seed=3).learn(5)
    path = agent.save(tmp_path / "ck")
    again = Tiny.load(path)
    assert torch.equal(again.net.weight, agent.net.weight)
    assert float(again.temperature.value) == float(agent.temperature.value)
    np.testing.assert_array_equal(again.stats, agent.stats)
    assert again.stats.dtype == np.float64 and again.history == agent.history
    assert again.n_updates == 5 and again.num_timesteps == 5
    # Resuming continues the same stream of numbers: optimiser, RNGs and controller all came back.
    agent.learn(4)
    again.learn(4)
    assert torch.equal(again.net.weight, agent.net.weight)
    np.testing.assert_array_equal(again.stats, agent.stats)
    assert again.history == agent.history


@pytest.mark.parametrize("changes, match", [
    # Same width for the Check, another for the stats array: the tensor check must catch it.
    pytest.param({"_saved": lambda self: [Tensor("stats", self, "stats")], "width": 4},
                 r"weights\.safetensors field 'stats' has shape \(3,\), this agent expects \(4,\)",
                 id="tensor-shape"),
    pytest.param({"stats_dtype": np.float32},
                 r"weights\.safetensors field 'stats' has dtype torch\.float64, this agent expects "
                 r"torch\.float32", id="tensor-dtype"),
    pytest.param({"width": 4, "_saved": lambda self: [Module("net", self.net, changed="width")]},
                 r"weights\.safetensors field 'net\.weight' has shape \(3, 2\), this agent expects "
                 r"\(4, 2\); were width changed", id="module-shape"),
    pytest.param({"width": 4}, "trained with width 3, but this one has 4; build it",
                 id="check-setting"),
    pytest.param({"auto": False},
                 r"state\.json field \['temperature'\] holds a AutoTemperature, but this agent has a "
                 r"FixedTemperature", id="controller-kind"),
])
def test_a_checkpoint_the_changed_class_no_longer_fits_is_refused_naming_what(
        tmp_path, monkeypatch, changes, match):
    path = Tiny().learn(2).save(tmp_path / "ck")
    for name, value in changes.items():
        monkeypatch.setattr(Tiny, name, value)
    with pytest.raises(CheckpointError, match=match):
        Tiny.load(path)


def test_a_missing_optimizer_entry_names_the_file(tmp_path):
    import hashlib
    import json

    path = Tiny().learn(2).save(tmp_path / "ck")
    state = json.loads((path / "state.json").read_text())
    del state["optimizers"]["net"]
    (path / "state.json").write_text(json.dumps(state))
    header = json.loads((path / "config.json").read_text())
    header["files"]["state.json"] = hashlib.sha256((path / "state.json").read_bytes()).hexdigest()
    (path / "config.json").write_text(json.dumps(header))
    with pytest.raises(CheckpointError, match=r"state\.json\['optimizers'\] has no entry 'net'"):
        Tiny.load(path)


def test_nothing_changes_when_validation_fails(tmp_path, monkeypatch):
    """Every entry is validated before any is read: a refused load leaves no half-restored
    agent behind (the agent built inside load is discarded, but a direct _restore shows it)."""
    from maxent.training.checkpoint import load_checkpoint

    path = Tiny(seed=1).learn(3).save(tmp_path / "ck")
    monkeypatch.setattr(Tiny, "auto", False)
    fresh = Tiny(seed=2)
    before = fresh.net.weight.clone()
    with pytest.raises(CheckpointError):
        fresh._restore(load_checkpoint(path), path)
    assert torch.equal(fresh.net.weight, before)


def test_base_initialiser_owns_the_common_state():
    agent = Tiny(seed=7)
    assert agent.seed == 7 and agent.num_timesteps == 0 and agent.logger is None
    assert agent.log_dir is None and agent.env_id is None and agent.episode_returns == []
    assert isinstance(agent.config, TinyConfig)
    assert agent.np_rng.integers(1000) == np.random.default_rng(7).integers(1000)
    with pytest.raises(TypeError, match="config must be a TinyConfig, got object"):
        Agent.__init__(agent, None, config=object())


def _names(path) -> tuple[list[str], list[str]]:
    import json
    import re

    from safetensors.torch import load_file

    tensors = load_file(path / "weights.safetensors")
    state = json.loads((path / "state.json").read_text())
    return sorted({re.sub(r"\.\d+(\.|$)", r".N\1", k) for k in tensors}), sorted(state)


def test_sac_and_bandit_checkpoints_keep_the_names_older_ones_were_written_with(tmp_path):
    """Declared entries must write the names that checkpoints saved before them hold, or those
    would no longer load: the tensor names (indices as N) and state keys are pinned here."""
    from maxent.agents import SAC, UCB1

    sac = SAC("Pendulum-v1", hidden_sizes=(8,), batch_size=8, learning_starts=10, buffer_size=100,
              compile=False).learn(20)
    tensors, state = _names(sac.save(tmp_path / "sac"))
    assert tensors == [
        "actor.net.N.bias", "actor.net.N.weight", "critic.biases.N", "critic.head_bias",
        "critic.head_weight", "critic.weights.N", "critic_target.biases.N", "critic_target.head_bias",
        "critic_target.head_weight", "critic_target.weights.N", "episode.actions.N",
        "optimizer.state.N.exp_avg", "optimizer.state.N.exp_avg_sq", "optimizer.state.N.step",
        "rng.torch", "temperature.exp_avg", "temperature.exp_avg_sq", "temperature.log_alpha",
        "temperature.step"]
    assert state == [
        "action_shape", "env_description", "env_id", "episode_length", "episode_lengths", "episode_replayable",
        "episode_return", "episode_returns", "episode_seeds", "in_flight", "n_updates",
        "num_timesteps", "observation_shape", "optimizer", "rng_numpy", "seed", "temperature",
        "vector_steps"]
    tensors, state = _names(UCB1("maxent/HomeostaticBandit-v0").learn(20).save(tmp_path / "ucb"))
    assert tensors == ["arm_counts", "reward_sq_sums", "reward_sums"]
    assert state == ["env_description", "env_id", "episode_returns", "n_arms", "num_timesteps", "rng_numpy", "seed"]
