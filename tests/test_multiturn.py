"""Multi-turn GRPO (maxent/llm/rollout.py, maxent/llm/tools.py, agents/grpo_multiturn.py, envs/
tool_env.py, envs/text_wrappers.py): transcripts keep the sampled tokens exactly with a loss mask
on them alone, groups share their reset seed, tools are called (and fail) as observations, TRL's
environment_factory classes run unchanged, runs resume exactly, the built-in tasks pass the
checkers, bad input gets clear errors, and training moves the policy towards reward."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env as gym_check_env

pytest.importorskip("transformers")
pytest.importorskip("accelerate")

import maxent.envs  # noqa: F401,E402  (registers the ids)
from maxent import llm  # noqa: E402
from maxent.agents.grpo import GRPO, GRPOConfig  # noqa: E402
from maxent.agents.grpo_multiturn import episode_advantages, process_advantages  # noqa: E402
from maxent.envs.text import CHARSET  # noqa: E402
from maxent.envs.tool_env import EnvironmentFactoryEnv, ToolArithmetic, calculate  # noqa: E402
from maxent.llm.rollout import (  # noqa: E402
    ChatFormat,
    Episode,
    RolloutLimits,
    collect_episodes,
    transcript_batch,
)
from maxent.llm.samplers import completions_from_rows  # noqa: E402
from maxent.llm.tools import ToolBox  # noqa: E402
from scripted_sampler import Scripted  # noqa: E402

SMALL = {"device": "cpu", "tiny_hidden_size": 32, "tiny_layers": 1, "tiny_heads": 2,
         "group_size": 4, "prompts_per_step": 2, "max_new_tokens": 4, "max_turns": 5,
         "max_episode_tokens": 64, "learning_rate": 1e-2, "mask_truncated": False,
         "log_completions_every": 0}


class LetterEnv(gym.Env):
    """``turns`` turns; each reply earns the share of its characters that are 'a'. Records the
    seeds it was reset with."""

    def __init__(self, turns: int = 3, fail_at: int | None = None):
        self.turns, self.fail_at = turns, fail_at
        self.observation_space = spaces.Text(64, charset=CHARSET)
        self.action_space = spaces.Text(64, charset=CHARSET)
        self.seeds: list = []

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.seeds.append(seed)
        self.t = 0
        return f"go {int(self.np_random.integers(10))}", {}

    def step(self, action):
        self.t += 1
        if self.fail_at is not None and self.t == self.fail_at:
            raise KeyError("broken step")
        reward = action.count("a") / max(len(action), 1)
        return f"t{self.t}", reward, False, self.t >= self.turns, {"invalid": "?" in action}


class Recorder:
    """A sampler that records every call's prompts and replies."""

    def __init__(self, inner):
        self.inner, self.eos_ids, self.calls = inner, inner.eos_ids, []

    def generate(self, prompt_ids, **kwargs):
        out = self.inner.generate(prompt_ids, **kwargs)
        self.calls.append(([list(p) for p in prompt_ids],
                           [row[m].tolist() for row, m in zip(out.ids, out.mask)]))
        return out


@pytest.fixture(scope="module")
def tiny():
    tokenizer = llm.build_char_tokenizer()
    model = llm.build_tiny_model(tokenizer, hidden_size=32, num_layers=1, num_heads=2, seed=0)
    return model, tokenizer


def _play(tiny, envs, seeds, limits=None, **kwargs):
    model, tokenizer = tiny
    sampler = Recorder(llm.HFSampler(model, tokenizer))
    fmt = ChatFormat(tokenizer, sampler.eos_ids, toolbox=kwargs.get("toolbox"))
    episodes = collect_episodes(sampler, fmt, envs, seeds, limits or RolloutLimits(
        max_turns=5, max_new_tokens=4, max_episode_tokens=64), **kwargs)
    return episodes, sampler, fmt


def test_transcript_mask_covers_exactly_the_sampled_tokens(tiny):
    envs = [LetterEnv() for _ in range(4)]
    episodes, sampler, fmt = _play(tiny, envs, [11, 12])
    assert len(sampler.calls) == 3  # one batched call per turn over all live episodes
    assert all(len(prompts) == 4 for prompts, _ in sampler.calls)
    for i, ep in enumerate(episodes):
        assert ep.turns == 3 and ep.truncated and len(ep.rewards) == 3
        generated = [t for t, g in zip(ep.ids, ep.generated) if g]
        assert generated == [tok for _, replies in sampler.calls for tok in replies[i]]
        # Each turn the model saw exactly the transcript so far, and its reply follows it.
        for turn, (prompts, replies) in enumerate(sampler.calls):
            seen = prompts[i] + replies[i]
            assert ep.ids[:len(seen)] == seen
            assert ep.turn_of[len(prompts[i]):len(seen)] == [turn] * len(replies[i])
    rows = transcript_batch(episodes, tiny[1].pad_token_id)
    for b, ep in enumerate(episodes):
        real = rows.input_ids[b][rows.attention_mask[b].bool()].tolist()
        assert real == ep.ids  # the training sequence is the transcript, token for token
        P = rows.input_ids.shape[1] - rows.loss_mask.shape[1]
        trained = rows.input_ids[b, P:][rows.loss_mask[b].bool()].tolist()
        assert trained == [t for t, g in zip(ep.ids, ep.generated) if g]
        assert rows.loss_mask[b].sum() == sum(ep.reply_tokens)


def test_group_shares_its_reset_seed(tiny):
    envs = [LetterEnv(turns=1) for _ in range(6)]
    episodes, _, _ = _play(tiny, envs, [5, 6, 7])
    assert [env.seeds for env in envs] == [[5], [5], [6], [6], [7], [7]]
    assert [ep.group for ep in episodes] == [0, 0, 1, 1, 2, 2]
    assert episodes[0].ids[:episodes[0].prompt_length] == episodes[1].ids[:episodes[1].prompt_length]


def test_plain_format_appends_observation_deltas(tiny):
    _, tokenizer = tiny
    fmt = ChatFormat(tokenizer, {tokenizer.eos_token_id})
    enc = lambda s: tokenizer(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    assert fmt.first("hi") == enc("hi\n")
    assert fmt.delta("user", "next", reply_closed=True) == enc("next\n")
    assert fmt.delta("tool", "4", reply_closed=False) == [tokenizer.eos_token_id] + enc("Tool: 4\n")


def test_chat_template_deltas_equal_the_rendered_conversation(tiny):
    _, tokenizer = tiny
    tokenizer = llm.tokenizer_from_state(llm.tokenizer_to_state(tokenizer))
    tokenizer.chat_template = ("{% for m in messages %}[{{ m.role }}]{{ m.content }}<eos>\n"
                               "{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}")
    fmt = ChatFormat(tokenizer, {tokenizer.eos_token_id})
    enc = lambda s: tokenizer(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    reply = enc("ok") + [tokenizer.eos_token_id]
    ids = fmt.first("hi") + reply + fmt.delta("user", "more", reply_closed=True)
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"},
                {"role": "user", "content": "more"}]
    assert ids == enc(tokenizer.apply_chat_template(messages, tokenize=False,
                                                     add_generation_prompt=True))
    # A reply cut before its eos gets the template's end of turn, outside the loss.
    cut = fmt.first("hi") + enc("ok") + fmt.delta("user", "more", reply_closed=False)
    assert cut == ids


def test_reply_stopped_by_another_eos_still_gets_the_templates_end_of_turn(tiny):
    # Models with several eos ids (Qwen2.5: <|endoftext|> beside <|im_end|>) can stop a reply on
    # one that is not the template's end of turn; the next message must still follow a closed
    # turn, as the template renders it.
    _, tokenizer = tiny
    tokenizer = llm.tokenizer_from_state(llm.tokenizer_to_state(tokenizer))
    tokenizer.chat_template = ("{% for m in messages %}[{{ m.role }}]{{ m.content }}<eos>\n"
                               "{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}")
    other = tokenizer.unk_token_id
    enc = lambda s: tokenizer(s, add_special_tokens=False)["input_ids"]  # noqa: E731

    class OtherEos:
        eos_ids = {tokenizer.eos_token_id, other}

        def generate(self, prompt_ids, *, max_new_tokens, **kwargs):
            rows = [enc("ok") + [other]] * len(prompt_ids)
            return completions_from_rows(rows, tokenizer, self.eos_ids, max_new_tokens)

    fmt = ChatFormat(tokenizer, OtherEos.eos_ids)
    assert fmt.delta("user", "more", True, last_token=other) == enc("<eos>\n[user]more<eos>\n"
                                                                     "[assistant]")
    assert fmt.delta("user", "more", True) == enc("\n[user]more<eos>\n[assistant]")
    [ep] = collect_episodes(OtherEos(), fmt, [LetterEnv(turns=2)], [0],
                            RolloutLimits(max_turns=2, max_new_tokens=4, max_episode_tokens=256))
    text = tokenizer.decode(ep.ids, skip_special_tokens=False)
    assert "[assistant]ok<unk><eos>\n[user]t1<eos>\n[assistant]ok<unk>" in text
    assert [t for t, g in zip(ep.ids, ep.generated) if g] == 2 * (enc("ok") + [other])


def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: the first.
        b: the second.
    """
    return a + b


def explode(x: int) -> int:
    """Raise, always."""
    raise ZeroDivisionError("boom")


def test_tool_result_is_in_the_next_turns_input(tiny):
    _, tokenizer = tiny
    sampler = Scripted(tokenizer, ['<tool_call>{"name": "add", "arguments": {"a": 20, "b": 22}}'
                                   '</tool_call>', "aaaa"])
    toolbox = ToolBox([add])
    fmt = ChatFormat(tokenizer, sampler.eos_ids, toolbox=toolbox)
    env = LetterEnv(turns=1)
    [ep] = collect_episodes(sampler, fmt, [env], [0], RolloutLimits(max_turns=4, max_episode_tokens=1024),
                            toolbox=toolbox)
    assert "add(a: integer, b: integer)" in tokenizer.decode(sampler.prompts[0][0])
    assert tokenizer.decode(sampler.prompts[1][0]).endswith("Tool: 42\n")
    assert ep.tool_calls == 1 and ep.tool_errors == 0 and ep.env_step == [False, True]
    assert ep.rewards == [0.0, 1.0] and ep.turns == 2 and env.t == 1  # the tool did not step the env


@pytest.mark.parametrize("reply, message", [
    ('<tool_call>{"name": "explode", "arguments": {"x": 1}}</tool_call>',
     "error: explode raised ZeroDivisionError: boom"),
    ("<tool_call>{not json</tool_call>", "error: the tool call is not valid JSON"),
    ('<tool_call>{"name": "nope", "arguments": {}}</tool_call>', "error: no tool named 'nope'"),
    ('<tool_call>{"name": "add", "arguments": {"a": 1}}</tool_call>', "error: bad arguments for add"),
])
def test_failing_tool_calls_come_back_as_error_messages(tiny, reply, message):
    _, tokenizer = tiny
    sampler = Scripted(tokenizer, [reply] * 3 + ["done"])
    toolbox = ToolBox([add, explode])
    fmt = ChatFormat(tokenizer, sampler.eos_ids, toolbox=toolbox)
    [ep] = collect_episodes(sampler, fmt, [LetterEnv(turns=1)], [0], RolloutLimits(
        max_turns=6, max_episode_tokens=2048, max_tool_calls=2), toolbox=toolbox)
    assert message in tokenizer.decode(sampler.prompts[1][0])
    # The third call exceeds max_tool_calls=2: refused without running, then the answer.
    assert "limit of 2 tool calls" in tokenizer.decode(sampler.prompts[3][0])
    assert ep.tool_calls == 3 and ep.tool_errors == 3 and ep.turns == 4 and ep.terminated is False


class Counter:
    """TRL's environment_factory style: public methods are tools, reset returns text."""

    def __init__(self):
        self.value = 0

    def reset(self, **kwargs) -> str | None:
        self.value = 0
        return "Count up to 3."

    def increment(self, step: int) -> str:
        """Add ``step`` to the counter.

        Args:
            step: how much to add.
        """
        self.value += step
        return f"counter is {self.value}"

    def get_reward(self) -> float:
        return float(self.value == 3)


def test_environment_factory_class_runs_unchanged(tiny):
    _, tokenizer = tiny
    env = EnvironmentFactoryEnv(Counter, prompt="Task: ")
    obs, _ = env.reset(seed=0)
    assert "increment(step: integer)" in obs and obs.endswith("Task: Count up to 3.")
    sampler = Scripted(tokenizer, ['<tool_call>{"name": "increment", "arguments": {"step": 1}}'
                                   '</tool_call>', '<tool_call>{"name": "increment", "arguments": '
                                   '{"step": 2}}</tool_call>', "done"])
    fmt = ChatFormat(tokenizer, sampler.eos_ids)
    [ep] = collect_episodes(sampler, fmt, [env], [0], RolloutLimits(max_episode_tokens=1024))
    assert tokenizer.decode(sampler.prompts[2][0]).endswith("counter is 3\n")
    assert ep.rewards == [0.0, 0.0, 1.0] and ep.terminated and ep.tool_calls == 2
    gym_check_env(EnvironmentFactoryEnv(Counter))
    agent = GRPO("tiny", EnvironmentFactoryEnv(Counter), GRPOConfig(**{**SMALL,
                                                                       "max_episode_tokens": 256}))
    assert np.isfinite(agent.train_step()["train/loss"])


def test_calculator_task():
    assert calculate("(12 + 7) * 3") == "57" and calculate("7 / 2") == "3.5"
    env = ToolArithmetic(difficulty=1)
    obs, _ = env.reset(seed=3)
    question = next(line for line in obs.splitlines() if line.startswith("What is "))
    expression = question[len("What is "):-1]
    call = f'<tool_call>{{"name": "calculate", "arguments": {{"expression": "{expression}"}}}}</tool_call>'
    obs, reward, terminated, _, info = env.step(call)
    assert info["role"] == "tool" and not info["tool_error"] and not terminated and reward == 0
    _, reward, terminated, _, info = env.step(f"The answer is {obs.strip()}")
    assert reward == 1.0 and terminated and info["correct"]
    env.reset(seed=3)
    _, reward, terminated, _, info = env.step("The answer is 99999")
    assert reward == 0.0 and terminated and not info["correct"]


@pytest.mark.parametrize("env_id", ["maxent/TextBanditChat-v0", "maxent/TextRechargingBandit-v0",
                                    "maxent/ToolArithmetic-v0"])
def test_tasks_pass_gymnasium_check_env_and_sb3_refuses_text(env_id):
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    gym_check_env(gym.make(env_id).unwrapped)
    with pytest.raises(AssertionError, match="numpy array"):  # SB3 agents take arrays, not str
        sb3_check_env(gym.make(env_id))


def test_text_bandit_chat_sends_one_round_per_turn():
    env = gym.make("maxent/TextBanditChat-v0", horizon=3)
    first, _ = env.reset(seed=0)
    obs, *_ = env.step("Action: I choose Button 2.")
    assert first.startswith("You are playing") and obs.startswith("Round 1: Button 2,")
    assert obs.endswith("Round 2 of 3: which button do you press?\n") and len(obs.splitlines()) == 2


def test_recharging_bandit_in_text():
    env = gym.make("maxent/TextRechargingBandit-v0", horizon=2)
    obs, _ = env.reset(seed=0)
    assert "Arm 1: 1, Arm 2: 1" in obs
    obs, reward, terminated, truncated, info = env.step("Action: Arm 2")
    assert info["action"] == 1 and "Arm 1: 2, Arm 2: 1" in obs and not truncated
    *_, truncated, _ = env.step("Action: Arm 1")
    assert truncated
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step("no idea")
    assert terminated and info["invalid"] and reward == 0.0


def test_advantages_by_episode_and_by_turn():
    returns = torch.tensor([1.0, 3.0, 0.0, 0.0])
    adv = episode_advantages(returns, 2)
    assert torch.allclose(adv[:2], torch.tensor([-1.0, 1.0]) / np.sqrt(2), atol=1e-5)
    assert torch.equal(adv[2:], torch.zeros(2))
    a = Episode(0, 0, rewards=[1.0, 0.0, 2.0], env_step=[True, False, True])
    b = Episode(0, 0, rewards=[1.0], env_step=[True])
    steps = np.array([1.0, 2.0, 1.0])
    z = (steps - steps.mean()) / (steps.std(ddof=1) + 1e-6)
    out = process_advantages([a, b], 2, max_turns=4)
    # Turn t gets its episode's normalised step rewards from t on; the tool turn adds none.
    expected = torch.tensor([[z[0] + z[1], z[1], z[1], 0], [z[2], 0, 0, 0]], dtype=torch.float32)
    assert torch.allclose(out, expected, atol=1e-5)


def test_non_text_spaces_are_refused_with_the_fix():
    with pytest.raises(ValueError, match=r"CartPole-v1 has observation space Box.*Discrete\(2\).*"
                                         r"TextActions"):
        GRPO("tiny", "CartPole-v1", GRPOConfig(**SMALL))


def test_env_raising_mid_episode_names_env_episode_and_turn(tiny):
    envs = [LetterEnv(), LetterEnv(fail_at=2)]
    with pytest.raises(RuntimeError, match=r"env LetterEnv raised in step of episode 1 \(group 0, "
                                           r"reset seed 4\) at turn 1: KeyError"):
        _play(tiny, envs, [4])


def test_episode_outgrowing_the_context_is_cut_masked_and_counted():
    agent = GRPO("tiny", LetterEnv(turns=50), GRPOConfig(**{**SMALL, "max_turns": 50,
                                                             "max_episode_tokens": 30,
                                                             "mask_truncated": True}))
    with pytest.warns(RuntimeWarning, match="outgrew max_episode_tokens=30"):
        row = agent.train_step()
    episodes = agent.multiturn.last_episodes
    assert all(ep.context_truncated and len(ep.ids) <= 30 for ep in episodes)
    assert row["multiturn/context_truncated"] == len(episodes) == 8
    batch, _, generated = agent.multiturn.prepare(episodes)
    assert generated.sum() > 0 and batch.loss_mask.sum() == 0  # all masked out of the loss


def weights(agent):
    return {k: v.detach().clone() for k, v in agent.policy.state_dict().items()}


def test_multiturn_run_resumes_exactly(tmp_path):
    config = GRPOConfig(**{**SMALL, "turn_credit": "process", "num_epochs": 2,
                           "max_episode_tokens": 256})
    agent = GRPO("tiny", LetterEnv(), config, seed=1, tools=[add])
    agent.learn(2)
    agent.save(tmp_path / "ckpt")
    agent.learn(2)
    loaded = GRPO.load(tmp_path / "ckpt", env=LetterEnv(), tools=[add])
    assert loaded.multiturn is not None and loaded.num_timesteps == 2
    loaded.learn(2)
    a, b = weights(agent), weights(loaded)
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=0, rtol=0, msg=k)
    assert loaded.last_metrics == {**agent.last_metrics, "time/step_seconds":
                                   loaded.last_metrics["time/step_seconds"]}


def test_single_turn_tasks_keep_their_step_unless_given_tools():
    agent = GRPO("tiny", "maxent/TextArithmetic-v0", GRPOConfig(**SMALL))
    assert agent.multiturn is None
    agent = GRPO("tiny", "maxent/TextArithmetic-v0", GRPOConfig(**{**SMALL, "max_episode_tokens": 256}),
                 tools=[add])
    assert agent.multiturn is not None and np.isfinite(agent.train_step()["train/loss"])
    assert agent.multiturn.last_episodes[0].turns >= 1


def test_vector_env_gives_the_env_to_copy():
    vec = gym.vector.SyncVectorEnv([lambda: LetterEnv(turns=2)] * 2)
    agent = GRPO("tiny", vec, GRPOConfig(**SMALL))
    agent.train_step()
    assert [ep.turns for ep in agent.multiturn.last_episodes] == [2] * 8


def test_training_moves_the_policy_towards_reward():
    agent = GRPO("tiny", LetterEnv(), GRPOConfig(**{**SMALL, "group_size": 8, "prompts_per_step": 2,
                                                    "learning_rate": 2e-2}), seed=0)
    before = agent.evaluate_accuracy(16, deterministic=False)
    rewards = [agent.train_step()["rollout/reward"] for _ in range(40)]
    after = agent.evaluate_accuracy(16, deterministic=False)
    assert np.mean(rewards[-10:]) > np.mean(rewards[:10]) + 0.1
    assert after > before + 1.0  # of a best return of 3


def test_train_grpo_on_a_multiturn_env_skips_the_warmup_and_resumes(tmp_path, capsys):
    from maxent.cli.main import main

    flags = ["train", "grpo", "--env", "maxent/TextRechargingBandit-v0", "--run-dir", str(tmp_path),
             "--eval-prompts", "2", "--no-progress-bar", "--config.device", "cpu",
             "--config.tiny-hidden-size", "32", "--config.tiny-layers", "1", "--config.tiny-heads",
             "2", "--config.max-episode-tokens", "256", "--config.group-size", "2",
             "--config.prompts-per-step", "2"]
    assert main([*flags, "--total-steps", "1"]) == 0
    out = capsys.readouterr().out
    assert "warm-up" not in out and "held-out greedy return" in out
    assert main([*flags, "--total-steps", "2"]) == 0
    assert "resuming" in capsys.readouterr().out
    assert GRPO.load(tmp_path / "model").multiturn is not None
