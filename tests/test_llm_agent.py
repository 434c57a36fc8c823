"""Tests for agents/llm_agent.py: empirical action entropy, batched decisions with activation
logging, EAST steering through the agent, save/load, and bad input. A tiny random model cannot
write "Action: Button 1", so the environments here read the parity of the first generated
character as the arm: every completion parses and the action entropy is meaningful."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from maxent import llm
from maxent.agents.llm_agent import LLMAgent, LLMAgentConfig, action_distribution, empirical_entropy
from maxent.training.checkpoint import CheckpointError
from maxent.envs.text import make_arithmetic
from maxent.envs.text_bandit import TextBandit, TextBanditVector

PREFIX = "Action: "


class ParityVector(TextBanditVector):
    def parse_action(self, completion):
        tail = completion[len(PREFIX):]
        return ord(tail[0]) % 2 if tail else None


class ParityBandit(TextBandit):
    def parse_action(self, completion):
        tail = completion[len(PREFIX):]
        return ord(tail[0]) % 2 if tail else None


@pytest.fixture(scope="module")
def model_and_tokenizer():
    tok = llm.build_char_tokenizer()
    return llm.build_tiny_model(tok, hidden_size=32, num_layers=2, num_heads=4, max_positions=1024,
                               seed=0), tok


def make_agent(model_and_tokenizer, env=None, **overrides):
    model, tok = model_and_tokenizer
    env = env if env is not None else ParityVector(2, horizon=2, show_format=False)
    kwargs = {"n_samples": 6, "max_new_tokens": 2, "response_prefix": PREFIX,
              "log_layers": [0, 1], "steering_layer": 1}
    kwargs.update(overrides)
    return LLMAgent(env, model, tokenizer=tok, seed=0, **kwargs)


def test_empirical_entropy_hand_case():
    parsed = ["A", "A", "B", None]
    assert action_distribution(parsed) == {"A": 2 / 3, "B": 1 / 3}
    expected = -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3))
    assert empirical_entropy(parsed) == pytest.approx(expected, abs=1e-12)
    assert empirical_entropy([1, 1, 1]) == 0.0
    assert empirical_entropy([0, 1, 2, 3]) == pytest.approx(math.log(4))
    assert math.isnan(empirical_entropy([None, None]))


def test_decide_is_batched_parsed_and_seeded(model_and_tokenizer):
    agent = make_agent(model_and_tokenizer)
    prompts = ["You see a red button.", "You see a green button and a blue one."]
    d = agent.decide(prompts, seed=3)
    assert len(d.completions) == 2 and all(len(g) == 6 for g in d.completions)
    assert all(c.startswith(PREFIX) for g in d.completions for c in g)
    for b in range(2):
        assert d.entropy[b] == pytest.approx(empirical_entropy(d.parsed[b]))
        assert d.chosen[b] in d.completions[b]
    assert d.activations[0].shape == (2, 32) and d.activations[1].shape == (2, 32)
    again = agent.decide(prompts, seed=3)
    assert again.completions == d.completions
    # The activations logged during generate are the last-prompt-token residual stream.
    from maxent.llm import steering
    ids, mask = llm.left_pad(agent._encode(prompts), 0)
    ref = steering.last_token_activations(agent.model, ids, mask, layers=[1])[0]
    torch.testing.assert_close(d.activations[1], ref, atol=1e-4, rtol=1e-4)
    # Sharing the prompt pass across samples gives the same completions as not sharing it.
    plain = make_agent(model_and_tokenizer, share_prefill=False)
    assert plain.decide(prompts, seed=3).completions == d.completions
    assert plain.predict(prompts[0]) == agent.predict(prompts[0])


def test_a_decisions_own_prefix_replaces_the_configs(model_and_tokenizer):
    agent = make_agent(model_and_tokenizer)
    prompts = ["You see a red button."]
    d = agent.decide(prompts, seed=3, response_prefix="Answer: ")
    assert all(c.startswith("Answer: ") and not c.startswith(PREFIX) for c in d.completions[0])
    # The model was asked to continue the new prefix: its prompt ends with those tokens.
    assert agent._encode(prompts, "Answer: ")[0][-len("Answer: "):] == \
        agent.tokenizer("Answer: ", add_special_tokens=False)["input_ids"]
    assert agent.decide(prompts, seed=3).completions == make_agent(
        model_and_tokenizer).decide(prompts, seed=3).completions  # the config's prefix is kept
    with pytest.raises(ValueError, match="response_prefix must be a string"):
        agent.decide(prompts, response_prefix=1)


def test_learn_logs_entropy_regret_invalid_and_activations(model_and_tokenizer):
    agent = make_agent(model_and_tokenizer)
    agent.learn(8)
    assert agent.num_timesteps == 8 and len(agent.runs) == 4
    run = agent.runs[0]
    assert run["activations"].shape == (2, 2, 32)
    assert np.all(np.isfinite(run["entropy"])) and np.all(run["entropy"] <= math.log(2) + 1e-12)
    assert set(np.concatenate([r["action"] for r in agent.runs])) <= {0, 1}
    assert np.all(np.concatenate([r["regret"] for r in agent.runs]) >= 0)
    s = agent.summary()
    assert s["valid_fraction"] > 0.8 and s["episodes"] == 4  # an eos as first token: unparsed
    assert s["invalid_rate"] == np.mean(np.concatenate([r["invalid"] for r in agent.runs]))
    assert 0 < s["action_entropy"] <= math.log(2)
    u = agent.east_vector()
    assert u.shape == (32,) and torch.isfinite(u).all() and u.norm() > 0
    with pytest.raises(ValueError, match="was not logged"):
        make_agent(model_and_tokenizer, log_layers=[0]).east_vector(1)


def test_steering_through_the_agent_changes_behaviour_and_zero_beta_does_not(model_and_tokenizer):
    agent = make_agent(model_and_tokenizer)
    prompts = ["Round 1 of 2: which button do you press?"] * 2
    base = agent.decide(prompts, seed=1).completions
    agent.set_steering(torch.ones(32), beta=0.0)
    assert agent.decide(prompts, seed=1).completions == base
    agent.set_steering(torch.randn(32, generator=torch.Generator().manual_seed(0)), beta=40.0)
    assert agent.decide(prompts, seed=1).completions != base
    assert all(not layer._forward_hooks for layer in agent.model.model.layers)
    with pytest.raises(ValueError, match=r"shape \(32,\)"):
        agent.set_steering(torch.ones(7))
    with pytest.raises(ValueError, match="valid indices are 0..1"):
        agent.set_steering(layer=5)


def test_single_env_and_generic_text_task(model_and_tokenizer):
    agent = make_agent(model_and_tokenizer, env=ParityBandit(horizon=2, show_format=False))
    agent.learn(3)
    assert len(agent.runs) == 1 and agent.num_timesteps == 3
    # Any text env with a parser: arithmetic answers are parsed by task.parse (mostly None here).
    task_agent = make_agent(model_and_tokenizer, env=make_arithmetic(), response_prefix="")
    task_agent.learn(2)
    assert len(task_agent.runs) == 2
    assert np.isnan(task_agent.runs[0]["regret"]).all()  # that env reports no regret


def test_save_load_round_trip_and_learning_continues(model_and_tokenizer, tmp_path):
    agent = make_agent(model_and_tokenizer)
    agent.learn(4)
    agent.set_steering(agent.east_vector(), beta=1.5)
    path = agent.save(tmp_path / "agent")
    loaded = LLMAgent.load(path, env=ParityVector(2, horizon=2, show_format=False))
    assert loaded.config == agent.config and loaded.config.steering_beta == 1.5
    assert torch.equal(loaded.steering_vector, agent.steering_vector)
    assert len(loaded.runs) == len(agent.runs) == 2
    for a, b in zip(agent.runs, loaded.runs):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    for (name, p), q in zip(agent.model.named_parameters(), loaded.model.parameters()):
        assert torch.equal(p, q), name
    prompts = ["Round 1 of 2: which button do you press?"]
    assert loaded.decide(prompts, seed=5).completions == agent.decide(prompts, seed=5).completions
    loaded.learn(4)
    assert loaded.num_timesteps == 8 and len(loaded.runs) == 4
    with pytest.raises(CheckpointError, match="invalid LLMAgent config"):
        LLMAgent.load(path, env=ParityVector(2, horizon=2), n_samples=0)


def test_bad_input(model_and_tokenizer):
    with pytest.raises(ValueError, match="n_samples must be an int >= 1"):
        LLMAgentConfig(n_samples=0)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        LLMAgentConfig(temperature=0.0)
    with pytest.raises(ValueError, match="must contain '{observation}'"):
        LLMAgentConfig(prompt_template="no placeholder")
    agent = make_agent(model_and_tokenizer)
    with pytest.raises(ValueError, match="total_steps must be a positive integer"):
        agent.learn(0)
    with pytest.raises(ValueError, match="log is empty"):
        agent.east_vector()
    with pytest.raises(ValueError, match="non-empty list of prompt strings"):
        agent.decide([])
    with pytest.raises(TypeError, match="no parse_action"):
        import gymnasium as gym

        LLMAgent(gym.make("CartPole-v1"), *model_and_tokenizer[:1],
                 tokenizer=model_and_tokenizer[1])
    model, _ = model_and_tokenizer
    with pytest.raises(ValueError, match="needs its tokenizer"):
        LLMAgent(ParityVector(1), model)
