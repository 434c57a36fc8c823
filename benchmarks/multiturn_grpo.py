"""Multi-turn GRPO on a text environment, several seeds: per step the mean episode return, turns,
tokens per turn, invalid actions, tool calls and token entropy of every seed go to one CSV, and
the return curves (mean and min-max band over seeds) with the held-out greedy return before and
after training to a PNG.

    python benchmarks/multiturn_grpo.py --model smollm2 --env maxent/TextBanditChat-v0 --seeds 0 1 2 --steps 100
    python benchmarks/multiturn_grpo.py --model smollm2 --env maxent/ToolArithmetic-v0 --turn-credit process
"""

from __future__ import annotations

import argparse
import csv
import os
import time
import warnings
from pathlib import Path

COLUMNS = ("multiturn/episode_return", "multiturn/turns_per_episode", "multiturn/tokens_per_turn",
           "multiturn/invalid_actions", "multiturn/tool_calls", "multiturn/tool_errors",
           "multiturn/context_truncated", "entropy/token", "train/loss")


def run(args: argparse.Namespace, seed: int) -> tuple[list[dict], float, float]:
    """One training run: its per-step rows and the held-out return before and after."""
    from maxent.agents.grpo import GRPO, GRPOConfig

    config = GRPOConfig(
        model=args.model, device=args.device, group_size=args.group_size,
        prompts_per_step=args.groups, max_new_tokens=args.max_new_tokens, max_turns=args.max_turns,
        max_episode_tokens=args.max_episode_tokens, turn_credit=args.turn_credit,
        learning_rate=args.lr, temperature=args.temperature, log_completions_every=0,
        torch_threads=args.threads)
    agent = GRPO(None, args.env, config, seed=seed)
    before = agent.evaluate_accuracy(args.eval_episodes, seed=10_000 + seed)
    rows = []
    for step in range(args.steps):
        start = time.perf_counter()
        metrics = agent.train_step()
        rows.append({"seed": seed, "step": step + 1, "seconds": time.perf_counter() - start,
                     **{c: metrics.get(c, float("nan")) for c in COLUMNS}})
        print(f"seed {seed} step {step + 1}: return {metrics['multiturn/episode_return']:.3f}, "
              f"turns {metrics['multiturn/turns_per_episode']:.2f}", flush=True)
    after = agent.evaluate_accuracy(args.eval_episodes, seed=10_000 + seed)
    agent.close()
    return rows, before, after


def plot(rows: list[dict], held_out: dict[int, tuple[float, float]], out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    seeds = sorted({r["seed"] for r in rows})
    curves = np.array([[r["multiturn/episode_return"] for r in rows if r["seed"] == s] for s in seeds])
    steps = np.arange(1, curves.shape[1] + 1)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(steps, curves.mean(0), label=f"mean of {len(seeds)} seeds")
    ax.fill_between(steps, curves.min(0), curves.max(0), alpha=0.3, label="min-max over seeds")
    before = np.mean([held_out[s][0] for s in seeds])
    after = np.mean([held_out[s][1] for s in seeds])
    ax.axhline(before, ls="--", c="grey", label=f"held-out greedy before: {before:.3f}")
    ax.axhline(after, ls=":", c="k", label=f"held-out greedy after: {after:.3f}")
    ax.set(xlabel="GRPO step", ylabel="episode return (sampled)", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2", help='"tiny", "smollm2" or a model folder')
    parser.add_argument("--env", default="maxent/TextBanditChat-v0")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=100, help="GRPO steps per seed")
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--groups", type=int, default=2, help="reset seeds (groups) per step")
    parser.add_argument("--max-new-tokens", type=int, default=24, help="tokens per reply")
    parser.add_argument("--max-turns", type=int, default=6)
    parser.add_argument("--max-episode-tokens", type=int, default=1024)
    parser.add_argument("--turn-credit", choices=["episode", "process"], default="episode")
    parser.add_argument("--lr", type=float, default=1e-6)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--eval-episodes", type=int, default=32)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/multiturn-grpo"))
    args = parser.parse_args()
    if len(args.seeds) < 1 or args.steps < 1:
        parser.error("give at least one seed and one step")
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args.out.mkdir(parents=True, exist_ok=True)
    rows, held_out = [], {}
    for seed in args.seeds:
        seed_rows, before, after = run(args, seed)
        rows += seed_rows
        held_out[seed] = (before, after)
        print(f"seed {seed}: held-out greedy return {before:.3f} -> {after:.3f}", flush=True)
    stem = f"{args.env.split('/')[-1]}-{args.model}-{args.turn_credit}"
    with open(args.out / f"{stem}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["seed", "step", "seconds", *COLUMNS])
        writer.writeheader()
        writer.writerows(rows)
    with open(args.out / f"{stem}-held-out.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["seed", "return_before", "return_after"])
        writer.writerows([s, b, a] for s, (b, a) in held_out.items())
    plot(rows, held_out, args.out / f"{stem}.png", f"{args.env} ({args.model}, {args.turn_credit})")
    print(f"wrote {args.out / stem}.csv, -held-out.csv and .png")


if __name__ == "__main__":
    main()
