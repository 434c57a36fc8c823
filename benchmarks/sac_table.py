"""The MuJoCo learning table of maxent SAC and its presets: IQM with 95% stratified-bootstrap CIs
(Agarwal et al., NeurIPS 2021) over seeds of every (env, variant), beside published figures.

Reads every ``<run>-eval.csv`` (and ``<run>/eval.csv``, the layout benchmarks/sac_mujoco.py writes)
in ``--dir``; a run name is ``<env>[-<variant>]-s<seed>`` (no variant: vanilla SAC). Per (env,
variant) it gives the IQM of the evaluation at ``--at`` steps (a shorter run's last evaluation,
marked with its step), the IQM of each seed's best evaluation up to ``--at``, each seed's
final/best ratio and the no-collapse check (final >= 0.8 x best); then the targets the family aims at and the
cells still missing.

    python benchmarks/sac_table.py
    python benchmarks/sac_table.py --dir runs/sac-mujoco --plot runs/sac-mujoco/table-curves.png
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_DIR = Path(__file__).resolve().parent / "results" / "sac-mujoco"
ENVS = ("HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Ant-v5")
VANILLA = "sac"
COLLAPSE_RATIO = 0.8
RUN_NAME = re.compile(r"^(?P<env>[A-Za-z0-9]+-v\d+)(?:-(?P<variant>.+?))?-s(?P<seed>\d+)$")


@dataclass(frozen=True)
class Published:
    """One published figure: the mean return over ``seeds`` runs at ``step`` env steps."""

    env: str        # the MuJoCo task, without version: the figures are on v4
    step: int
    method: str
    value: float
    seeds: int
    source: str


# Every figure below was recomputed from the per-seed logs in dojeon-ai/SimbaV2 (commit 14fafb2,
# files under results/): rows with metric avg_return of the env's -v4 task, the mean over all its
# seeds at the logged step nearest the nominal one (files logged every 16,666 steps have 299,988
# and 999,960). The best-at-300k figure of an env is the highest such mean among SAC, CrossQ,
# DroQ (UTD 20), REDQ (UTD 20), BRO (UTD 2, 10), MR.Q and SimbaV2 (UTD 2).
_SIMBA = "dojeon-ai/SimbaV2@14fafb2 results/baseline/"


def _logged(file: str, step: int, paper: str = "") -> str:
    return f"{_SIMBA}{file}: mean of its 10 seeds at env_step {step}" + (f" ({paper})" if paper else "")


_SAC, _V2 = "sac.csv", "simbaV2_utd2.csv"
_V2_PAPER = "Lee et al. 2025"
PUBLISHED = (
    Published("HalfCheetah", 300_000, "MR.Q", 10835, 10,
              _logged("mrq.csv", 300_000, "Fujimoto et al. 2025")),
    Published("Hopper", 300_000, "SimbaV2 UTD2", 3502, 10, _logged(_V2, 300_000, _V2_PAPER)),
    Published("Walker2d", 300_000, "CrossQ", 5941, 10,
              _logged("crossq.csv", 300_000, "Bhatt et al. 2024")),
    Published("Ant", 300_000, "SimbaV2 UTD2", 6200, 10, _logged(_V2, 300_000, _V2_PAPER)),
    Published("HalfCheetah", 300_000, "SAC", 8593, 10, _logged(_SAC, 299_988)),
    Published("Hopper", 300_000, "SAC", 2160, 10, _logged(_SAC, 299_988)),
    Published("Walker2d", 300_000, "SAC", 2470, 10, _logged(_SAC, 299_988)),
    Published("Ant", 300_000, "SAC", 3532, 10, _logged(_SAC, 299_988)),
    Published("HalfCheetah", 1_000_000, "SAC", 11321, 10, _logged(_SAC, 999_960)),
    Published("Hopper", 1_000_000, "SAC", 2787, 10, _logged(_SAC, 999_960)),
    Published("Walker2d", 1_000_000, "SAC", 4536, 10, _logged(_SAC, 999_960)),
    Published("Ant", 1_000_000, "SAC", 5734, 10, _logged(_SAC, 999_960)),
    Published("HalfCheetah", 1_000_000, "SimbaV2 UTD2", 12022, 10, _logged(_V2, 1_000_000, _V2_PAPER)),
    Published("Hopper", 1_000_000, "SimbaV2 UTD2", 4054, 10, _logged(_V2, 1_000_000, _V2_PAPER)),
    Published("Walker2d", 1_000_000, "SimbaV2 UTD2", 6938, 10, _logged(_V2, 1_000_000, _V2_PAPER)),
    Published("Ant", 1_000_000, "SimbaV2 UTD2", 7429, 10, _logged(_V2, 1_000_000, _V2_PAPER)),
)

# What differs between the v4 tasks of the published figures and the v5 tasks run here (from
# Gymnasium's version notes of each env); HalfCheetah's dynamics and reward are unchanged.
V5_CHANGES = {
    "HalfCheetah": "same model and reward as v4",
    "Hopper": "healthy reward no longer paid on the terminating unhealthy step (at most 1 per episode)",
    "Walker2d": "right-foot friction 0.9 -> 1.9 (both feet equal); healthy reward as Hopper",
    "Ant": "contact cost always in the reward and contact forces in the observation (105 dims, "
           "v4 default 27); healthy reward as Hopper",
}


def task(env: str) -> str:
    """``Hopper-v5`` -> ``Hopper``: published figures are keyed by task, not version."""
    return env.rsplit("-v", 1)[0]


def published_best(env: str, step: int = 300_000) -> Published | None:
    """The highest published mean at ``step`` for the env's task."""
    entries = [p for p in PUBLISHED if p.env == task(env) and p.step == step]
    return max(entries, key=lambda p: p.value) if entries else None


def published(env: str, step: int, method: str) -> Published | None:
    return next((p for p in PUBLISHED if p.env == task(env) and p.step == step and p.method == method), None)


# -- runs -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Run:
    env: str
    variant: str
    seed: int
    steps: np.ndarray
    returns: np.ndarray
    path: Path

    def upto(self, at: int) -> tuple[int, float, float]:
        """(step, return) of the evaluation at ``at`` (the last one before it if the run is
        shorter), and the best return up to ``at``."""
        keep = self.steps <= at
        if not keep.any():
            raise ValueError(f"{self.path}: no evaluation at or before step {at}; lower --at")
        steps, returns = self.steps[keep], self.returns[keep]
        return int(steps[-1]), float(returns[-1]), float(returns.max())


def parse_name(name: str, path: Path) -> tuple[str, str, int]:
    match = RUN_NAME.match(name)
    if match is None:
        raise ValueError(f"{path}: run name {name!r} is not <env>-v<N>[-<variant>]-s<seed>; "
                         "rename it as benchmarks/sac_mujoco.py names its run folders")
    return match["env"], match["variant"] or VANILLA, int(match["seed"])


def read_eval(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Steps and mean returns of an eval.csv; a step written twice (a run resumed after a kill
    before its checkpoint) keeps its last row, as benchmarks/sac_mujoco.py documents."""
    by_step: dict[int, float] = {}
    with path.open() as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"step", "mean_return"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: needs the columns step and mean_return "
                             "(the eval.csv of benchmarks/sac_mujoco.py)")
        for row in reader:
            by_step[int(float(row["step"]))] = float(row["mean_return"])
    steps = np.array(sorted(by_step), dtype=np.int64)
    return steps, np.array([by_step[s] for s in steps], dtype=np.float64)


def load_runs(folder: str | Path) -> list[Run]:
    """Every run with at least one evaluation in ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"--dir {folder} is not a folder; give the folder holding the *-eval.csv files")
    files = [(p.name[: -len("-eval.csv")], p) for p in sorted(folder.glob("*-eval.csv"))]
    files += [(p.parent.name, p) for p in sorted(folder.glob("*/eval.csv"))]
    runs, seen = [], {}
    for name, path in files:
        if name in seen:
            raise ValueError(f"run {name} is both {seen[name]} and {path}; keep one of them")
        seen[name] = path
        env, variant, seed = parse_name(name, path)
        steps, returns = read_eval(path)
        if len(steps):
            runs.append(Run(env, variant, seed, steps, returns, path))
    return runs


# -- statistics -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Cell:
    env: str
    variant: str
    seeds: tuple[int, ...]
    steps: tuple[int, ...]        # the step each seed is scored at
    finals: tuple[float, ...]
    bests: tuple[float, ...]
    final_iqm: tuple[float, float, float]   # IQM, CI low, CI high
    best_iqm: tuple[float, float, float]

    def ratios(self) -> list[float | None]:
        return [f / b if b > 0 else None for f, b in zip(self.finals, self.bests)]

    def collapsed(self) -> list[int]:
        """Seeds whose final evaluation fell below 0.8 x their best (best > 0)."""
        return [s for s, f, b in zip(self.seeds, self.finals, self.bests)
                if b > 0 and f < COLLAPSE_RATIO * b]


def iqm_ci(scores: list[float] | np.ndarray, reps: int = 2_000, seed: int = 0) -> tuple[float, float, float]:
    """rliable's IQM of per-seed scores (one task) and its 95% stratified-bootstrap interval."""
    from rliable import metrics

    from maxent.cli.sweep.report import stratified_bootstrap

    x = np.asarray(scores, dtype=np.float64).reshape(-1, 1)
    point, (low, high) = stratified_bootstrap(metrics.aggregate_iqm, x, reps=reps, seed=seed)
    return point, low, high


def cells(runs: list[Run], at: int, reps: int = 2_000) -> list[Cell]:
    """One cell per (env, variant), envs in the table's order, vanilla first."""
    groups: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.env, run.variant), []).append(run)
    order = {env: i for i, env in enumerate(ENVS)}
    out = []
    for (env, variant), group in sorted(groups.items(), key=lambda kv: (
            order.get(kv[0][0], len(ENVS)), kv[0][0], kv[0][1] != VANILLA, kv[0][1])):
        group.sort(key=lambda r: r.seed)
        scored = [r.upto(at) for r in group]
        finals = [f for _, f, _ in scored]
        bests = [b for _, _, b in scored]
        out.append(Cell(env, variant, tuple(r.seed for r in group), tuple(s for s, _, _ in scored),
                        tuple(finals), tuple(bests), iqm_ci(finals, reps), iqm_ci(bests, reps)))
    return out


# -- report ---------------------------------------------------------------------------------------

def _k(step: int) -> str:
    return f"{step / 1e6:g}M" if step >= 1_000_000 and step % 100_000 == 0 else f"{step / 1e3:g}k"


def _iqm(v: tuple[float, float, float]) -> str:
    return f"{v[0]:.0f} [{v[1]:.0f}, {v[2]:.0f}]"


def _published_cells(env: str, at: int) -> tuple[str, str]:
    best = published_best(env, at)
    sac = published(env, at, "SAC")
    first = "–" if best is None else f"{best.value:.0f} ({best.method})"
    if sac is not None and best is not None and sac is not best:
        first += f"; SAC {sac.value:.0f}"
    million = [p for p in (published(env, 1_000_000, "SAC"), published(env, 1_000_000, "SimbaV2 UTD2")) if p]
    return first, " / ".join(f"{p.value:.0f}" for p in million) or "–"


def table(cs: list[Cell], at: int) -> str:
    """The markdown learning table: published figures on each env's first row."""
    lines = [f"| env | variant | seeds | IQM at {_k(at)} [95% CI] | IQM of best ≤ {_k(at)} [95% CI] "
             f"| final/best per seed | no collapse | published {_k(at)}: best (method); SAC "
             "| published 1M: SAC / SimbaV2 |",
             "|---|---|---|---|---|---|---|---|---|"]
    shown = set()
    for c in cs:
        short = [f"s{s} at {_k(st)}" for s, st in zip(c.seeds, c.steps) if st < at]
        final = _iqm(c.final_iqm) + (f" ({', '.join(short)})" if short else "")
        ratios = ", ".join("–" if r is None else f"{r:.2f}" for r in c.ratios())
        collapsed = c.collapsed()
        check = "yes" if not collapsed else "no (" + ", ".join(f"s{s}" for s in collapsed) + ")"
        pub = _published_cells(c.env, at) if c.env not in shown else ("", "")
        shown.add(c.env)
        lines.append(f"| {c.env} | {c.variant} | {len(c.seeds)} | {final} | {_iqm(c.best_iqm)} | {ratios} "
                     f"| {check} | {pub[0]} | {pub[1]} |")
    return "\n".join(lines)


def targets(cs: list[Cell], at: int, min_seeds: int) -> list[str]:
    """The family's target checks per env, on the preset with the highest IQM: above the best published
    figure at ``at``, above vanilla with disjoint CIs, and no seed collapsed."""
    lines, above_published, above_vanilla = [], 0, 0
    envs = [e for e in ENVS if any(c.env == e for c in cs)]
    for env in envs:
        vanilla = next((c for c in cs if c.env == env and c.variant == VANILLA), None)
        presets = [c for c in cs if c.env == env and c.variant != VANILLA]
        if not presets:
            lines.append(f"- {env}: no preset run yet")
            continue
        best = max(presets, key=lambda c: c.final_iqm[0])
        pub = published_best(env, at)
        done = len(best.seeds) >= min_seeds and min(best.steps) >= at
        parts = [f"best preset {best.variant} IQM {best.final_iqm[0]:.0f}"
                 + ("" if done else f" (provisional: {len(best.seeds)} seeds, shortest at {_k(min(best.steps))})")]
        if pub is not None:
            ok = best.final_iqm[0] >= pub.value
            above_published += ok and done
            parts.append(f"{'at/above' if ok else 'below'} published {pub.value:.0f} ({pub.method})")
        if vanilla is not None:
            ok = best.final_iqm[1] > vanilla.final_iqm[2]
            above_vanilla += ok and done
            parts.append(f"{'above' if ok else 'not above'} vanilla {vanilla.final_iqm[0]:.0f} "
                         f"(CI low {best.final_iqm[1]:.0f} vs vanilla CI high {vanilla.final_iqm[2]:.0f})")
        else:
            parts.append("no vanilla run to compare")
        parts.append("no seed collapsed" if not best.collapsed() else
                     "collapsed: " + ", ".join(f"s{s}" for s in best.collapsed()))
        lines.append(f"- {env}: " + "; ".join(parts))
    lines.append(f"- complete cells at/above the best published {_k(at)} figure: {above_published} of "
                 f"{len(ENVS)} (target >= 2); above vanilla by CIs: {above_vanilla} of {len(ENVS)} (target 4)")
    return lines


def missing(cs: list[Cell], at: int, min_seeds: int, expect: tuple[str, ...] = ()) -> list[str]:
    """Cells of the four tasks x (vanilla, ``expect`` and every variant seen) short of
    ``min_seeds`` seeds that reached ``at``."""
    variants = [VANILLA] + sorted(({c.variant for c in cs} | set(expect)) - {VANILLA})
    lines = []
    for env in ENVS:
        for variant in variants:
            c = next((c for c in cs if c.env == env and c.variant == variant), None)
            done = [] if c is None else [s for s, st in zip(c.seeds, c.steps) if st >= at]
            if len(done) >= min_seeds:
                continue
            partial = [] if c is None else [f"s{s} at {_k(st)}" for s, st in zip(c.seeds, c.steps) if st < at]
            lines.append(f"- {env} {variant}: {len(done)} of {min_seeds} seeds at {_k(at)}"
                         + (f" (partial: {', '.join(partial)})" if partial else ""))
    return lines


def published_table() -> str:
    lines = ["| task (v4) | step | method | mean return | seeds | source |", "|---|---|---|---|---|---|"]
    for p in sorted(PUBLISHED, key=lambda p: ([task(e) for e in ENVS].index(p.env), p.step, p.method)):
        lines.append(f"| {p.env} | {_k(p.step)} | {p.method} | {p.value:.0f} | {p.seeds} | {p.source} |")
    return "\n".join(lines)


def report(folder: str | Path, at: int = 300_000, min_seeds: int = 3, reps: int = 2_000,
           expect: tuple[str, ...] = ()) -> str:
    cs = cells(load_runs(folder), at, reps)
    parts = [table(cs, at) if cs else f"No evaluations in {folder} yet.", "",
             f"Targets (best preset per task; a check counts only with >= {min_seeds} seeds at {_k(at)}):", "",
             *targets(cs, at, min_seeds), "", f"Missing (fewer than {min_seeds} seeds at {_k(at)}):", "",
             *(missing(cs, at, min_seeds, expect) or ["- none"]), "",
             "v5 against the published v4 tasks: " + "; ".join(f"{k}: {v}" for k, v in V5_CHANGES.items()) + "."]
    return "\n".join(parts) + "\n"


def plot(folder: str | Path, path: str | Path, at: int = 300_000) -> Path:
    """Curves up to ``at`` per env, one line per variant (mean over seeds, min-max band), with
    the best published figure at ``at`` as a dotted line."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = load_runs(folder)
    if not runs:
        raise ValueError(f"no evaluations in {folder} to plot")
    envs = [e for e in ENVS if any(r.env == e for r in runs)] + sorted({r.env for r in runs} - set(ENVS))
    fig, axes = plt.subplots(1, len(envs), figsize=(5 * len(envs), 3.8), squeeze=False)
    for ax, env in zip(axes[0], envs):
        variants = sorted({r.variant for r in runs if r.env == env}, key=lambda v: (v != VANILLA, v))
        for variant in variants:
            group = [r for r in runs if r.env == env and r.variant == variant]
            steps = sorted({int(s) for r in group for s in r.steps if s <= at})
            table_ = [[r.returns[r.steps == s][0] for r in group if (r.steps == s).any()] for s in steps]
            mean = [np.mean(v) for v in table_]
            line, = ax.plot(steps, mean, label=f"{variant} ({len(group)} seeds)")
            ax.fill_between(steps, [min(v) for v in table_], [max(v) for v in table_],
                            color=line.get_color(), alpha=0.2)
        best = published_best(env, at)
        if best is not None:
            ax.axhline(best.value, color="grey", linestyle=":", label=f"{best.method} at {_k(at)} (v4)")
        ax.set_title(env)
        ax.set_xlabel("env steps")
        ax.set_ylabel("deterministic eval return")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", default=str(DEFAULT_DIR), help="folder of *-eval.csv files or run folders")
    parser.add_argument("--at", type=int, default=300_000, help="the step the table scores (default 300000)")
    parser.add_argument("--min-seeds", type=int, default=3, help="seeds a cell needs to count as done")
    parser.add_argument("--reps", type=int, default=2_000, help="bootstrap resamples per interval")
    parser.add_argument("--expect", nargs="*", default=[], metavar="VARIANT",
                        help="variants the table should have (e.g. crossq-c256x256), listed as missing until run")
    parser.add_argument("--out", default=None, help="also write the markdown to this file")
    parser.add_argument("--plot", default=None, metavar="PNG", help="also draw the curves to this PNG")
    parser.add_argument("--published", action="store_true", help="print only the published-figures table")
    args = parser.parse_args(argv)
    if args.published:
        print(published_table())
        return
    for flag, value, low in (("--at", args.at, 1), ("--min-seeds", args.min_seeds, 1), ("--reps", args.reps, 1)):
        if value < low:
            parser.error(f"{flag} must be >= {low}, got {value}")
    try:
        text = report(args.dir, args.at, args.min_seeds, args.reps, tuple(args.expect))
        if args.plot:
            text += f"\nCurves: {plot(args.dir, args.plot, args.at)}\n"
    except ValueError as error:
        sys.exit(f"sac_table: {error}")
    print(text, end="")
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
