"""The helpers of benchmarks/multiturn_evidence.py: held-out reset seeds never drawn in training,
the in-context agent's view of the tool task (whole episode, validity of calls and answers), bandit regret
and the seeds x episodes bootstrap."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "multiturn_evidence.py"
spec = importlib.util.spec_from_file_location("multiturn_evidence", SCRIPT)
evidence = importlib.util.module_from_spec(spec)
spec.loader.exec_module(evidence)

CHATML = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
          "{{ '<|im_start|>system\nYou are a helpful AI assistant<|im_end|>\n' }}{% endif %}"
          "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def test_training_seeds_mirror_the_rollout_and_held_out_ones_avoid_them():
    train = evidence.training_seeds(3, steps=4, groups=2)
    expected = {int(s) for step in range(4)
                for s in np.random.default_rng([3, step, 0, 0]).integers(2**31, size=2)}
    assert train == expected and len(train) == 8
    held = evidence.held_out_seeds(3, 16, train)
    assert len(set(held)) == 16 and not set(held) & train
    # a collision is skipped, not kept
    first = evidence.held_out_seeds(3, 1, set())[0]
    assert first not in evidence.held_out_seeds(3, 4, {first})


def test_history_view_gives_the_in_context_agent_the_whole_episode_and_reads_validity():
    import maxent.envs  # noqa: F401  (registers the ids)

    env = evidence.history_view(evidence.make_env("maxent/ToolArithmetic-v0", 0))
    first, _ = env.reset(seed=5)
    question = first.splitlines()[-2]  # "What is a + b?"
    expression = question[len("What is "):-1]
    call = '<tool_call>{"name": "calculate", "arguments": {"expression": "%s"}}</tool_call>' % expression
    assert env.parse_action(call) is not None and not env.after_tool
    assert env.parse_action('<tool_call>{"name": "nope", "arguments": {}}</tool_call>') is None
    obs, reward, terminated, _, info = env.step(call)
    answer = env.unwrapped._target
    assert obs.startswith(first) and obs.endswith(f"Tool result: {answer}") and env.after_tool
    assert reward == 0.0 and not terminated
    assert env.parse_action("no number here") is None and env.parse_action(f"It is {answer}.") == answer
    _, reward, terminated, _, info = env.step(f"The answer is {answer}.")
    assert reward == 1.0 and terminated and info["correct"]


def test_bandit_regret_counts_rounds_without_a_valid_pull_as_random():
    means = np.array([95.0, 105.0])
    infos = [{"pulled": 1, "invalid": False}, {"pulled": 0, "invalid": False},
             {"pulled": -1, "invalid": True}]
    row = evidence.episode_row("maxent/TextBanditChat-v0", "p", 0, 0, 1, [105.0, 95.0, 0.0],
                               infos, 5, means, 3, 0, 0)
    # one wrong pull (10) and three rounds without a valid pull (5 each)
    assert row["regret"] == pytest.approx(25.0) and row["valid_rate"] == pytest.approx(0.4)
    tool = evidence.episode_row("maxent/ToolArithmetic-v0", "p", 0, 0, 1, [1.0],
                                [{"correct": True}], 5, None, 1, 0, 0)
    assert tool["success"] == 1.0


def test_bootstrap_interval_covers_the_mean_and_widens_with_seed_spread():
    rng = np.random.default_rng(0)
    groups = np.repeat([0, 1, 2], 20)
    tight = rng.normal(0, 1, 60)
    spread = tight + np.repeat([-5.0, 0.0, 5.0], 20)
    lo, hi = evidence.bootstrap_ci(tight, groups, n=2000)
    assert lo < tight.mean() < hi
    lo2, hi2 = evidence.bootstrap_ci(spread, groups, n=2000)
    assert hi2 - lo2 > 2 * (hi - lo)


def test_calculator_rows_are_split_by_the_sign_of_their_answer():
    import gymnasium as gym

    import maxent.envs  # noqa: F401  (registers the ids)

    env = gym.make("maxent/ToolArithmetic-v0")
    signs = {}
    for seed in range(40):
        env.reset(seed=seed)
        signs[seed] = env.unwrapped._target < 0
    assert set(signs.values()) == {True, False}  # both kinds occur in these seeds
    rows = [{"env": "maxent/ToolArithmetic-v0", "reset_seed": str(s), "success": "1.0"} for s in signs]
    rows.append({"env": "maxent/TextBanditChat-v0", "reset_seed": "0", "success": "nan"})
    evidence.split_by_sign(rows)
    for row, (seed, negative) in zip(rows, signs.items()):
        assert row["success_answer_lt_0" if negative else "success_answer_ge_0"] == "1.0"
        assert row["success_answer_ge_0" if negative else "success_answer_lt_0"] == ""
    assert rows[-1]["success_answer_lt_0"] == rows[-1]["success_answer_ge_0"] == ""
