"""Wall-clock to reach a return threshold: maxent's SAC against Stable-Baselines3's and SBX's.

What users feel is not steps/s but how long until the policy is good. Each library trains one seed
at a time in a fresh Python process with its defaults (SB3's SAC hyperparameters, which maxent's
match; maxent with ``compile="auto"`` and ``precision="auto"`` and, unless ``--warm-cache``, an
empty inductor cache), is evaluated deterministically on a separate env every ``--eval-every``
steps, and stops at the first evaluation >= ``--threshold`` or at ``--max-steps``. The clock
counts training only (each evaluation's time is left out). Libraries take turns going first
across seeds, so that slow drifts of a shared machine hit them alike.

SB3 and SBX train in chunks (``learn(chunk, reset_num_timesteps=False)``); maxent trains in one
``learn`` call whose callback evaluates, because ``compile="auto"`` compiles only for a call with
enough updates, as it does for a user's long run (on 4 or more cores that compile runs in the
background and goes on during evaluations, which are off the clock: a head start to keep in mind;
on fewer it is done before the first update, on the clock). Every library gets ``--threads``
threads (``OMP_NUM_THREADS``; for SBX at 1 thread, XLA's multi-threaded CPU ops are turned off).
A row per evaluation is appended to ``--out`` as it comes; running the same command again skips
the (library, seed) runs that finished and redoes those that were cut short.

    python benchmarks/time_to_threshold.py --env HalfCheetah-v5 --threshold 5000 --max-steps 300000 --seeds 0 1 2
    python benchmarks/time_to_threshold.py --env Hopper-v5 --threshold 2500 --max-steps 300000 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _sac_peers import LIBRARIES, base_env, inductor_cache, make_model  # noqa: E402

FIELDS = ["env", "device", "threads", "eval_every", "eval_episodes", "cache", "learning_starts",
          "library", "seed", "step", "train_s", "eval_return"]
# The columns that say which experiment a row belongs to (a row also names its library and seed).
SETTINGS = ("env", "device", "threads", "eval_every", "eval_episodes", "cache", "learning_starts")
# Every evaluation resets its episodes from the same seeds, so all libraries face the same starts.
EVAL_SEED = 10_000


# --------------------------------------------------------------------------- pure parts


def rotated(libraries: Sequence[str], index: int) -> list[str]:
    """The order of the libraries for the ``index``-th seed: each goes first in turn."""
    k = index % len(libraries)
    return list(libraries[k:]) + list(libraries[:k])


def eval_points(max_steps: int, every: int) -> list[int]:
    """The env steps after which a run is evaluated: every ``every`` steps, and at ``max_steps``."""
    return list(range(every, max_steps, every)) + [max_steps]


@dataclass(frozen=True)
class Outcome:
    """A run's first evaluation at or above the threshold, or how far it got without one
    (``step`` and ``seconds`` are then the last evaluation's: lower bounds)."""

    reached: bool
    step: int
    seconds: float


def outcome(rows: Iterable[dict], threshold: float, max_steps: int) -> Outcome | None:
    """The :class:`Outcome` of one run's rows (None: not evaluated yet)."""
    rows = sorted((r for r in rows if int(r["step"]) <= max_steps), key=lambda r: int(r["step"]))
    for r in rows:
        if float(r["eval_return"]) >= threshold:
            return Outcome(True, int(r["step"]), float(r["train_s"]))
    return Outcome(False, int(rows[-1]["step"]), float(rows[-1]["train_s"])) if rows else None


def finished(rows: Sequence[dict], threshold: float, max_steps: int) -> bool:
    """Whether a run's rows answer the question: it reached the threshold or ``max_steps``."""
    done = outcome(rows, threshold, max_steps)
    return done is not None and (done.reached or done.step >= max_steps)


@dataclass(frozen=True)
class Summary:
    """One library over its seeds: medians with a run that missed the threshold counted as
    infinitely slow (``inf``: at least half missed it), and ``lower_s``, the median with such runs
    at the time they trained, which bounds the true median from below."""

    outcomes: tuple[Outcome, ...]
    median_steps: float
    median_s: float
    lower_s: float


def summarize(outcomes: Sequence[Outcome]) -> Summary:
    inf = math.inf
    return Summary(tuple(outcomes),
                   statistics.median(o.step if o.reached else inf for o in outcomes),
                   statistics.median(o.seconds if o.reached else inf for o in outcomes),
                   statistics.median(o.seconds for o in outcomes))


def ratio_text(peer: str, peer_s: Summary, base: Summary) -> str:
    """``peer``'s wall-clock to threshold over maxent's, or the bound that is known."""
    if math.isfinite(peer_s.median_s) and math.isfinite(base.median_s):
        return f"{peer_s.median_s / base.median_s:.2f}x"
    if math.isfinite(base.median_s):
        return f"> {peer_s.lower_s / base.median_s:.2f}x ({peer} did not reach it)"
    if math.isfinite(peer_s.median_s):
        return f"< {peer_s.median_s / base.lower_s:.2f}x (maxent did not reach it)"
    return "n/a (neither reached it)"


def describe(o: Outcome) -> str:
    if o.reached:
        return f"{o.step} steps, {o.seconds:.1f} s"
    return f"not reached by {o.step} ({o.seconds:.1f} s)"


def report(rows: Sequence[dict], libraries: Sequence[str], seeds: Sequence[int], threshold: float,
           max_steps: int) -> list[str]:
    """The summary lines for one experiment's rows: per library and seed, the medians, and the
    ratios sb3/maxent and sbx/maxent of wall-clock to threshold (above 1: maxent is faster)."""
    lines, summaries = [], {}
    for lib in libraries:
        per_seed = {s: outcome((r for r in rows if r["library"] == lib and int(r["seed"]) == s),
                               threshold, max_steps) for s in seeds}
        done = [o for o in per_seed.values() if o is not None]
        if not done:
            lines.append(f"  {lib:7s} no evaluation yet")
            continue
        summary = summaries[lib] = summarize(done)
        reached = sum(o.reached for o in done)
        median = (f"median {summary.median_steps:.0f} steps, {summary.median_s:.1f} s"
                  if math.isfinite(summary.median_s) else f"median not reached by {max_steps}")
        lines.append(f"  {lib:7s} {median}   ({reached}/{len(done)} seeds reached it; "
                     + "; ".join(f"seed {s}: {describe(o)}"
                                 for s, o in per_seed.items() if o is not None) + ")")
    if "maxent" in summaries:
        for peer in ("sb3", "sbx"):
            if peer in summaries:
                lines.append(f"  {peer} / maxent wall-clock to threshold: "
                             f"{ratio_text(peer, summaries[peer], summaries['maxent'])}")
    return lines


# --------------------------------------------------------------------------- the CSV


def settings_of(args: argparse.Namespace) -> dict[str, str]:
    return {"env": args.env, "device": args.device, "threads": str(args.threads),
            "eval_every": str(args.eval_every), "eval_episodes": str(args.eval_episodes),
            "cache": "warm" if args.warm_cache else "empty",
            "learning_starts": "default" if args.learning_starts is None else str(args.learning_starts)}


def read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != FIELDS:
            raise SystemExit(f"{path} has columns {reader.fieldnames}, not this script's {FIELDS}; "
                             "pass another --out")
        return list(reader)


def experiment_rows(rows: Iterable[dict], settings: dict[str, str]) -> list[dict]:
    return [r for r in rows if all(r[k] == settings[k] for k in SETTINGS)]


def drop_run(path: Path, settings: dict[str, str], lib: str, seed: int) -> None:
    """Remove a cut-short run's rows (it is run again from the start), keeping every other row."""
    keep = [r for r in read_rows(path)
            if not (all(r[k] == settings[k] for k in SETTINGS) and r["library"] == lib
                    and int(r["seed"]) == seed)]
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
        writer.writeheader()
        writer.writerows(keep)
    os.replace(tmp, path)


def append_row(path: Path, row: dict) -> None:
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
        if new:
            writer.writeheader()
        writer.writerow(row)


# --------------------------------------------------------------------------- one run, own process


def _maxent_callback(points: list[int], at_eval: Callable[[int, float], bool]):
    """maxent's callback: at each evaluation point, evaluate outside the clock; stop when done."""
    from maxent.training.agent import Callback

    class EvalEvery(Callback):
        start = 0.0  # set just before learn, as SB3's chunks are timed around learn
        eval_s = 0.0
        i = 0

        def on_step(self, agent) -> bool:
            if agent.num_timesteps < points[self.i]:
                return True
            paused = time.perf_counter()
            stop = at_eval(agent.num_timesteps, paused - self.start - self.eval_s)
            self.eval_s += time.perf_counter() - paused
            self.i += 1
            return not stop and self.i < len(points)

    return EvalEvery()


def worker(args: argparse.Namespace) -> None:
    import torch

    from maxent.training.agent import evaluate
    from maxent.training.vector import env_factory

    torch.set_num_threads(args.threads)
    model = make_model(args.worker, args.env, args.seed, args.device, args.learning_starts)
    eval_env = env_factory(args.env)()
    out, settings = Path(args.out), settings_of(args)

    def at_eval(step: int, train_s: float) -> bool:
        returns = evaluate(model, eval_env, n_episodes=args.eval_episodes, seed=EVAL_SEED)
        ret = float(returns.mean())
        append_row(out, {**settings, "library": args.worker, "seed": args.seed, "step": step,
                         "train_s": f"{train_s:.2f}", "eval_return": f"{ret:.2f}"})
        print(f"[seed {args.seed}] {args.worker:7s} step {step:>8d}: eval {ret:9.1f}, "
              f"{train_s:8.1f} s training", flush=True)
        return ret >= args.threshold

    points = eval_points(args.max_steps, args.eval_every)
    if args.worker == "maxent":
        callback = _maxent_callback(points, at_eval)
        callback.start = time.perf_counter()
        model.learn(args.max_steps, callback=callback)
    else:
        train_s = 0.0
        for point in points:
            started = time.perf_counter()
            model.learn(point - model.num_timesteps, reset_num_timesteps=False)
            train_s += time.perf_counter() - started
            if at_eval(model.num_timesteps, train_s):
                break
    eval_env.close()


def run(lib: str, seed: int, args: argparse.Namespace) -> None:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", lib, "--seed", str(seed),
           "--env", args.env, "--threshold", repr(args.threshold),
           "--max-steps", str(args.max_steps),
           "--eval-every", str(args.eval_every), "--eval-episodes", str(args.eval_episodes),
           "--threads", str(args.threads), "--device", args.device, "--out", str(args.out)]
    if args.warm_cache:
        cmd.append("--warm-cache")
    if args.learning_starts is not None:
        cmd += ["--learning-starts", str(args.learning_starts)]
    env = {**base_env(), "OMP_NUM_THREADS": str(args.threads)}
    if lib == "sbx" and args.threads == 1:  # XLA's CPU ops otherwise use every core
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false "
                            "intra_op_parallelism_threads=1").strip()
    with inductor_cache(lib, env, args.warm_cache) as env:
        out = subprocess.run(cmd, stderr=subprocess.PIPE, text=True, env=env, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{lib} seed {seed} failed (its rows so far are in {args.out}):\n"
                         f"{out.stderr[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="HalfCheetah-v5")
    parser.add_argument("--threshold", type=float, required=True,
                        help="deterministic eval return to reach "
                             "(e.g. 5000 on HalfCheetah-v5, 2500 on Hopper-v5)")
    parser.add_argument("--max-steps", type=int, default=300_000,
                        help="give up after this many env steps")
    parser.add_argument("--eval-every", type=int, default=5000)
    parser.add_argument("--eval-episodes", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="one run of each library per seed; the first library rotates")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads of every library")
    parser.add_argument("--learning-starts", type=int, default=None,
                        help="random steps before learning, for every library (default: each one's, 100; "
                             "rl-zoo's MuJoCo SAC uses 10000)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--libraries", nargs="+", default=list(LIBRARIES), choices=list(LIBRARIES))
    parser.add_argument("--warm-cache", action="store_true",
                        help="let maxent use the machine's inductor cache instead of an empty one")
    parser.add_argument("--out", default=None,
                        help="CSV of evaluations "
                             "(default benchmarks/results/time-to-threshold/<env>.csv)")
    parser.add_argument("--worker", choices=list(LIBRARIES), help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    for name in ("max_steps", "eval_every", "eval_episodes", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.out is None:
        results = Path(__file__).resolve().parent / "results" / "time-to-threshold"
        args.out = str(results / f"{args.env}.csv")
    if args.worker is not None:
        worker(args)
        return

    libraries = list(dict.fromkeys(args.libraries))
    if "sbx" in libraries and (importlib.util.find_spec("sbx") is None or args.device != "cpu"):
        why = ("it is not installed (pip install sbx-rl)" if args.device == "cpu"
               else "it runs on the CPU only here")
        print(f"sbx left out: {why}", flush=True)
        libraries.remove("sbx")
    out, settings = Path(args.out), settings_of(args)
    out.parent.mkdir(parents=True, exist_ok=True)
    for index, seed in enumerate(args.seeds):
        for lib in rotated(libraries, index):
            mine = [r for r in experiment_rows(read_rows(out), settings)
                    if r["library"] == lib and int(r["seed"]) == seed]
            if finished(mine, args.threshold, args.max_steps):
                print(f"[seed {seed}] {lib:7s} finished earlier ({out}): skipped", flush=True)
                continue
            if mine:
                drop_run(out, settings, lib, seed)
            run(lib, seed, args)

    rows = experiment_rows(read_rows(out), settings)
    print(f"\n{args.env}: wall-clock (training only) to a deterministic eval return "
          f">= {args.threshold:g} ({args.eval_episodes} episodes every {args.eval_every} steps, "
          f"at most {args.max_steps}); "
          f"seeds {args.seeds}, device {args.device}, threads {args.threads}, each library's defaults, "
          f"learning_starts {settings['learning_starts']}, {settings['cache']} inductor cache")
    print("\n".join(report(rows, libraries, args.seeds, args.threshold, args.max_steps)))


if __name__ == "__main__":
    main()
