"""``maxent.trl.GRPOTrainer(tools=..., environment_factory=...)`` with TRL 1.16's semantics: a
typed tool's result is in the next turn's input, an environment class in TRL's documented style
runs unchanged (``reset(**row)``, its methods as tools, ``get_reward`` and ``environments=`` reach
the advantages), a failing tool is an error message the model reads, the tool-round limit and the
completion budget hold across turns, and bad input gets a one-line error."""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("accelerate")
datasets = pytest.importorskip("datasets")

from maxent import llm  # noqa: E402
from maxent.llm.samplers import completions_from_rows  # noqa: E402
from maxent.trl import GRPOConfig, GRPOTrainer, UnsupportedTRLField  # noqa: E402
from maxent.trl.trainer import CHATML  # noqa: E402

SMALL = dict(max_steps=1, per_device_train_batch_size=4, num_generations=4, max_completion_length=200,
             report_to="none", use_cpu=True, save_strategy="no", logging_steps=1)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """A tiny model with room for the tool descriptions, and a chat template (TRL's tool loop
    needs conversations)."""
    path = str(tmp_path_factory.mktemp("tiny_tools"))
    model, tokenizer = llm.load_model("tiny", seed=0, tiny={"hidden_size": 32, "num_layers": 1,
                                                            "num_heads": 2, "max_positions": 1024})
    tokenizer.chat_template = CHATML
    llm.save_pretrained(model, tokenizer, path)
    return path


def conversations(n=8, **columns):
    rows = {"prompt": [[{"role": "user", "content": f"Task {i}."}] for i in range(n)]}
    rows.update({k: [v] * n for k, v in columns.items()})
    return datasets.Dataset.from_dict(rows)


class Scripted:
    """Writes ``script(call, row)`` as the reply of live episode ``row`` at sampler call ``call``,
    and records each call's prompts; weights sync goes to the real sampler."""

    def __init__(self, trainer, script):
        self.inner, self.script = trainer.agent.sampler, script
        self.tokenizer, self.eos_ids = trainer.processing_class, trainer.agent.sampler.eos_ids
        self.prompts: list[list[str]] = []

    def generate(self, prompt_ids, *, max_new_tokens, **kwargs):
        call = len(self.prompts)
        self.prompts.append([self.tokenizer.decode(p) for p in prompt_ids])
        rows = [self.tokenizer(self.script(call, k), add_special_tokens=False)["input_ids"]
                + [self.tokenizer.eos_token_id] for k in range(len(prompt_ids))]
        return completions_from_rows(rows, self.tokenizer, self.eos_ids, max_new_tokens)

    def sync(self, model):
        self.inner.sync(model)


def scripted(trainer, script):
    trainer.agent.sampler = Scripted(trainer, script)
    return trainer.agent.sampler


def call(name, **arguments):
    import json

    return f'<tool_call>{json.dumps({"name": name, "arguments": arguments})}</tool_call>'


# --------------------------------------------------------------------------- tools=[...]


def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: The first integer.
        b: The second integer.

    Returns:
        Their sum.
    """
    return a + b


def divide(a: int, b: int) -> float:
    """Divide a by b.

    Args:
        a: The dividend.
        b: The divisor.
    """
    return a / b


def test_a_tool_is_called_and_its_result_is_the_next_turns_input(tiny_folder, tmp_path):
    seen = {}

    def used_the_sum(prompts, completions, completion_ids, **kwargs):
        seen.update(prompts=prompts, completions=completions, ids=completion_ids, kwargs=kwargs)
        return [float(any(m["role"] == "tool" and m["content"] == "5" for m in c)) for c in completions]

    trainer = GRPOTrainer(tiny_folder, used_the_sum, GRPOConfig(str(tmp_path), **SMALL),
                          train_dataset=conversations(), tools=[add])
    sampler = scripted(trainer, lambda c, k: call("add", a=2, b=3) if c == 0 else "It is 5.")
    trainer.train()
    first, second = sampler.prompts
    assert "add(a: integer, b: integer): Add two integers." in first[0]
    assert second[0].endswith("<|im_start|>tool\n5<|im_end|>\n<|im_start|>assistant\n")
    assert len(sampler.prompts) == 2  # the reply without a call ended every episode
    # What TRL's reward functions receive: the conversation, then the messages after it.
    assert seen["prompts"][0][-1]["role"] == "user" and seen["prompts"][0][-1]["content"].startswith("Task")
    assert seen["completions"][0] == [
        {"role": "assistant", "content": "",
         "tool_calls": [{"type": "function", "function": {"name": "add", "arguments": {"a": 2, "b": 3}}}]},
        {"role": "tool", "name": "add", "content": "5"},
        {"role": "assistant", "content": "It is 5."}]
    assert seen["kwargs"]["environments"] == [None] * 4 and "trainer_state" in seen["kwargs"]
    assert len(seen["ids"][0]) > len(trainer.processing_class("It is 5.")["input_ids"])  # tool turn too
    metrics = trainer.agent.last_metrics
    assert metrics["multiturn/tool_calls"] == 4 and metrics["rollout/reward"] == 1.0
    assert trainer.state.log_history[-1]["step"] == 1


def test_a_failing_tool_is_an_error_message_the_model_reads(tiny_folder, tmp_path):
    seen = {}

    def reward(completions, **kwargs):
        seen["completions"] = completions
        return [0.0] * len(completions)

    trainer = GRPOTrainer(tiny_folder, reward, GRPOConfig(str(tmp_path), **SMALL),
                          train_dataset=conversations(), tools=[add, divide])
    sampler = scripted(trainer, lambda c, k: call("divide", a=1, b=0) if c == 0 else "no")
    trainer.train()
    message = "error: divide raised ZeroDivisionError: division by zero"
    assert message in sampler.prompts[1][0]
    assert seen["completions"][0][1] == {"role": "tool", "name": "divide", "content": message}
    assert trainer.agent.last_metrics["multiturn/tool_errors"] == 4


def test_tool_rounds_and_the_completion_budget_span_the_turns(tiny_folder, tmp_path):
    args = GRPOConfig(str(tmp_path), **{**SMALL, "max_tool_calling_iterations": 1,
                                        "max_completion_length": 400})
    trainer = GRPOTrainer(tiny_folder, lambda completions, **kw: [0.0] * len(completions), args,
                          train_dataset=conversations(), tools=[add])
    sampler = scripted(trainer, lambda c, k: call("add", a=c, b=1))
    trainer.train()
    assert len(sampler.prompts) == 2  # the second round's call is past the limit: not run
    for ep in trainer.agent.multiturn.last_episodes:
        assert ep.turns == 2 and ep.tool_calls == 2 and ep.terminated and not ep.context_truncated
    budget = GRPOConfig(str(tmp_path), **{**SMALL, "max_completion_length": 120})
    trainer = GRPOTrainer(tiny_folder, lambda completions, **kw: [0.0] * len(completions), budget,
                          train_dataset=conversations(), tools=[add])
    scripted(trainer, lambda c, k: call("add", a=c, b=1))  # calls until the budget runs out
    seen = []
    trainer.scorer.functions.functions[0] = lambda completions, **kw: seen.extend(completions) or [0.0] * 4
    trainer.train()
    for ep, completion in zip(trainer.agent.multiturn.last_episodes, seen):
        assert len(ep.ids) - ep.prompt_length <= 120 and ep.context_truncated
        # The first tool result would pass the budget: rolled back, the call is the completion.
        assert [m["role"] for m in completion] == ["assistant"] and ep.turns == 1
    trainer = GRPOTrainer(tiny_folder, lambda completions, **kw: [0.0] * 4,
                          GRPOConfig(str(tmp_path), **{**SMALL, "max_completion_length": 150}),
                          train_dataset=conversations(), tools=[add])
    scripted(trainer, lambda c, k: call("add", a=c, b=1))
    seen.clear()
    trainer.scorer.functions.functions[0] = lambda completions, **kw: seen.extend(completions) or [0.0] * 4
    trainer.train()
    for ep, completion in zip(trainer.agent.multiturn.last_episodes, seen):
        # The second reply runs into the budget: cut, and the cut text ends the completion.
        assert len(ep.ids) - ep.prompt_length == 150 and ep.turns == 2
        assert [m["role"] for m in completion] == ["assistant", "tool", "assistant"]
        assert completion[-1] == {"role": "assistant", "content": ep.replies[-1]}


# --------------------------------------------------------------------------- environment_factory


class IncrementEnv:
    """TRL's documented style: ``reset(**kwargs)`` gets the row, public methods are tools,
    ``get_reward`` scores the rollout from the instance's state."""

    def reset(self, **kwargs) -> str | None:
        self.counter = 0
        self.target = kwargs["target"]
        self.row = kwargs
        return f" Reach {self.target}."

    def increment(self, step: int) -> int:
        """Increment the counter.

        Args:
            step: How much to add.

        Returns:
            The counter's new value.
        """
        self.counter += step
        return self.counter

    def get_reward(self) -> float:
        return 1.0 if self.counter == self.target else 0.0


def test_an_environment_class_runs_unchanged_and_its_reward_reaches_the_advantages(tiny_folder, tmp_path):
    seen = {}

    def close_to_target(environments, prompts, **kwargs):
        seen.update(environments=environments, prompts=prompts)
        return [-abs(env.target - env.counter) / 10 for env in environments]

    trainer = GRPOTrainer(tiny_folder, [close_to_target], GRPOConfig(str(tmp_path), **SMALL),
                          train_dataset=conversations(target=3), environment_factory=IncrementEnv)
    # Episode k of the group adds k, then answers: only k = 3 reaches the target.
    sampler = scripted(trainer, lambda c, k: call("increment", step=k) if c == 0 else "done")
    trainer.train()
    assert "increment(step: integer): Increment the counter." in sampler.prompts[0][0]
    assert sampler.prompts[0][0].split("<|im_end|>")[0].endswith(" Reach 3.")  # reset's text
    assert all(p.endswith(f"<|im_start|>tool\n{k}<|im_end|>\n<|im_start|>assistant\n")
               for k, p in enumerate(sampler.prompts[1]))
    envs = seen["environments"]
    assert len({id(e) for e in envs}) == 4 and [e.counter for e in envs] == [0, 1, 2, 3]
    assert envs[0].row["target"] == 3 and envs[0].row["prompt"][0]["role"] == "user"
    assert seen["prompts"][0][-1]["content"].endswith(" Reach 3.")
    episodes = trainer.agent.multiturn.last_episodes
    returns = [ep.episode_return for ep in episodes]
    assert returns == pytest.approx([-0.3, -0.2, -0.1, 1.0])  # get_reward (weight 1) + the function
    advantages = trainer.agent.multiturn.advantages(episodes, torch.zeros(4, 1, dtype=torch.long))
    assert advantages.argmax() == 3 and advantages[3] > 0 > advantages[0]
    metrics = trainer.agent.last_metrics
    assert metrics["rewards/IncrementEnv"] == 0.25 and math.isfinite(metrics["train/loss"])


def test_get_reward_alone_and_no_dataset(tiny_folder, tmp_path):
    class Owned:
        def reset(self, **kwargs) -> str | None:
            self.calls = 0
            return "Call ping once."

        def ping(self) -> str:
            """Answer pong."""
            self.calls += 1
            return "pong"

        def get_reward(self) -> float:
            return float(self.calls == 1)

    with pytest.raises(ValueError, match="set GRPOConfig\\(max_steps=...\\)"):
        GRPOTrainer(tiny_folder, None, GRPOConfig(str(tmp_path), **{**SMALL, "max_steps": -1}),
                    environment_factory=Owned)
    trainer = GRPOTrainer(tiny_folder, None, GRPOConfig(str(tmp_path), **SMALL), environment_factory=Owned)
    sampler = scripted(trainer, lambda c, k: call("ping") if c == 0 and k < 2 else "ok")
    trainer.train()
    assert "<|im_start|>user\n" in sampler.prompts[0][0] and "Call ping once." in sampler.prompts[0][0]
    assert [ep.episode_return for ep in trainer.agent.multiturn.last_episodes] == [1.0, 1.0, 0.0, 0.0]


def test_a_resumed_environment_run_continues_exactly(tiny_folder, tmp_path):
    def reward(environments, completions, **kwargs):
        return [sum(m["content"].count(x) for m in c for x in "aeiou") + env.target
                for c, env in zip(completions, environments)]

    def run(out, **train):
        args = GRPOConfig(str(out), **{**SMALL, "max_steps": 2, "save_strategy": "steps",
                                       "save_steps": 1, "max_completion_length": 24})
        trainer = GRPOTrainer(tiny_folder, reward, args, train_dataset=conversations(target=3),
                              environment_factory=IncrementEnv)
        trainer.train(**train)
        return trainer

    straight = run(tmp_path / "a")
    resumed = run(tmp_path / "b", resume_from_checkpoint=str(tmp_path / "a" / "checkpoint-1"))
    assert resumed.agent.multiturn.episode_scorer.agent is resumed.agent
    assert straight.agent.last_metrics["train/grad_norm"] > 0  # the rewards moved the policy
    for p, q in zip(straight.model.parameters(), resumed.model.parameters()):
        assert torch.equal(p, q)
    assert resumed.agent.last_metrics["rollout/reward"] == straight.agent.last_metrics["rollout/reward"]


# --------------------------------------------------------------------------- bad input


def untyped(a):
    """Return a.

    Args:
        a: anything.
    """
    return a


def undocumented(a: int) -> int:
    return a


class NoReset:
    def act(self, x: int) -> int:
        """Act.

        Args:
            x: a number.
        """
        return x


async def fetch(url: str) -> str:
    """Fetch a page.

    Args:
        url: the address.
    """
    return url


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(tools=[untyped]), ValueError, r"tool untyped cannot be described.*missing a type hint.*give every"),
    (dict(tools=[undocumented]), ValueError, r"tool undocumented cannot be described.*no docstring"),
    (dict(tools=[fetch]), UnsupportedTRLField, r"tool fetch is async"),
    (dict(environment_factory=NoReset), ValueError, r"NoReset has no reset\(\) method"),
    (dict(environment_factory={"a": IncrementEnv}), UnsupportedTRLField, r"environment_factory=\{name"),
    (dict(tools=[add], train_dataset=datasets.Dataset.from_dict({"prompt": ["2+3="]})), ValueError,
     r"row 0's prompt is '2\+3='.*conversational prompts"),
    (dict(tools=[add], eval_dataset=conversations()), UnsupportedTRLField, r"eval_dataset with tools"),
    (dict(tools=[add], reward_funcs=None), ValueError, r"no reward source"),
])
def test_bad_input_gets_a_one_line_error(tiny_folder, tmp_path, kwargs, error, match):
    kwargs = {"reward_funcs": lambda completions, **kw: [0.0] * len(completions),
              "train_dataset": conversations(target=3), **kwargs}
    with pytest.raises(error, match=match) as raised:
        GRPOTrainer(tiny_folder, args=GRPOConfig(str(tmp_path), **SMALL), **kwargs)
    assert "\n" not in str(raised.value)
