"""The helpers of benchmarks/multiturn_evidence.py: held-out reset seeds never drawn in training,
the prefilled chat template keeps conversations prefixes of their continuations, bandit regret
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


def test_prefilled_template_opens_every_assistant_turn_and_stays_a_prefix():
    jinja2 = pytest.importorskip("jinja2")
    template = jinja2.Template(evidence.prefilled_template(CHATML, "Action: I'm Button"))
    user = [{"role": "user", "content": "u"}]
    asked = template.render(messages=user, add_generation_prompt=True)
    replied = template.render(messages=[*user, {"role": "assistant", "content": " 1."}],
                              add_generation_prompt=False)
    assert asked.endswith("<|im_start|>assistant\nAction: I'm Button")
    assert replied.startswith(asked + " 1.")
    with pytest.raises(ValueError, match="ChatML"):
        evidence.prefilled_template("{{ messages }}", "x")


def test_bandit_regret_counts_rounds_without_a_valid_pull_as_random():
    means = np.array([95.0, 105.0])
    infos = [{"pulled": 1, "invalid": False}, {"pulled": 0, "invalid": False},
             {"pulled": -1, "invalid": True}]
    row = evidence.episode_row("maxent/TextBanditChat-v0", "p", 0, 0, 1, [105.0, 95.0, 0.0],
                               infos, 5, means, 3, 0)
    # one wrong pull (10) and three rounds without a valid pull (5 each)
    assert row["regret"] == pytest.approx(25.0) and row["valid_rate"] == pytest.approx(0.4)
    tool = evidence.episode_row("maxent/ToolArithmetic-v0", "p", 0, 0, 1, [1.0],
                                [{"correct": True}], 5, None, 1, 0)
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
