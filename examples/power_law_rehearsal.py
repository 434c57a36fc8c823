"""Power-law rehearsal against catastrophic interference (Gandhi et al. 2024, arXiv 2401.10393):
does rehearsing earlier tasks with power-law recency match or beat EWC and non-power-law
rehearsal on permuted digits?

    python examples/power_law_rehearsal.py [--out runs/power_law_rehearsal] [--seeds 5]  # ~5 min

Tasks are fixed pixel permutations of scikit-learn's 8x8 digits (domain-incremental, one head).
After each new task the stream rehearses earlier tasks with the same sample budget under every
schedule (uniform, exponential, power law; ages since a task was last seen, or with "@intro"
since it was introduced); "none" rehearses nothing and EWC (Kirkpatrick et al. 2017) regularises
instead. Per run: average final accuracy, forgetting (mean drop from each task's best), and
forward facilitation (a new task's test accuracy after its first 5 batches, mean over tasks 2..T).
Sweeps: number of tasks at the default budget, and rehearsal budget at the default task count.
Writes ``runs.csv`` (one row per run), ``curves.csv`` (mean accuracy matrices of the main setting)
and ``power_law_rehearsal.png``; prints means with 95% confidence intervals over seeds.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from scipy import stats

from maxent.agents.rehearsal import EWC, EWCConfig, RehearsalConfig, RehearsalLearner
from maxent.envs.continual import PermutedTaskStream, average_accuracy, forgetting

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import save_figure  # noqa: E402  (a sibling module of this script)

# name -> (schedule, age_from, ewc_lambda)
METHODS = {
    "none": ("none", "last_seen", 0.0),
    "uniform": ("uniform", "last_seen", 0.0),
    "exponential": ("exponential", "last_seen", 0.0),
    "power": ("power", "last_seen", 0.0),
    "exponential@intro": ("exponential", "introduced", 0.0),
    "power@intro": ("power", "introduced", 0.0),
    "EWC λ=50": ("none", "last_seen", 50.0),
    "EWC λ=500": ("none", "last_seen", 500.0),
}
REHEARSING = [m for m, (s, _, _) in METHODS.items() if s != "none"]


def run(method: str, n_tasks: int, fraction: float, seed: int, args) -> dict:
    schedule, age_from, lam = METHODS[method]
    stream = PermutedTaskStream(n_tasks=n_tasks, schedule=schedule, rehearsal_fraction=fraction,
                                exponent=args.exponent, decay=args.decay, visits=args.visits,
                                age_from=age_from, epochs=args.epochs, seed=seed)
    hidden = tuple(args.hidden)
    if lam > 0:
        agent = EWC(stream, EWCConfig(hidden_sizes=hidden, ewc_lambda=lam), seed=seed)
    else:
        agent = RehearsalLearner(stream, RehearsalConfig(hidden_sizes=hidden), seed=seed)
    agent.learn(stream.total_batches())
    R = agent.accuracy
    return {"method": method, "n_tasks": n_tasks, "fraction": fraction, "seed": seed,
            "avg_accuracy": average_accuracy(R), "forgetting": forgetting(R),
            "facilitation": float(np.mean(agent.early_accuracy[1:])) if n_tasks > 1 else np.nan,
            "first_task_final": float(R[-1, 0]), "rehearsed": stream.samples_rehearsed(),
            "R": R}


def ci95(x: np.ndarray) -> tuple[float, float]:
    x = np.asarray(x, dtype=np.float64)
    half = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)) if len(x) > 1 else 0
    return float(x.mean()), float(half)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/power_law_rehearsal"))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--tasks", type=int, default=10, help="tasks in the main setting")
    parser.add_argument("--fraction", type=float, default=0.25,
                        help="rehearsal budget per phase, as a fraction of one task's train set")
    parser.add_argument("--task-sweep", type=int, nargs="*", default=[5, 10, 20])
    parser.add_argument("--fraction-sweep", type=float, nargs="*", default=[0.1, 0.25, 0.5, 1.0])
    parser.add_argument("--exponent", type=float, default=1.0)
    parser.add_argument("--decay", type=float, default=2.0)
    parser.add_argument("--visits", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3, help="passes over each new task")
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    seeds = range(args.seeds)
    start = time.perf_counter()

    results: list[dict] = []
    cache: dict[tuple, dict] = {}

    def get(method, n_tasks, fraction, seed):
        if METHODS[method][0] == "none":
            fraction = 0.0  # the budget does not apply: run once, reuse across the sweep
        key = (method, n_tasks, fraction, seed)
        if key not in cache:
            cache[key] = run(method, n_tasks, fraction, seed, args)
            results.append(cache[key])
        return cache[key]

    main_runs = {m: [get(m, args.tasks, args.fraction, s) for s in seeds] for m in METHODS}
    task_sweep = {m: {n: [get(m, n, args.fraction, s) for s in seeds] for n in args.task_sweep}
                  for m in METHODS}
    frac_sweep = {m: {f: [get(m, args.tasks, f, s) for s in seeds] for f in args.fraction_sweep}
                  for m in METHODS}

    fields = ["method", "n_tasks", "fraction", "seed", "avg_accuracy", "forgetting",
              "facilitation", "first_task_final", "rehearsed"]
    with open(args.out / "runs.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(results)
    with open(args.out / "curves.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "after_phase", "task", "mean_accuracy"])
        for m, runs in main_runs.items():
            R = np.mean([r["R"] for r in runs], axis=0)
            for i in range(R.shape[0]):
                for j in range(R.shape[1]):
                    w.writerow([m, i, j, f"{R[i, j]:.4f}"])

    # ---- summary table
    print(f"\nmain setting: {args.tasks} tasks, budget {args.fraction} of a task per phase, "
          f"exponent {args.exponent}, decay {args.decay}, {args.seeds} seeds (mean ± 95% CI)")
    print(f"{'method':<18} {'avg accuracy':>16} {'forgetting':>16} {'facilitation':>16} "
          f"{'rehearsed':>9}")
    for m, runs in main_runs.items():
        cols = [ci95([r[k] for r in runs]) for k in ("avg_accuracy", "forgetting", "facilitation")]
        print(f"{m:<18} " + " ".join(f"{mu:>9.3f} ± {h:.3f}" for mu, h in cols)
              + f" {runs[0]['rehearsed']:>9}")
    print("\naverage accuracy by number of tasks")
    print(f"{'method':<18}" + "".join(f"{n:>16}" for n in args.task_sweep))
    for m in METHODS:
        print(f"{m:<18}" + "".join("{:>9.3f} ± {:.3f}".format(*ci95(
            [r["avg_accuracy"] for r in task_sweep[m][n]])) for n in args.task_sweep))
    print("\naverage accuracy by rehearsal budget (fraction of one task per phase)")
    print(f"{'method':<18}" + "".join(f"{f:>16}" for f in args.fraction_sweep))
    for m in METHODS:
        print(f"{m:<18}" + "".join("{:>9.3f} ± {:.3f}".format(*ci95(
            [r["avg_accuracy"] for r in frac_sweep[m][f]])) for f in args.fraction_sweep))
    # paired comparison of power law with each other method in the main setting (same seeds)
    print("\npower minus other (main setting, avg accuracy; paired over seeds)")
    p = np.array([r["avg_accuracy"] for r in main_runs["power"]])
    for m in METHODS:
        if m != "power":
            d = p - np.array([r["avg_accuracy"] for r in main_runs[m]])
            print(f"  vs {m:<18} {ci95(d)[0]:+.3f} ± {ci95(d)[1]:.3f}")

    # ---- figure
    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    colors = dict(zip(METHODS, plt.cm.tab10.colors))
    ax = axes[0, 0]
    for m, runs in main_runs.items():
        # mean accuracy over the tasks seen so far, after each phase
        curves = np.array([[r["R"][i, :i + 1].mean() for i in range(args.tasks)] for r in runs])
        mu, half = zip(*(ci95(c) for c in curves.T))
        x = np.arange(1, args.tasks + 1)
        ax.plot(x, mu, label=m, color=colors[m])
        ax.fill_between(x, np.subtract(mu, half), np.add(mu, half), alpha=0.15, color=colors[m])
    ax.set(xlabel="tasks learned", ylabel="mean accuracy on tasks seen so far",
           title=f"{args.tasks} permuted-digit tasks, budget {args.fraction}")
    ax.legend(fontsize=8)
    for ax, sweep, keys, label in ((axes[0, 1], task_sweep, args.task_sweep, "number of tasks"),
                                   (axes[1, 0], frac_sweep, args.fraction_sweep,
                                    "rehearsal budget (fraction of one task per phase)")):
        for m in METHODS:
            mu, half = zip(*(ci95([r["avg_accuracy"] for r in sweep[m][k]]) for k in keys))
            ax.errorbar(keys, mu, yerr=half, label=m, color=colors[m], marker="o", capsize=3)
        ax.set(xlabel=label, ylabel="final average accuracy")
    axes[1, 0].set_xscale("log")
    ax = axes[1, 1]
    width = 0.4
    x = np.arange(len(METHODS))
    for k, (key, name) in enumerate((("forgetting", "forgetting"),
                                     ("facilitation", "new-task acc. after 5 batches"))):
        mu, half = zip(*(ci95([r[key] for r in main_runs[m]]) for m in METHODS))
        ax.bar(x + (k - 0.5) * width, mu, width, yerr=half, capsize=3, label=name)
    ax.set_xticks(x, list(METHODS), rotation=30, ha="right", fontsize=8)
    ax.set(title="main setting", ylabel="value")
    ax.legend(fontsize=8)
    print(f"\n{len(results)} runs in {time.perf_counter() - start:.0f} s")
    save_figure(fig, args.out / "power_law_rehearsal.png", args.out / "runs.csv",
                args.out / "curves.csv")


if __name__ == "__main__":
    main()
