"""A test of QARL's robustness claim (Reddi et al., ICLR 2024) that can fail: QARL vs RARL vs SAC vs
domain-randomised SAC, the same env-step budget for all, >= 5 seeds each, scored on the mesh of an
RRLS uncertainty set (Zouitine et al. 2024; both bounds of every range included) and against each
adversarial method's trained adversary, aggregated with rliable (IQM with stratified-bootstrap 95%
CIs, probability of improvement).

The claim is tested before the numbers are seen: for every other method X and every headline score
(mesh mean, mesh 10th percentile, mesh worst case, return against QARL's and RARL's adversaries),
it is *supported* when the 95% CI of P(QARL > X) lies above 0.5, *contradicted* when it lies below,
and *inconclusive* otherwise.

It is one `maxent sweep` (maxent/cli/sweep.py), so it is resumable: run the same command again
after a kill and it skips finished runs, resumes killed ones and re-uses cached scores.

    python benchmarks/robustness_claim.py --tasks Hopper-v5 --seeds 5 --budget 100000 --max-force 5
    python benchmarks/robustness_claim.py --tiny          # end-to-end check in about a minute
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from maxent.cli.sweep import LABELS, load_sweep_config, run_sweep

HEADLINE = ("mesh_mean", "mesh_p10", "mesh_worst", "vs_QARL", "vs_RARL")


def verdicts(aggregates: dict, claim: str = "QARL") -> list[tuple]:
    """(budget, score, other method, P(claim > other), its 95% CI, verdict) for every headline score."""
    out = []
    for budget, entry in aggregates.get("budgets", {}).items():
        for score in HEADLINE:
            for pair, value in entry.get("probability_of_improvement", {}).get(score, {}).items():
                first, other = pair.split(",")
                if first != claim:
                    continue
                low, high = value["ci95"]
                verdict = "supported" if low > 0.5 else "contradicted" if high < 0.5 else "inconclusive"
                out.append((budget, score, other, value["p"], [low, high], verdict))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["Hopper-v5"])
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 per method (>= 5)")
    parser.add_argument("--budget", type=float, default=100_000, help="env steps per run, all methods")
    parser.add_argument("--max-force", type=float, default=5.0,
                        help="adversary force bound (N) of QARL and RARL, from the strength measurement")
    parser.add_argument("--root", type=Path, default=Path("runs/robustness-claim"))
    parser.add_argument("--backend", choices=["auto", "ray", "sequential"], default="auto")
    parser.add_argument("--address", default=None, help="a Ray cluster to run on")
    parser.add_argument("--workers", type=int, default=None, help="Ray CPUs here (default: cores)")
    parser.add_argument("--points-per-dim", type=int, default=10, help="mesh values per parameter")
    parser.add_argument("--tiny", action="store_true",
                        help="a few hundred steps, 2 seeds, small networks: checks the pipeline only")
    args = parser.parse_args(argv)
    if not args.tiny and args.seeds < 5:
        parser.error("the claim test needs >= 5 seeds per method (use --tiny to check the pipeline)")
    adversary = {"max_force": args.max_force}
    fields = dict(
        methods=["qarl", "rarl", "sac", "dr"], tasks=args.tasks, seeds=args.seeds,
        budgets=[int(args.budget)], root=str(args.root), backend=args.backend, address=args.address,
        workers=args.workers, claim="qarl", checkpoint_every=max(1000, int(args.budget) // 10),
        points_per_dim=args.points_per_dim, episodes=1, adversary_episodes=10,
        # One network size and replay setting for every method, so only the method differs.
        common={"hidden_sizes": [256, 256], "batch_size": 256, "buffer_size": 1_000_000,
                "learning_starts": 5_000},
        qarl=dict(adversary), rarl=dict(adversary))
    if args.tiny:
        fields.update(seeds=2, budgets=[300], root=str(args.root) + "-tiny", checkpoint_every=100,
                      points_per_dim=2, adversary_episodes=2, max_episode_steps=50, bootstrap_reps=200,
                      common={"hidden_sizes": [32, 32], "batch_size": 32, "buffer_size": 5_000,
                              "learning_starts": 50, "log_interval": 100},
                      qarl={**adversary, "episodes_per_phase": 2, "samples_per_update": 4,
                            "performance_bound": 1.0},
                      rarl={**adversary, "episodes_per_phase": 2})
    cfg = load_sweep_config(overrides=fields)
    result = run_sweep(cfg)
    print(f"\nplots: {', '.join(str(p) for k, p in result.files.items() if str(p).endswith('.png'))}")
    rows = verdicts(result.aggregates, LABELS[cfg.claimed])
    print("\nThe claim, pre-registered: P(QARL > X) with its 95% stratified-bootstrap CI")
    print("| budget | score | X | P(QARL > X) | 95% CI | verdict |\n|---|---|---|---|---|---|")
    for budget, score, other, p, (low, high), verdict in rows:
        print(f"| {budget} | {score} | {other} | {p:.2f} | [{low:.2f}, {high:.2f}] | {verdict} |")
    (result.root / "report" / "claim.json").write_text(json.dumps(
        [dict(zip(("budget", "score", "other", "p", "ci95", "verdict"), r)) for r in rows], indent=1))
    if result.failed:
        print(f"\n{len(result.failed)} run(s) unfinished; run the same command again to resume them")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
