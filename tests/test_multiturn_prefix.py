"""Response prefixes in multi-turn rollouts: every reply starts with fixed text that is context
(never trained on), the env and the tool parser read prefix + reply, and a reply to a tool result
may start with a different prefix than a reply to the env."""

from __future__ import annotations

import gymnasium as gym
import pytest
from gymnasium import spaces

import maxent.envs  # noqa: F401  (registers the ids)
from maxent import llm
from maxent.agents.grpo import GRPO, GRPOConfig
from maxent.envs.text import CHARSET
from maxent.llm.rollout import ChatFormat, RolloutLimits, collect_episodes, transcript_batch
from maxent.llm.tools import ToolBox
from scripted_sampler import Scripted

SMALL = {"device": "cpu", "tiny_hidden_size": 32, "tiny_layers": 1, "tiny_heads": 2,
         "group_size": 2, "prompts_per_step": 2, "max_new_tokens": 4, "max_turns": 3,
         "max_episode_tokens": 128, "learning_rate": 1e-2, "mask_truncated": False,
         "log_completions_every": 0}


class EchoEnv(gym.Env):
    """Records every action it is given; ``turns`` turns, reward 1 for an action containing
    "42"."""

    def __init__(self, turns: int = 2):
        self.turns, self.actions = turns, []
        self.observation_space = spaces.Text(64, charset=CHARSET)
        self.action_space = spaces.Text(64, charset=CHARSET)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return "go", {}

    def step(self, action):
        self.t += 1
        self.actions.append(action)
        return f"t{self.t}", float("42" in action), False, self.t >= self.turns, {}


def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: the first.
        b: the second.
    """
    return a + b


@pytest.fixture(scope="module")
def tokenizer():
    return llm.build_char_tokenizer()


def _enc(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_env_reads_prefix_plus_reply_and_the_prefix_is_never_trained(tokenizer):
    sampler = Scripted(tokenizer, ["b", "42"])
    fmt = ChatFormat(tokenizer, sampler.eos_ids, response_prefix="I say ")
    envs = [EchoEnv(), EchoEnv()]
    episodes = collect_episodes(sampler, fmt, envs, [3], RolloutLimits(max_turns=4,
                                                                        max_episode_tokens=256))
    assert [env.actions for env in envs] == [["I say b", "I say 42"]] * 2
    prefix = _enc(tokenizer, "I say ")
    for prompts in sampler.prompts:  # every turn's input ends with the prefix
        assert all(p[-len(prefix):] == prefix for p in prompts)
    ep = episodes[0]
    assert ep.replies == ["I say b", "I say 42"] and ep.rewards == [0.0, 1.0]
    generated = [t for t, g in zip(ep.ids, ep.generated) if g]
    eos = tokenizer.eos_token_id
    assert generated == _enc(tokenizer, "b") + [eos] + _enc(tokenizer, "42") + [eos]
    rows = transcript_batch(episodes, tokenizer.pad_token_id)
    assert rows.loss_mask[0].sum() == len(generated)  # the prefix carries no loss
    assert ep.ids[:ep.prompt_length][-len(prefix):] == prefix


def test_a_tool_call_opened_by_the_prefix_runs_and_the_answer_gets_its_own_prefix(tokenizer):
    opening = '<tool_call>{"name": "add", "arguments": {"a": 20, "b": '
    sampler = Scripted(tokenizer, ['22}}</tool_call>', "42."])
    toolbox = ToolBox([add])
    fmt = ChatFormat(tokenizer, sampler.eos_ids, toolbox=toolbox, response_prefix=opening,
                     tool_response_prefix="The answer is ")
    env = EchoEnv(turns=1)
    [ep] = collect_episodes(sampler, fmt, [env], [0], RolloutLimits(max_turns=4,
                                                                     max_episode_tokens=2048),
                            toolbox=toolbox)
    assert ep.tool_calls == 1 and ep.tool_errors == 0
    second_input = tokenizer.decode(sampler.prompts[1][0])
    assert second_input.endswith("Tool: 42\nThe answer is ")
    assert env.actions == ["The answer is 42."] and ep.rewards == [0.0, 1.0]
    assert ep.replies[0] == opening + '22}}</tool_call>'


def test_prefixed_template_transcript_equals_the_rendered_conversation(tokenizer):
    tokenizer = llm.tokenizer_from_state(llm.tokenizer_to_state(tokenizer))
    tokenizer.chat_template = ("{% for m in messages %}[{{ m.role }}]{{ m.content }}<eos>\n"
                               "{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}")
    fmt = ChatFormat(tokenizer, {tokenizer.eos_token_id}, response_prefix="A: ")
    reply = _enc(tokenizer, "ok") + [tokenizer.eos_token_id]
    ids = fmt.first("hi") + reply + fmt.delta("user", "more", reply_closed=True)
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "A: ok"},
                {"role": "user", "content": "more"}]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert ids == _enc(tokenizer, rendered + "A: ")


def test_grpo_config_prefix_reaches_the_env_and_is_masked_in_training():
    agent = GRPO("tiny", EchoEnv(), GRPOConfig(**SMALL, response_prefix="Say: "), seed=0)
    agent.train_step()
    copies = agent.multiturn.pool.copies
    assert len(copies) == 4 and all(c.actions for c in copies)
    assert all(a.startswith("Say: ") for c in copies for a in c.actions)
    for ep in agent.multiturn.last_episodes:
        assert all(r.startswith("Say: ") for r in ep.replies)
        prefix = _enc(agent.tokenizer, "Say: ")
        assert ep.ids[ep.prompt_length - len(prefix):ep.prompt_length] == prefix
        assert sum(ep.generated) == sum(ep.reply_tokens)  # no prefix token is a generated one


def test_prefix_on_a_single_turn_task_is_refused_naming_the_fix():
    with pytest.raises(ValueError, match="multi-turn envs.*put the opening of the answer in the "
                                         "prompt"):
        GRPO("tiny", "maxent/TextArithmetic-v0", GRPOConfig(**SMALL, response_prefix="The answer is "))


def test_a_prefix_that_is_not_text_is_refused(tokenizer):
    with pytest.raises(ValueError, match="response_prefix must be a string, got int"):
        ChatFormat(tokenizer, {tokenizer.eos_token_id}, response_prefix=3)
