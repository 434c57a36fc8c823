"""maxent SAC side by side with Stable-Baselines3's SAC and SBX (SB3's JAX twin, when installed).

Same env, seed, hyperparameters (SB3's defaults) and number of steps; the libraries alternate
within one benchmark run so that machine noise hits all of them alike. Every run is a fresh
Python process, and maxent's gets an empty inductor cache of its own (``--warm-cache`` reuses
one): what a user sees on a new machine, with maxent's defaults only (``compile="auto"`` compiles
the update in the background while it trains eagerly; ``precision="auto"`` is bf16 where the CPU
has it). Prints env-steps/s of each, the ratios and the final deterministic evaluation return.

Two speeds per run: end to end (the whole ``learn`` call: maxent's compilation and SBX's JIT
included) and steady state (from env step ``--steady-from``, default half the steps, to the end:
what a long run sees). Ratios are given for both.

    python benchmarks/sac_vs_sb3.py --env Pendulum-v1 --steps 20000 --seeds 0 1
    python benchmarks/sac_vs_sb3.py --env HalfCheetah-v5 --steps 20000 --seeds 0 1
    python benchmarks/sac_vs_sb3.py --env HalfCheetah-v5 --device cuda          # on a GPU

Targets on the 2-core CPU machine (from an empty cache, defaults only): >= 2x SB3 and >= 1.3x SBX
end to end, >= 1.6x SBX in steady state, returns no worse.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _sac_peers import LIBRARIES, base_env, inductor_cache, make_model, run_worker  # noqa: E402


def _clock_callback(lib: str, at: int):
    """A callback recording the time at which env step ``at`` is reached."""
    if lib == "maxent":
        from maxent.training.agent import Callback

        class Clock(Callback):
            time = None

            def on_step(self, agent) -> bool:
                if self.time is None and agent.num_timesteps >= at:
                    self.time = time.perf_counter()
                return True
    else:
        from stable_baselines3.common.callbacks import BaseCallback

        class Clock(BaseCallback):
            time = None

            def _on_step(self) -> bool:
                if self.time is None and self.num_timesteps >= at:
                    self.time = time.perf_counter()
                return True
    return Clock()


def worker(args: argparse.Namespace) -> dict:
    """One library, one seed, in this process; returns speeds and the evaluation return."""
    import torch

    torch.set_num_threads(args.threads)
    clock = _clock_callback(args.worker, args.steady_from)
    model = make_model(args.worker, args.env, args.seed, args.device)
    start = time.perf_counter()
    model.learn(args.steps, callback=clock)
    end = time.perf_counter()
    from maxent.training.agent import evaluate

    result = {"end_to_end": args.steps / (end - start),
              "steady": (args.steps - args.steady_from) / (end - clock.time),
              "return": float(evaluate(model, args.env, n_episodes=args.eval_episodes, seed=1000).mean())}
    if args.worker == "maxent":
        result["precision"] = model.precision
        result["compiled_from_update"] = getattr(model, "compiled_from_update", None)
    return result


def run(lib: str, seed: int, args: argparse.Namespace) -> dict:
    cmd = [__file__, "--worker", lib, "--seed", str(seed), "--env", args.env,
           "--steps", str(args.steps), "--steady-from", str(args.steady_from), "--device", args.device,
           "--threads", str(args.threads), "--eval-episodes", str(args.eval_episodes)]
    with inductor_cache(lib, base_env(), args.warm_cache) as env:
        return run_worker(cmd, env, f"{lib} seed {seed}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="Pendulum-v1")
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="one run of each library per seed, alternating libraries")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (all libraries)")
    parser.add_argument("--eval-episodes", type=int, default=5)
    parser.add_argument("--steady-from", type=int, default=None,
                        help="env step from which the steady-state speed is timed (default: half)")
    parser.add_argument("--warm-cache", action="store_true",
                        help="let maxent use the machine's inductor cache instead of an empty one")
    parser.add_argument("--skip", nargs="*", default=[], choices=list(LIBRARIES))
    parser.add_argument("--worker", choices=list(LIBRARIES), help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steady_from is None:
        args.steady_from = args.steps // 2
    if not 0 < args.steady_from < args.steps:
        raise SystemExit(f"--steady-from {args.steady_from} must lie inside (0, --steps {args.steps})")
    if args.worker is not None:
        print(json.dumps(worker(args)))
        return

    libraries = [lib for lib in LIBRARIES if lib not in args.skip]
    if "sbx" in libraries and (importlib.util.find_spec("sbx") is None or args.device != "cpu"):
        libraries.remove("sbx")
    results: dict[str, list[dict]] = {lib: [] for lib in libraries}
    for seed in args.seeds:
        for lib in libraries:  # alternate libraries within each seed
            r = run(lib, seed, args)
            results[lib].append(r)
            extra = f"  ({r['precision']}, compiled from update {r['compiled_from_update']})" \
                if lib == "maxent" else ""
            print(f"[seed {seed}] {lib:7s} {r['end_to_end']:8.1f} steps/s end to end, "
                  f"{r['steady']:8.1f} steady   eval return {r['return']:9.1f}{extra}", flush=True)

    print(f"\n{args.env}, {args.steps} steps, seeds {args.seeds}, device {args.device}, "
          f"threads {args.threads}, maxent defaults, "
          f"{'warm' if args.warm_cache else 'empty'} inductor cache")
    median = {lib: statistics.median(r["end_to_end"] for r in rs) for lib, rs in results.items()}
    steady = {lib: statistics.median(r["steady"] for r in rs) for lib, rs in results.items()}
    for lib, rs in results.items():
        returns = [r["return"] for r in rs]
        print(f"  {lib:7s} median {median[lib]:8.1f} steps/s end to end, {steady[lib]:8.1f} steady "
              f"(from step {args.steady_from})   eval return {statistics.mean(returns):9.1f} "
              f"(per seed {', '.join(f'{x:.0f}' for x in returns)})")
    if "maxent" in median:
        for peer in ("sb3", "sbx"):
            if peer in median:
                print(f"  maxent / {peer}: {median['maxent'] / median[peer]:.2f}x end to end, "
                      f"{steady['maxent'] / steady[peer]:.2f}x steady")


if __name__ == "__main__":
    main()
