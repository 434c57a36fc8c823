"""Reward functions for GSM8K-style word problems, written in TRL's convention (the way TRL's
documentation writes them), so the same file serves TRL's GRPOTrainer and maxent's GRPO:

    maxent train grpo --dataset train.jsonl --reward-funcs examples.gsm8k_rewards:format_reward \
        examples.gsm8k_rewards:correctness

A completion ends with "#### <number>" (GSM8K's own answer format). Conversational prompts give
completions as [{"role": "assistant", "content": text}]; plain prompts give strings: both work.
"""

from __future__ import annotations

import re

_FINAL = re.compile(r"####\s*(-?[\d,]+(?:\.\d+)?)\s*$")


def _text(completion) -> str:
    return completion[0]["content"] if isinstance(completion, list) else completion


def final_answer(completion) -> str | None:
    """The number after the last "####", commas removed, or None."""
    match = _FINAL.search(_text(completion).strip()[-200:])
    return None if match is None else match.group(1).replace(",", "")


def format_reward(completions, **kwargs):
    """0.2 for a completion that ends with "#### <number>", else 0."""
    return [0.2 if final_answer(c) is not None else 0.0 for c in completions]


def correctness(completions, answer, **kwargs):
    """1 for the right final number, 0 for a wrong one; None (no opinion) without a final answer,
    which format_reward then scores alone."""
    out = []
    for completion, target in zip(completions, answer):
        got = final_answer(completion)
        out.append(None if got is None else float(float(got) == float(target)))
    return out


def main(argv: list[str] | None = None) -> None:
    """Score completions given on the command line, to check a reward before a run uses it."""
    import argparse

    parser = argparse.ArgumentParser(
        description="Score completions with format_reward and correctness, e.g. "
                    "python examples/gsm8k_rewards.py 'so she has 18 #### 18' --answer 18")
    parser.add_argument("completions", nargs="+", help="completion texts")
    parser.add_argument("--answer", required=True, help="the correct final number")
    args = parser.parse_args(argv)
    fmt = format_reward(args.completions)
    right = correctness(args.completions, [args.answer] * len(args.completions))
    for text, f, c in zip(args.completions, fmt, right):
        print(f"format {f:.1f}  correctness {c}  final answer {final_answer(text)!r}  "
              f"{text[-60:]!r}")


if __name__ == "__main__":
    main()
