"""Rollout throughput of multi-turn GRPO: maxent's batched rollout (one sampler call per turn for
every live episode of every group) against the same rollout played one episode at a time, and
against TRL 1.16's own multi-turn path (``GRPOTrainer(environment_factory=...)``, its tool loop)
on the same task, model and sampling settings. Generation only: episodes/s and generated
tokens/s per contender, the contenders alternating round by round, medians and ratios to a CSV.

    python benchmarks/multiturn_throughput.py --model smollm2 --task bandit --max-turns 3 --max-new-tokens 16
    python benchmarks/multiturn_throughput.py --model smollm2 --task calculator
    python benchmarks/multiturn_throughput.py --model tiny --task bandit --rounds 7
    python benchmarks/multiturn_throughput.py --model tiny --task calculator --rounds 7

Tasks: ``bandit`` is ``maxent/TextBanditChat-v0`` with ``invalid_action="random"`` (every episode
plays all its rounds, one reply per round; TRL's loop only continues on tool calls, so it has no
way to play it). ``calculator`` is a TRL ``environment_factory`` class (``calculate`` and
``submit`` tools, ``get_reward``) that maxent runs unchanged through
:class:`maxent.envs.tool_env.EnvironmentFactoryEnv`; both sides render it with the Qwen2.5 chat
template TRL ships (ChatML, the special tokens SmolLM2 has), because TRL refuses SmolLM2's own
template, which cannot render tool calls.
"""

from __future__ import annotations

import argparse
import copy
import csv
import os
import statistics
import time
import warnings
from pathlib import Path

PROMPT = "Work out the answer with the calculate tool, then give it with the submit tool.\n"


class Calculator:
    """An ``environment_factory`` class in TRL's convention: ``reset`` takes the dataset row and
    returns the question, the public methods are the tools, ``get_reward`` scores the episode
    (1 when the submitted answer is right)."""

    def reset(self, question: str = "", target: int = 0, **_row) -> str:
        self.target, self.answer = int(target), None
        return question

    def calculate(self, expression: str) -> str:
        """Evaluate an arithmetic expression of integers with + - * / and parentheses.

        Args:
            expression: for example "(12 + 7) * 3".

        Returns:
            The value of the expression.
        """
        from maxent.envs.tool_env import calculate

        return calculate(expression)

    def submit(self, answer: int) -> str:
        """Submit the final answer.

        Args:
            answer: the integer answer.

        Returns:
            A confirmation.
        """
        self.answer = answer
        return "submitted"

    def get_reward(self) -> float:
        try:
            return float(self.answer is not None and int(self.answer) == self.target)
        except (TypeError, ValueError):
            return 0.0


def load(name: str):
    """``(model, tokenizer)``; SmolLM2 rebuilt as a plain float32 model (the GGUF loader marks it
    quantised, and TRL's Trainer refuses to wrap a quantised model)."""
    from maxent import llm

    if name == "tiny":
        tokenizer = llm.build_char_tokenizer()
        # Long enough for the bandit's prompt at one token per character.
        return llm.build_tiny_model(tokenizer, max_positions=4096, seed=0), tokenizer
    gguf_model, tokenizer = llm.load_model(name)
    model = llm.plain_model(gguf_model)
    model.config.use_cache = True
    return model.eval(), tokenizer


def questions(n: int, seed: int) -> list[dict]:
    """``n`` dataset rows (question, target) of the calculator task."""
    import numpy as np

    from maxent.envs.text import ArithmeticTask

    task, rng = ArithmeticTask(2), np.random.default_rng([seed, 11])
    return [{"question": q, "target": int(t)} for q, t in (task.sample(rng) for _ in range(n))]


def _TemplateTools(*args, **kwargs):
    """:class:`~maxent.envs.tool_env.EnvironmentFactoryEnv` without the tool list at the top of
    its first observation (the chat template carries it)."""
    from maxent.envs.tool_env import EnvironmentFactoryEnv

    class TemplateTools(EnvironmentFactoryEnv):
        def reset(self, **kw):
            obs, info = super().reset(**kw)
            return obs.removeprefix(self.toolbox.describe()), info

    return TemplateTools(*args, **kwargs)


class Maxent:
    """maxent's rollout, all episodes in one batch (``naive=False``) or one at a time."""

    def __init__(self, args, model, tokenizer, naive: bool):
        import gymnasium as gym

        import maxent.envs  # noqa: F401  (registers the ids)
        from maxent import llm
        from maxent.llm.rollout import ChatFormat, RolloutLimits
        from maxent.llm.tools import ToolBox, public_methods

        self.args, self.naive = args, naive
        self.name = "maxent-naive" if naive else "maxent-batched"
        self.sampler = llm.HFSampler(model, tokenizer)
        # The calculator's tools are described through the chat template's ``tools`` argument, as
        # TRL does, so the prompts match but for the schemas' wording; the env runs the calls.
        toolbox = ToolBox(public_methods(Calculator())) if args.task == "calculator" else None
        self.format = ChatFormat(tokenizer, self.sampler.eos_ids, toolbox=toolbox)
        # TRL's max_completion_length bounds each reply and the whole completion alike.
        budget = {"max_completion_tokens": args.max_new_tokens} if args.task == "calculator" else {}
        self.limits = RolloutLimits(max_turns=args.max_turns, max_new_tokens=args.max_new_tokens,
                                    max_episode_tokens=args.max_episode_tokens,
                                    max_tool_calls=args.max_turns, temperature=1.0, top_p=1.0,
                                    **budget)
        if args.task == "bandit":
            self.make = lambda row: gym.make("maxent/TextBanditChat-v0", invalid_action="random",
                                           horizon=args.max_turns)
        else:
            self.make = lambda row: _TemplateTools(Calculator, PROMPT, rows=[row],
                                                   max_tool_calls=args.max_turns - 1)

    def round(self, rows: list[dict], seeds: list[int], sample_seed: int) -> dict:
        from maxent.llm.rollout import collect_episodes

        G = self.args.group_size
        envs = [self.make(row) for row in rows for _ in range(G)]
        start = time.perf_counter()
        if self.naive:
            episodes = [ep for k, env in enumerate(envs) for ep in collect_episodes(
                self.sampler, self.format, [env], [seeds[k // G]], self.limits,
                sample_seed=sample_seed * 1000 + k)]
        else:
            episodes = collect_episodes(self.sampler, self.format, envs, seeds, self.limits,
                                        sample_seed=sample_seed)
        seconds = time.perf_counter() - start
        return {"seconds": seconds, "episodes": len(episodes),
                "tokens": sum(sum(ep.reply_tokens) for ep in episodes),
                "turns": sum(ep.turns for ep in episodes),
                "prompt_tokens": sum(ep.prompt_length for ep in episodes),
                "return": statistics.fmean(ep.episode_return for ep in episodes)}


class TRL:
    """TRL's ``GRPOTrainer`` with ``environment_factory``: its generation (first turn and tool
    loop) timed inside ``_generate_and_score_completions``, which also builds the environments."""

    name = "trl"

    def __init__(self, args, model, tokenizer):
        from trl import GRPOConfig, GRPOTrainer

        self.args, self.G = args, args.group_size
        trl_args = GRPOConfig(
            output_dir=os.path.join(args.tmp, "trl"), use_cpu=True, report_to=[],
            num_generations=args.group_size,
            per_device_train_batch_size=args.groups * args.group_size,
            max_completion_length=args.max_new_tokens, temperature=1.0, top_p=1.0, top_k=0,
            max_tool_calling_iterations=args.max_turns - 1, beta=0.0, num_iterations=1,
            max_steps=1, save_strategy="no", logging_steps=10**9, disable_tqdm=True, seed=0)
        self.trainer = GRPOTrainer(model=copy.deepcopy(model), processing_class=tokenizer,
                                   args=trl_args, environment_factory=Calculator,
                                   train_dataset=_dataset(questions(8, 0)))
        self._last: dict = {}
        generate = self.trainer._generate

        def timed(prompts):  # the generation alone, not the scoring around it
            start = time.perf_counter()
            out = generate(prompts)
            self._last = {"seconds": time.perf_counter() - start, "out": out}
            return out

        self.trainer._generate = timed

    def round(self, rows: list[dict], seeds: list[int], sample_seed: int) -> dict:
        import torch

        inputs = [{"prompt": [{"role": "user", "content": PROMPT}], **row}
                  for row in rows for _ in range(self.G)]
        torch.manual_seed(sample_seed)
        self.trainer.model.train()
        self.trainer._generate_and_score_completions(inputs)
        prompt_ids, _, tool_mask, completions, *_ = self._last["out"]
        tokens = sum(sum(m) for m in tool_mask) if tool_mask is not None else sum(
            len(c) for c in self._last["out"][1])
        turns = sum(sum(1 for m in c if m.get("role") == "assistant") for c in completions)
        rewards = [env.get_reward() for env in self.trainer.environments]
        return {"seconds": self._last["seconds"], "episodes": len(inputs), "tokens": tokens,
                "turns": turns, "prompt_tokens": sum(len(p) for p in prompt_ids),
                "return": statistics.fmean(rewards)}


def _dataset(rows: list[dict]):
    from datasets import Dataset

    return Dataset.from_list([{"prompt": [{"role": "user", "content": PROMPT}], **row}
                              for row in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=["smollm2", "tiny"], default="smollm2")
    parser.add_argument("--task", choices=["bandit", "calculator"], default="bandit")
    parser.add_argument("--contenders", nargs="+", choices=["batched", "naive", "trl"],
                        default=None, help="default: batched naive (bandit), and trl (calculator)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--groups", type=int, default=2, help="reset seeds (groups) per round")
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--max-turns", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=24, help="tokens per reply")
    parser.add_argument("--max-episode-tokens", type=int, default=2048)
    parser.add_argument("--tmp", default="/tmp/maxent-multiturn-throughput")
    parser.add_argument("--out", type=Path,
                        default=Path("benchmarks/results/multiturn-throughput"))
    args = parser.parse_args()
    if args.rounds < 1 or args.groups < 1 or args.group_size < 1 or args.max_turns < 1:
        parser.error("--rounds, --groups, --group-size and --max-turns must be >= 1")
    contenders = args.contenders or (["batched", "naive"] if args.task == "bandit"
                                     else ["batched", "naive", "trl"])
    if "trl" in contenders and args.task != "calculator":
        parser.error("TRL's multi-turn loop continues only on tool calls: --contenders trl needs "
                     "--task calculator")
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    warnings.filterwarnings("ignore")
    import torch

    torch.set_num_threads(1)
    model, tokenizer = load(args.model)
    args.max_episode_tokens = min(args.max_episode_tokens, model.config.max_position_embeddings)
    if args.task == "calculator":
        from trl.chat_template_utils import qwen2_5_chat_template

        tokenizer.chat_template = qwen2_5_chat_template
    runners = []
    for c in contenders:
        if c == "trl":
            try:
                runners.append(TRL(args, model, tokenizer))
            except Exception as err:  # noqa: BLE001  (recorded: whether TRL runs here is a result)
                print(f"TRL does not run: {type(err).__name__}: {err}", flush=True)
        else:
            runners.append(Maxent(args, model, tokenizer, naive=c == "naive"))
    records = []
    for r in range(args.rounds):
        rows = questions(args.groups, 100 + r)
        seeds = [1000 * r + p for p in range(args.groups)]
        order = runners if r % 2 == 0 else runners[::-1]  # A/B, then B/A
        for runner in order:
            rec = {"round": r, "contender": runner.name, **runner.round(rows, seeds, r)}
            records.append(rec)
            print(f"round {r} {runner.name}: {rec['episodes'] / rec['seconds']:.3f} episodes/s, "
                  f"{rec['tokens'] / rec['seconds']:.1f} tokens/s, {rec['turns']} turns, "
                  f"{rec['tokens']} tokens in {rec['seconds']:.1f} s", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"{args.task}-{args.model}"
    with open(args.out / f"{stem}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)
    base = runners[0].name
    medians = {}
    for runner in runners:
        mine = [x for x in records if x["contender"] == runner.name]
        medians[runner.name] = (statistics.median(x["episodes"] / x["seconds"] for x in mine),
                                statistics.median(x["tokens"] / x["seconds"] for x in mine),
                                statistics.fmean(x["turns"] / x["episodes"] for x in mine))
    print(f"\n| contender | episodes/s | generated tokens/s | turns/episode | {base} speed-up "
          "(episodes/s) | (tokens/s) |\n|---|---|---|---|---|---|")
    for name, (eps, tps, turns) in medians.items():
        print(f"| {name} | {eps:.3f} | {tps:.2f} | {turns:.2f} | {medians[base][0] / eps:.2f}x | "
              f"{medians[base][1] / tps:.2f}x |")
    print(f"wrote {args.out / stem}.csv")


if __name__ == "__main__":
    main()
