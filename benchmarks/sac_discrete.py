"""Discrete SAC (agents/sac_discrete.py, Christodoulou 2019) on CartPole-v1 and LunarLander-v3 with
periodic greedy evaluation, the evidence behind benchmarks/results/sac-discrete/.

Each (env, seed) run trains ``SACDiscrete`` with the env's config below, evaluates the greedy
(argmax) policy on ``--eval-episodes`` episodes every ``--eval-every`` steps, appends the result to
``<out>/<env>-s<seed>/eval.csv`` and checkpoints (replay buffer included), so a killed run resumes
when the same command is run again. A run stops at ``--steps`` or at its first evaluation reaching
the env's solved return (500 on CartPole-v1, 200 on LunarLander-v3, which needs the ``box2d``
extra). ``--plot`` draws every run under ``--out`` into ``curves.png``.

    python benchmarks/sac_discrete.py --envs CartPole-v1 --seeds 0 1 2 --steps 60000
    python benchmarks/sac_discrete.py --envs LunarLander-v3 --seeds 0 --steps 300000
    python benchmarks/sac_discrete.py --plot --out runs/sac-discrete
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sac_mujoco import plot_curves, read_eval, run_grid  # noqa: E402

EVAL_FIELDS = ["step", "mean_return", "std_return", "train_return", "wall_s"]

# Per-env SACDiscreteConfig fields and the return that counts as solved. CartPole's is the slow
# test's config; LunarLander's keeps 64-wide networks so that a shared CPU trains it in an hour.
CONFIGS = {
    "CartPole-v1": ({"hidden_sizes": (64, 64), "batch_size": 64, "critic_lr": 1e-3}, 500.0),
    "LunarLander-v3": ({"hidden_sizes": (64, 64), "batch_size": 128, "critic_lr": 1e-3,
                        "learning_starts": 5000, "target_entropy_ratio": 0.3}, 200.0),
}


def train(env_id: str, seed: int, args: argparse.Namespace) -> None:
    from maxent.agents import SACDiscrete
    from maxent.training.agent import evaluate

    overrides, solved = CONFIGS[env_id]
    tag = ""
    if args.target_entropy_ratio is not None:
        overrides = {**overrides, "target_entropy_ratio": args.target_entropy_ratio}
        tag = f"-te{args.target_entropy_ratio:g}"
    run_dir = Path(args.out) / f"{env_id}{tag}-s{seed}"
    ckpt, csv_path, wall_path = run_dir / "checkpoint", run_dir / "eval.csv", run_dir / "wall_s.txt"
    run_dir.mkdir(parents=True, exist_ok=True)
    rows = read_eval(csv_path) if csv_path.exists() else []
    if rows and rows[-1]["mean_return"] >= solved:
        print(f"{run_dir.name}: solved at step {rows[-1]['step']:.0f}, skipped", flush=True)
        return
    if (ckpt / "config.json").exists():
        agent = SACDiscrete.load(ckpt, torch_threads=args.threads)
        print(f"{run_dir.name}: resuming at step {agent.num_timesteps}", flush=True)
    else:
        agent = SACDiscrete(env_id, seed=seed, torch_threads=args.threads, log_interval=10**9,
                            **overrides)
    wall = float(wall_path.read_text()) if wall_path.exists() else 0.0
    while agent.num_timesteps < args.steps:
        started = time.perf_counter()
        agent.learn(min(args.eval_every, args.steps - agent.num_timesteps))
        returns = evaluate(agent, env_id, n_episodes=args.eval_episodes, seed=10_000)
        wall += time.perf_counter() - started
        episodes = agent.episode_returns
        train_return = float(np.mean(episodes)) if episodes else float("nan")
        new_file = not csv_path.exists()
        with csv_path.open("a", newline="") as f:
            writer = csv.writer(f)
            if new_file:
                writer.writerow(EVAL_FIELDS)
            writer.writerow([agent.num_timesteps, f"{returns.mean():.2f}", f"{returns.std():.2f}",
                             f"{train_return:.2f}", f"{wall:.1f}"])
        agent.save(ckpt)
        wall_path.write_text(f"{wall:.1f}")
        print(f"{run_dir.name} step {agent.num_timesteps}: eval {returns.mean():.1f} "
              f"± {returns.std():.1f}, train {train_return:.1f}, {wall:.0f} s", flush=True)
        if returns.mean() >= solved:
            break
    agent.close()


def plot(out: Path) -> Path | str:
    """``out/curves.png`` of every run's eval.csv (the solved level dashed), or a message saying
    why there is none yet."""
    envs = {p.name.rsplit("-s", 1)[0] for p in out.iterdir()} if out.is_dir() else set()
    solved = {env: CONFIGS[env.split("-te")[0]][1] for env in envs if env.split("-te")[0] in CONFIGS}
    return plot_curves(out, "maxent SACDiscrete", "greedy eval return", solved)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=["CartPole-v1"], choices=sorted(CONFIGS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--steps", type=int, default=60_000, help="env-step budget per run")
    parser.add_argument("--eval-every", type=int, default=5000)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--target-entropy-ratio", type=float, default=None,
                        help="override the env's target_entropy_ratio; runs go to <env>-te<r>-s<seed>")
    parser.add_argument("--out", default="runs/sac-discrete")
    parser.add_argument("--plot", action="store_true",
                        help="only draw curves.png from the runs in --out")
    args = parser.parse_args()
    run_grid(args, train, plot)


if __name__ == "__main__":
    main()
