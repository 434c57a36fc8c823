"""maxent SAC at the scale users train it: long MuJoCo runs with periodic deterministic evaluation.

Each (env, seed) run trains with SACConfig's defaults (plus ``--learning-starts``, 10k random
warm-up steps as rl-baselines3-zoo and the SAC paper use on MuJoCo), evaluates the deterministic
policy on ``--eval-episodes`` episodes every ``--eval-every`` steps, and appends the result to
``<out>/<env>-s<seed>/eval.csv`` (``<env>-<preset>-s<seed>`` with ``--preset``) as it goes. A checkpoint (replay buffer included) is written at
every evaluation, so a killed run resumes where it stopped when the same command is run again, and
a finished run is skipped. ``--plot`` draws every run found under ``--out`` into ``curves.png``.

    python benchmarks/sac_mujoco.py --envs HalfCheetah-v5 Hopper-v5 --seeds 0 1 --steps 300000
    python benchmarks/sac_mujoco.py --plot --out runs/sac-mujoco
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from pathlib import Path

import numpy as np

from maxent.training.agent import Callback, evaluate

EVAL_FIELDS = ["step", "mean_return", "std_return", "train_return", "wall_s", "steps_per_s"]


class EvalAndCheckpoint(Callback):
    """Every ``every`` steps: evaluate, append a CSV row, then checkpoint (in that order, so a
    checkpoint never holds a step whose row is missing; a row whose checkpoint was lost to a kill
    is simply written again on resume, and the reader keeps the last row per step)."""

    def __init__(self, run_dir: Path, every: int, eval_env: str, episodes: int):
        self.run_dir, self.every, self.eval_env, self.episodes = run_dir, every, eval_env, episodes
        self.csv_path = run_dir / "eval.csv"
        self._next = 0
        self._clock = (0.0, 0)

    def on_training_start(self, agent) -> None:
        self._next = (agent.num_timesteps // self.every + 1) * self.every
        self._clock = (time.perf_counter(), agent.num_timesteps)

    def on_step(self, agent) -> bool:
        if agent.num_timesteps < self._next:
            return True
        self._next += self.every
        started, from_step = self._clock
        speed = (agent.num_timesteps - from_step) / max(time.perf_counter() - started, 1e-9)
        returns = evaluate(agent, self.eval_env, n_episodes=self.episodes, seed=10_000)
        train = float(np.mean(agent.episode_returns)) if agent.episode_returns else float("nan")
        new_file = not self.csv_path.exists()
        with self.csv_path.open("a", newline="") as f:
            writer = csv.writer(f)
            if new_file:
                writer.writerow(EVAL_FIELDS)
            writer.writerow([agent.num_timesteps, f"{returns.mean():.2f}", f"{returns.std():.2f}",
                             f"{train:.2f}", f"{_wall(self.run_dir) + time.perf_counter() - started:.1f}",
                             f"{speed:.1f}"])
        agent.save(self.run_dir / "checkpoint")
        _add_wall(self.run_dir, time.perf_counter() - started)
        self._clock = (time.perf_counter(), agent.num_timesteps)
        print(f"{self.run_dir.name} step {agent.num_timesteps}: eval {returns.mean():.1f} "
              f"± {returns.std():.1f}, train {train:.1f}, {speed:.0f} steps/s", flush=True)
        return True


def _wall(run_dir: Path) -> float:
    """Training wall time of the run so far, summed over resumed sessions."""
    path = run_dir / "wall_s.txt"
    return float(path.read_text()) if path.exists() else 0.0


def _add_wall(run_dir: Path, seconds: float) -> None:
    tmp = run_dir / "wall_s.txt.tmp"
    tmp.write_text(f"{_wall(run_dir) + seconds:.1f}")
    os.replace(tmp, run_dir / "wall_s.txt")


def read_eval(path: Path) -> list[dict[str, float]]:
    """Rows of an ``eval.csv``, the last one kept per step (see :class:`EvalAndCheckpoint`)."""
    by_step: dict[int, dict[str, float]] = {}
    with path.open() as f:
        for row in csv.DictReader(f):
            by_step[int(row["step"])] = {k: float(v) for k, v in row.items()}
    return [by_step[s] for s in sorted(by_step)]


def variant_tag(args: argparse.Namespace) -> str:
    """``-<preset>`` and ``-c<w>x<w>`` for non-default runs, so each variant has its own folder."""
    tag = f"-{args.preset}" if args.preset else ""
    if args.critic_hidden_sizes:
        tag += "-c" + "x".join(str(w) for w in args.critic_hidden_sizes)
    return tag


def train(env_id: str, seed: int, args: argparse.Namespace) -> None:
    from maxent.agents import SAC, SACConfig

    run_dir = Path(args.out) / f"{env_id}{variant_tag(args)}-s{seed}"
    ckpt = run_dir / "checkpoint"
    run_dir.mkdir(parents=True, exist_ok=True)
    if (ckpt / "config.json").exists():
        agent = SAC.load(ckpt, log_dir=run_dir, torch_threads=args.threads)
        print(f"{run_dir.name}: resuming at step {agent.num_timesteps}", flush=True)
    else:
        overrides = {"learning_starts": args.learning_starts, "torch_threads": args.threads}
        if args.compile is not None:
            overrides["compile"] = args.compile
        if args.precision is not None:
            overrides["precision"] = args.precision
        if args.preset is not None:
            overrides["preset"] = args.preset
        if args.critic_hidden_sizes is not None:
            overrides["critic_hidden_sizes"] = tuple(args.critic_hidden_sizes)
        agent = SAC(env_id, config=SACConfig(**overrides), seed=seed, log_dir=run_dir)
    remaining = args.steps - agent.num_timesteps
    if remaining > 0:
        agent.learn(remaining, callback=EvalAndCheckpoint(run_dir, args.eval_every, env_id,
                                                          args.eval_episodes))
    agent.close()


def plot_curves(out: Path, title: str, ylabel: str,
                reference: dict[str, float] | None = None) -> Path | str:
    """``out/curves.png``: one panel per env of every run's eval.csv under ``out`` (runs named
    ``<env>-s<seed>``), with a dashed line at ``reference[env]`` where given; or a message saying
    why there is none yet."""
    runs = sorted(p for p in out.iterdir() if (p / "eval.csv").exists() and read_eval(p / "eval.csv")) \
        if out.is_dir() else []
    if not runs:
        return (f"no curves: no run under {out} has an evaluation yet (the first comes after "
                "--eval-every steps)")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = sorted({p.name.rsplit("-s", 1)[0] for p in runs})
    fig, axes = plt.subplots(1, len(envs), figsize=(5 * len(envs), 3.6), squeeze=False)
    for ax, env_id in zip(axes[0], envs):
        for run in (p for p in runs if p.name.rsplit("-s", 1)[0] == env_id):
            rows = read_eval(run / "eval.csv")
            ax.plot([r["step"] for r in rows], [r["mean_return"] for r in rows], marker=".",
                    label=f"seed {run.name.rsplit('-s', 1)[1]}")
        if reference and env_id in reference:
            ax.axhline(reference[env_id], color="grey", linestyle="--", linewidth=0.8)
        ax.set_title(f"{title}, {env_id}")
        ax.set_xlabel("env steps")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    path = out / "curves.png"
    fig.savefig(path, dpi=110)
    return path


def plot(out: Path) -> Path | str:
    """``out/curves.png`` of every run's eval.csv, or a message saying why there is none yet."""
    return plot_curves(out, "maxent SAC", "deterministic eval return (10 episodes)")


def run_grid(args: argparse.Namespace, train_one, plot_runs) -> None:
    """``--plot``: only draw the curves; else train every (seed, env) in turn, seed-major (each
    run resumes where a killed one stopped), then draw them."""
    if not args.plot:
        for seed in args.seeds:
            for env_id in args.envs:
                train_one(env_id, seed, args)
    print(plot_runs(Path(args.out)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=["HalfCheetah-v5", "Hopper-v5"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--steps", type=int, default=300_000)
    parser.add_argument("--eval-every", type=int, default=10_000)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--learning-starts", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compile", default=None, help="override SACConfig.compile (default: the config's)")
    parser.add_argument("--precision", default=None, help="override SACConfig.precision")
    parser.add_argument("--preset", default=None,
                        help="a SAC family preset (crossq, tqc, droq, redq, simba); runs go to <env>-<preset>-s<seed>")
    parser.add_argument("--critic-hidden-sizes", type=int, nargs="+", default=None,
                        help="override the critics' widths (e.g. 256 256: presets whose published width "
                             "a CPU cannot train in hours); the folder name gets -c256x256")
    parser.add_argument("--out", default="runs/sac-mujoco")
    parser.add_argument("--plot", action="store_true", help="only draw curves.png from the runs in --out")
    args = parser.parse_args()
    if args.compile is not None:
        args.compile = {"true": True, "false": False}.get(args.compile.lower(), args.compile)
    os.environ.setdefault("MUJOCO_GL", "disable")
    run_grid(args, train, plot)


if __name__ == "__main__":
    main()
