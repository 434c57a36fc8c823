"""maxent SAC side by side with Stable-Baselines3's SAC (and SBX, its JAX twin, when installed).

Same env, seed, hyperparameters (SB3's defaults) and number of steps; the libraries alternate
within one process run so that machine noise hits all of them alike. Prints env-steps/s of each,
the ratios, and the final deterministic evaluation return.

Two speeds per run: end to end (the whole ``learn`` call, including maxent's one-off compilation
and SBX's JIT) and steady state (from env step ``--steady-from`` to the end, what a long run
sees). Ratios are given for both.

    python benchmarks/sac_vs_sb3.py --env Pendulum-v1 --steps 6000 --seeds 0 1 2
    python benchmarks/sac_vs_sb3.py --env Pendulum-v1 --steps 6000 --seeds 0 1 2 --compile --precision bfloat16
    python benchmarks/sac_vs_sb3.py --env HalfCheetah-v5 --steps 5000
    python benchmarks/sac_vs_sb3.py --env HalfCheetah-v5 --device cuda --compile   # on a GPU

Targets on the 2-core CPU machine: >= 2x SB3 and >= 1.2x SBX steps/s, return no worse.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import time

import numpy as np
import torch

from maxent.agent import Callback, evaluate
from maxent.agents import SAC, SACConfig


class _SteadyClock(Callback):
    """maxent side: the time at which env step ``at`` is reached."""

    def __init__(self, at: int):
        self.at, self.time = at, None

    def on_step(self, agent) -> bool:
        if self.time is None and agent.num_timesteps >= self.at:
            self.time = time.perf_counter()
        return True


def _sb3_clock(at: int):
    """SB3/SBX side: the same clock as an SB3 callback."""
    from stable_baselines3.common.callbacks import BaseCallback

    class SteadyClock(BaseCallback):
        def __init__(self):
            super().__init__()
            self.time = None

        def _on_step(self) -> bool:
            if self.time is None and self.num_timesteps >= at:
                self.time = time.perf_counter()
            return True

    return SteadyClock()


def _speeds(args: argparse.Namespace, start: float, steady_start: float | None) -> tuple[float, float]:
    end = time.perf_counter()
    if steady_start is None:
        raise SystemExit(f"--steady-from {args.steady_from} must be below --steps {args.steps}")
    return args.steps / (end - start), (args.steps - args.steady_from) / (end - steady_start)


def run_maxent(args: argparse.Namespace) -> tuple[tuple[float, float], object]:
    config = SACConfig(device=args.device, compile=args.compile, log_interval=10**9,
                       precision=args.precision)
    agent = SAC(args.env, config=config, seed=args.seed)
    clock = _SteadyClock(args.steady_from)
    start = time.perf_counter()
    agent.learn(args.steps, callback=clock)
    return _speeds(args, start, clock.time), agent


def run_sb3(args: argparse.Namespace) -> tuple[tuple[float, float], object]:
    from stable_baselines3 import SAC as SB3SAC
    model = SB3SAC("MlpPolicy", args.env, seed=args.seed, device=args.device, verbose=0)
    clock = _sb3_clock(args.steady_from)
    start = time.perf_counter()
    model.learn(args.steps, callback=clock)
    return _speeds(args, start, clock.time), model


def run_sbx(args: argparse.Namespace) -> tuple[tuple[float, float], object]:
    from sbx import SAC as SBXSAC
    model = SBXSAC("MlpPolicy", args.env, seed=args.seed, verbose=0)
    clock = _sb3_clock(args.steady_from)
    start = time.perf_counter()
    model.learn(args.steps, callback=clock)
    return _speeds(args, start, clock.time), model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="Pendulum-v1")
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="one run of each library per seed, alternating libraries")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compile", action="store_true", help="torch.compile maxent's update")
    parser.add_argument("--precision", default="float32", choices=["float32", "bfloat16"],
                        help="maxent's update precision (bfloat16 = autocast on the matmuls)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (both libraries)")
    parser.add_argument("--eval-episodes", type=int, default=5)
    parser.add_argument("--steady-from", type=int, default=1000,
                        help="env step from which the steady-state speed is timed")
    parser.add_argument("--skip", nargs="*", default=[], choices=["maxent", "sb3", "sbx"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("MUJOCO_GL", "disable")

    runners = {"maxent": run_maxent, "sb3": run_sb3}
    if importlib.util.find_spec("sbx") is not None and args.device == "cpu":
        runners["sbx"] = run_sbx
    runners = {k: v for k, v in runners.items() if k not in args.skip}

    fps: dict[str, list[float]] = {name: [] for name in runners}
    steady: dict[str, list[float]] = {name: [] for name in runners}
    returns: dict[str, list[float]] = {name: [] for name in runners}
    for seed in args.seeds:
        args.seed = seed
        for name, run in runners.items():  # alternate libraries within each seed
            (steps_per_s, steady_per_s), model = run(args)
            ret = evaluate(model, args.env, n_episodes=args.eval_episodes, seed=1000).mean()
            fps[name].append(steps_per_s)
            steady[name].append(steady_per_s)
            returns[name].append(float(ret))
            print(f"[seed {seed}] {name:7s} {steps_per_s:8.1f} steps/s end to end, "
                  f"{steady_per_s:8.1f} steady   eval return {ret:9.1f}", flush=True)

    print(f"\n{args.env}, {args.steps} steps, seeds {args.seeds}, device {args.device}, "
          f"compile={args.compile}, precision={args.precision}, threads={args.threads}")
    median = {name: statistics.median(v) for name, v in fps.items()}
    median_steady = {name: statistics.median(v) for name, v in steady.items()}
    for name in runners:
        print(f"  {name:7s} median {median[name]:8.1f} steps/s end to end, {median_steady[name]:8.1f} "
              f"steady (from step {args.steady_from})   eval return {np.mean(returns[name]):9.1f} "
              f"(mean over seeds; per seed {', '.join(f'{r:.0f}' for r in returns[name])})")
    if "maxent" in median:
        for peer in ("sb3", "sbx"):
            if peer in median:
                print(f"  maxent / {peer}: {median['maxent'] / median[peer]:.2f}x end to end, "
                      f"{median_steady['maxent'] / median_steady[peer]:.2f}x steady")


if __name__ == "__main__":
    main()
