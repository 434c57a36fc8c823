"""SAC vs RARL vs QARL on one MuJoCo task, then the robustness grid (Reddi et al., ICLR 2024,
"Robust Adversarial RL via Bounded Rationality Curricula", Sec. 5 and Fig. 3).

    python examples/qarl_hopper.py                                 # a few minutes on a 2-core CPU
    python examples/qarl_hopper.py --steps 1000000 --seeds 0 1 2 3 4 --hidden 256 256 256 \
        --max-episode-steps 1000 --grid-points 11                  # the paper's scale (GPU days)

Each method and seed trains into OUT/<method>-s<seed>/model (the `maxent train` layout, so
`maxent robustness OUT/*-s*` re-runs the benchmark); training returns go to OUT/training.csv and
OUT/training.png (deterministic evaluations on the nominal task); the grid to OUT/robustness.csv, OUT/heatmaps.png and OUT/summary.md.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from maxent.training.agent import FunctionCallback, evaluate
from maxent.agents.qarl import QARL, QARLConfig
from maxent.agents.sac import SAC, SACConfig
from maxent.envs.adversarial import task_defaults
from maxent.cli.robustness import run_benchmark


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task", default="Hopper-v5", help="Hopper-v5, HalfCheetah-v5, Walker2d-v5, ...")
    p.add_argument("--steps", type=int, default=3000, help="env steps per method and seed")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="one run per seed")
    p.add_argument("--methods", nargs="+", default=["sac", "rarl", "qarl"],
                   choices=["sac", "rarl", "qarl", "qarl-linear", "qarl-fixed"])
    p.add_argument("--hidden", type=int, nargs="+", default=[64, 64], help="paper: 256 256 256")
    p.add_argument("--learning-starts", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--max-episode-steps", type=int, default=300, help="paper: 1000")
    p.add_argument("--performance-bound", type=float, default=None,
                   help="QARL teacher's bound on the discounted return; default: the task's")
    p.add_argument("--max-force", type=float, default=None, help="adversary force bound (N)")
    p.add_argument("--grid-points", type=int, default=6, help="points per grid axis (paper: 11)")
    p.add_argument("--episodes", type=int, default=1, help="episodes per grid cell")
    p.add_argument("--evals", type=int, default=6, help="evaluations during training")
    p.add_argument("--eval-episodes", type=int, default=2, help="episodes per evaluation")
    p.add_argument("--out", type=Path, default=Path("runs/qarl_hopper"))
    return p.parse_args()


def build(method: str, args: argparse.Namespace, seed: int):
    hidden = tuple(args.hidden)
    if method == "sac":
        env = gym.make(args.task, max_episode_steps=args.max_episode_steps)
        config = SACConfig(hidden_sizes=hidden, learning_starts=args.learning_starts,
                           batch_size=args.batch_size, log_interval=max(args.steps // 10, 1))
        agent = SAC(env, config=config, seed=seed)
        agent.env_id = args.task  # the checkpoint names the task so `maxent robustness` can load it
        return agent
    curriculum = {"rarl": "none", "qarl": "gamma", "qarl-linear": "linear",
                  "qarl-fixed": "fixed"}[method]
    config = QARLConfig(curriculum=curriculum, hidden_sizes=hidden,
                        learning_starts=args.learning_starts, batch_size=args.batch_size,
                        max_episode_steps=args.max_episode_steps, max_force=args.max_force,
                        performance_bound=args.performance_bound,
                        log_interval=max(args.steps // 10, 1))
    return QARL(args.task, config=config, seed=seed)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    history: list[dict] = []
    run_dirs = []
    eval_env = gym.make(args.task, max_episode_steps=args.max_episode_steps)
    eval_every = max(args.steps // args.evals, 1)
    for method in args.methods:
        for seed in args.seeds:
            agent = build(method, args, seed)

            def on_step(a, method=method, seed=seed):
                if a.num_timesteps % eval_every == 0 or a.num_timesteps == args.steps:
                    returns = evaluate(a, eval_env, n_episodes=args.eval_episodes, seed=10_000)
                    row = {"method": method, "seed": seed, "step": a.num_timesteps,
                           "eval_return": float(returns.mean())}
                    if isinstance(a, QARL):
                        row["adversary_alpha_mean"] = float(a.curriculum.value)
                    history.append(row)
                return True

            start = time.perf_counter()
            agent.learn(args.steps, callback=FunctionCallback(on_step))
            elapsed = time.perf_counter() - start
            run_dir = args.out / f"{method}-s{seed}"
            agent.save(run_dir / "model", include_replay_buffer=False)
            run_dirs.append(run_dir)
            extra = ""
            if isinstance(agent, QARL):
                extra = f", adversary mean alpha {float(agent.curriculum.value):.4f}"
                if hasattr(agent.curriculum, "concentration"):
                    extra += (f" (k={agent.curriculum.concentration:.2f}, "
                              f"{agent.curriculum.n_moves}/{agent.curriculum.n_updates} teacher moves)")
            print(f"{method:11s} seed {seed}: {args.steps} steps in {elapsed:.0f} s (with "
                  f"evaluations), final eval return {history[-1]['eval_return']:.1f}{extra}")
            agent.close()

    with open(args.out / "training.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["method", "seed", "step", "eval_return",
                                               "adversary_alpha_mean"], restval="")
        writer.writeheader()
        writer.writerows(history)
    plot_training(history, args)

    defaults = task_defaults(args.task)
    grid = {"mass": np.linspace(*defaults.mass, args.grid_points),
            "friction": np.linspace(*defaults.friction, args.grid_points)}
    start = time.perf_counter()
    run_benchmark(run_dirs, grid, episodes=args.episodes, out_dir=args.out,
                  max_episode_steps=args.max_episode_steps)
    print(f"robustness grid ({args.grid_points}x{args.grid_points}, {len(run_dirs)} runs) in "
          f"{time.perf_counter() - start:.0f} s; files in {args.out}")


def plot_training(history: list[dict], args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    for method in args.methods:
        for seed in args.seeds:
            rows = [r for r in history if r["method"] == method and r["seed"] == seed]
            if not rows:
                continue
            steps = [r["step"] for r in rows]
            left.plot(steps, [r["eval_return"] for r in rows], marker="o", label=f"{method} s{seed}")
            if "adversary_alpha_mean" in rows[0]:
                right.plot(steps, [r["adversary_alpha_mean"] for r in rows], label=f"{method} s{seed}")
    left.set(xlabel="env steps", ylabel="eval return (no adversary, deterministic)",
             title=f"{args.task}: protagonist during training")
    right.set(xlabel="env steps", ylabel="adversary mean alpha", yscale="log",
              title="adversary temperature curriculum")
    left.legend(fontsize=7)
    if right.lines:
        right.legend(fontsize=7)
    fig.savefig(args.out / "training.png", dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
