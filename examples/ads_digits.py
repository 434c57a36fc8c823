"""Active Diffusion Subsampling on held-out digits (Nolan et al., TMLR 2025): reconstruction error
against the number of measurements for the maximum-entropy rule (ADS), random locations and a
fixed data-variance mask, all reconstructed by the same diffusion posterior.

Each seed hides a different held-out scikit-learn digit (8x8). At every measurement count k the
reconstruction is the mean of ``--eval-particles`` posterior samples given the k measurements,
drawn with the same random numbers for every strategy (common random numbers, so differences
come from the masks). The env's conditional-Gaussian estimate is logged as a second metric.

    python examples/ads_digits.py --seeds 20 --budget 24 --train-steps 4000

Writes ``results.csv`` (one row per strategy, seed, k), ``summary.csv`` and ``ads_digits.png``
(MAE vs k with 95% intervals, and the acquisition order on a few digits) into ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from maxent.agents.ads import ADS, ADSConfig
from maxent.envs.subsampling import MeasurementAcquisition

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import save_figure  # noqa: E402  (a sibling module of this script)

STRATEGY_NAMES = {"ads": "ADS (max entropy)", "gmm": "GM entropy (KL bound)",
                  "random": "random", "data_variance": "data variance"}


def mean_ci(values: np.ndarray) -> tuple[float, float]:
    """Mean and half-width of the 95% t-interval over axis 0."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    if n < 2:
        return float(values.mean()), float("nan")
    half = stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / np.sqrt(n)
    return float(values.mean()), float(half)


def run_episode(agent: ADS, env: MeasurementAcquisition, index: int, budget: int, seed: int,
                eval_particles: int) -> dict:
    """One episode on test digit ``index``: MAEs after 0..budget measurements and the order."""
    obs, info = env.reset(seed=seed, options={"index": index})
    order = np.full((env.height, env.width), -1)

    def diffusion_mae(obs: dict, k: int) -> float:
        # Same generator seed for every strategy at equal (seed, k): common random numbers.
        g = torch.Generator().manual_seed(100_003 * seed + k)
        recon = agent.reconstruct(obs["measurements"], obs["mask"], eval_particles, g)
        return float(np.abs(recon - env.image).mean())

    mae_diff, mae_gauss = [diffusion_mae(obs, 0)], [info["mae"]]
    for k in range(1, budget + 1):
        action = agent.predict(obs)
        obs, _, terminated, _, info = env.step(action)
        order[env.location_pixels(action)] = k
        mae_diff.append(diffusion_mae(obs, k))
        mae_gauss.append(info["mae"])
    assert terminated
    return {"mae_diffusion": mae_diff, "mae_gaussian": mae_gauss, "order": order,
            "recon": agent.reconstruct(obs["measurements"], obs["mask"], eval_particles,
                                       torch.Generator().manual_seed(seed)),
            "image": env.image.copy()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=20, help="held-out digits (one per seed)")
    p.add_argument("--budget", type=int, default=24, help="measurements per digit")
    p.add_argument("--mode", default="pixel", choices=["pixel", "line"])
    p.add_argument("--train-steps", type=int, default=4000, help="denoiser gradient steps")
    p.add_argument("--n-particles", type=int, default=16, help="particles for acquisition")
    p.add_argument("--eval-particles", type=int, default=16, help="particles for the MAE")
    p.add_argument("--sigma", type=float, default=1.0, help="entropy kernel width (pixels)")
    p.add_argument("--strategies", default="ads,random,data_variance")
    p.add_argument("--model", type=Path, default=None,
                   help="load this checkpoint instead of training (trained ones go to OUT/model)")
    p.add_argument("--model-seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/ads_digits"))
    args = p.parse_args()
    torch.set_num_threads(1)
    strategies = args.strategies.split(",")
    args.out.mkdir(parents=True, exist_ok=True)

    env = MeasurementAcquisition(budget=args.budget, mode=args.mode)
    config = ADSConfig(n_particles=args.n_particles, sigma=args.sigma)
    t0 = time.time()
    if args.model is None:
        ADS(env, config, seed=args.model_seed).learn(args.train_steps).save(args.out / "model")
        model_path = args.out / "model"
        print(f"trained the denoiser for {args.train_steps} steps in {time.time() - t0:.0f} s")
    else:
        model_path = args.model
    agents = {s: ADS.load(model_path, env=env, strategy=s, n_particles=args.n_particles,
                          sigma=args.sigma) for s in strategies}

    # Different held-out digits, one per seed, drawn without replacement.
    indices = np.random.default_rng(12345).permutation(len(env.test_images))[:args.seeds]
    results: dict[str, list[dict]] = {s: [] for s in strategies}
    rows = []
    t0 = time.time()
    for seed, index in enumerate(indices):
        for s in strategies:
            agents[s].sample_generator.manual_seed(10_007 * seed + 1)
            r = run_episode(agents[s], env, int(index), args.budget, seed, args.eval_particles)
            results[s].append(r)
            for k, (md, mg) in enumerate(zip(r["mae_diffusion"], r["mae_gaussian"])):
                rows.append({"strategy": s, "seed": seed, "digit_index": int(index),
                             "n_measurements": k, "mae_diffusion": md, "mae_gaussian": mg})
    elapsed = time.time() - t0
    with open(args.out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)

    # Summary: mean ± 95% CI, and paired differences against ADS (same digits, same noise).
    ks = sorted({k for k in (4, 8, 12, 16, 24, 32, args.budget) if k <= args.budget})
    curves = {s: {m: np.array([r[m] for r in results[s]]) for m in ("mae_diffusion",
                                                                    "mae_gaussian")}
              for s in strategies}
    summary = []
    print(f"\n{len(indices)} held-out digits, {args.mode} mode, N = {args.n_particles}, "
          f"sigma = {args.sigma}; {elapsed:.0f} s for the episodes")
    print("MAE of the diffusion posterior mean (mean ± 95% CI) after k measurements")
    print(f"{'strategy':24s}" + "".join(f"{'k=' + str(k):>18s}" for k in ks))
    for s in strategies:
        cells = []
        for k in ks:
            m, h = mean_ci(curves[s]["mae_diffusion"][:, k])
            mg, hg = mean_ci(curves[s]["mae_gaussian"][:, k])
            cells.append(f"{m:.4f} ± {h:.4f}")
            summary.append({"strategy": s, "n_measurements": k, "metric": "mae_diffusion",
                            "mean": m, "ci95": h})
            summary.append({"strategy": s, "n_measurements": k, "metric": "mae_gaussian",
                            "mean": mg, "ci95": hg})
        print(f"{STRATEGY_NAMES.get(s, s):24s}" + "".join(f"{c:>18s}" for c in cells))
    if "ads" in strategies:
        for s in strategies:
            if s == "ads":
                continue
            cells = []
            for k in ks:
                d = curves["ads"]["mae_diffusion"][:, k] - curves[s]["mae_diffusion"][:, k]
                m, h = mean_ci(d)
                cells.append(f"{m:+.4f} ± {h:.4f}")
                summary.append({"strategy": f"ads_minus_{s}", "n_measurements": k,
                                "metric": "mae_diffusion", "mean": m, "ci95": h})
            print(f"{'ADS - ' + s:24s}" + "".join(f"{c:>18s}" for c in cells))
        print("(negative = ADS reconstructs better; interval excluding 0 = significant)")
        print("\nMAE of the env's conditional-Gaussian estimate at the same masks")
        for s in strategies:
            cells = [f"{mean_ci(curves[s]['mae_gaussian'][:, k])[0]:.4f}" for k in ks]
            print(f"{STRATEGY_NAMES.get(s, s):24s}" + "".join(f"{c:>18s}" for c in cells))
    with open(args.out / "summary.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(summary[0]))
        w.writeheader()
        w.writerows(summary)
    plot(args, strategies, curves, results)


def plot(args, strategies, curves, results) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_show = min(3, len(results[strategies[0]]))
    fig = plt.figure(figsize=(13, 3.2 * max(n_show, 2)))
    grid = fig.add_gridspec(max(n_show, 2), 2 + len(strategies), width_ratios=[3, 0.1]
                            + [1] * len(strategies))
    ax = fig.add_subplot(grid[:, 0])
    k = np.arange(args.budget + 1)
    for s in strategies:
        stats_k = [mean_ci(curves[s]["mae_diffusion"][:, j]) for j in k]
        m = np.array([a for a, _ in stats_k])
        h = np.nan_to_num(np.array([b for _, b in stats_k]))
        ax.plot(k, m, label=STRATEGY_NAMES.get(s, s))
        ax.fill_between(k, m - h, m + h, alpha=0.25)
    ax.set_xlabel(f"measurements ({args.mode}s)")
    ax.set_ylabel("MAE of posterior-mean reconstruction")
    ax.set_title(f"{len(results[strategies[0]])} held-out digits, 95% CI")
    ax.legend()
    for row in range(n_show):
        for col, s in enumerate(strategies):
            r = results[s][row]
            a = fig.add_subplot(grid[row, 2 + col])
            a.imshow(r["image"], cmap="gray", vmin=0, vmax=1)
            order = r["order"]
            for (i, j), v in np.ndenumerate(order):
                if v > 0:
                    a.text(j, i, str(v), ha="center", va="center", fontsize=6, color="red")
            a.set_xticks([])
            a.set_yticks([])
            if row == 0:
                a.set_title(f"{STRATEGY_NAMES.get(s, s)}\norder of acquisition", fontsize=8)
    save_figure(fig, args.out / "ads_digits.png", args.out / "results.csv", args.out / "summary.csv")


if __name__ == "__main__":
    main()
