"""Throughput of several SAC trainings sharing a machine: 1, 2 and 4 processes at once, each like
``maxent train sac`` (Pendulum-v1, its thread policy set before torch loads), optionally
stable-baselines3's SAC side by side.

    python benchmarks/concurrent_runs.py                      # maxent: 1, 2 and 4 at once
    python benchmarks/concurrent_runs.py --libs maxent sb3 --counts 1 2   # SB3 side by side

Each process warms up (random steps, the first updates, the compile) and then waits for the others
at a barrier, so that only the timed steps overlap. Printed per process and in total: env steps/s
of the timed steps, and total(N) / total(1): a machine shared well keeps that near 1 or above (a
run that spins on cores another run needs drops it far below). One warm-up run first fills
inductor's disk cache, so that no process pays a cold compile. Run it on an otherwise idle machine:
other jobs change every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BARRIER_TIMEOUT_S = 1800.0


def worker(args: argparse.Namespace) -> None:
    """One training process: warm up, meet the others at the barrier, time ``--steps`` steps."""
    if args.worker == "maxent":
        from maxent.training import threads

        threads.configure_environment()  # what the maxent command does before torch loads
    import torch

    if args.worker == "maxent":
        from maxent.agents import SAC

        agent = SAC(args.env, seed=args.index, compile=args.compile,
                    learning_starts=args.learning_starts)
        agent.learn(args.warmup_steps)
        timed = lambda: agent.learn(args.steps)  # noqa: E731
    else:
        from stable_baselines3 import SAC as SB3SAC

        agent = SB3SAC("MlpPolicy", args.env, seed=args.index, device="cpu",
                       learning_starts=args.learning_starts, verbose=0)
        agent.learn(args.warmup_steps)
        timed = lambda: agent.learn(args.steps, reset_num_timesteps=False)  # noqa: E731

    barrier = Path(args.barrier)
    (barrier / f"ready-{args.index}").touch()
    deadline = time.monotonic() + BARRIER_TIMEOUT_S
    while len(list(barrier.glob("ready-*"))) < args.processes:
        if time.monotonic() > deadline:
            raise SystemExit(f"worker {args.index}: the other workers never reached the barrier")
        time.sleep(0.02)
    start = time.perf_counter()
    timed()
    elapsed = time.perf_counter() - start
    print(json.dumps({"steps_per_s": args.steps / elapsed, "threads": torch.get_num_threads(),
                      "wait_policy": os.environ.get("OMP_WAIT_POLICY", "")}), flush=True)


def run_group(args: argparse.Namespace, lib: str, processes: int) -> list[dict]:
    """Start ``processes`` workers at once and return each one's result."""
    with tempfile.TemporaryDirectory(prefix="maxent-concurrent-") as barrier:
        env = dict(os.environ)
        if not args.keep_env:
            for name in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
                env.pop(name, None)
        procs = [subprocess.Popen(
            [sys.executable, __file__, "--worker", lib, "--index", str(i),
             "--processes", str(processes), "--barrier", barrier, "--env", args.env,
             "--steps", str(args.steps), "--warmup-steps", str(args.warmup_steps),
             "--learning-starts", str(args.learning_starts), "--compile", args.compile],
            stdout=subprocess.PIPE, text=True, env=env) for i in range(processes)]
        results = []
        for p in procs:
            out, _ = p.communicate()
            if p.returncode != 0:
                raise SystemExit(f"a {lib} worker failed with exit code {p.returncode}")
            results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 2, 4],
                        help="how many processes run at once, one group per count")
    parser.add_argument("--env", default="Pendulum-v1")
    parser.add_argument("--steps", type=int, default=4000, help="timed env steps per process")
    parser.add_argument("--warmup-steps", type=int, default=1500,
                        help="untimed steps first (random steps, first updates, compile)")
    parser.add_argument("--learning-starts", type=int, default=1000)
    parser.add_argument("--compile", choices=["true", "false"], default="true",
                        help="maxent's compiled update (as a long `maxent train sac` run uses)")
    parser.add_argument("--libs", nargs="+", choices=["maxent", "sb3"], default=["maxent"],
                        help="whose SAC to time: maxent, stable-baselines3's (sb3), or both")
    parser.add_argument("--keep-env", action="store_true",
                        help="pass OMP_NUM_THREADS/OMP_WAIT_POLICY of this shell to the workers "
                             "(default: removed, so each worker's own policy decides)")
    parser.add_argument("--worker", choices=["maxent", "sb3"], help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--processes", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--barrier", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        args.compile = args.compile == "true"
        worker(args)
        return
    if min(args.counts) < 1 or args.steps < 1 or args.warmup_steps <= args.learning_starts:
        raise SystemExit("--counts and --steps must be positive and --warmup-steps above "
                         "--learning-starts (the warm-up must reach the first updates)")
    counts = sorted(set(args.counts) | {1})  # total(1) is the reference of every ratio
    libs = list(dict.fromkeys(args.libs))
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} before the runs; "
          f"{args.env}, {args.steps} timed steps per process after {args.warmup_steps} "
          "warm-up steps")
    if "maxent" in libs:
        run_group(args, "maxent", 1)  # fills inductor's disk cache; not reported
    for lib in libs:
        reference = None
        for n in counts:
            results = run_group(args, lib, n)
            per = [r["steps_per_s"] for r in results]
            total = sum(per)
            reference = total if n == 1 else reference
            setup = ", ".join(sorted({f"{r['threads']} thread(s)"
                                      + (f" {r['wait_policy']}" if r["wait_policy"] else "")
                                      for r in results}))
            print(f"{lib:6s} N={n}: per process {', '.join(f'{x:.1f}' for x in per)} "
                  f"(median {statistics.median(per):.1f}) env-steps/s; total {total:.1f}; "
                  f"total(N)/total(1) {total / reference:.2f}; {setup}", flush=True)


if __name__ == "__main__":
    main()
