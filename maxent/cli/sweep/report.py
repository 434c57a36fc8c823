"""A sweep's report: per-run and per-cell CSVs, a summary table with 95% t-intervals, heatmaps,
and rliable aggregates (Agarwal et al., NeurIPS 2021: IQM with stratified-bootstrap 95% CIs,
probability of improvement) with their plots."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from maxent.cli.sweep.spec import LABELS, SCORES, SweepConfig, write_json

__all__ = ["stratified_bootstrap", "write_report"]


def _run_scores(result: dict[str, Any]) -> dict[str, float]:
    scores = {f"mesh_{k}": v for k, v in result["scores"].items()}
    for condition, returns in result["conditions"].items():
        scores[condition.replace(" ", "_")] = float(np.mean(returns))
    return scores


def stratified_bootstrap(func: Callable[..., float], *scores: np.ndarray, reps: int = 2_000,
                         seed: int = 0, level: float = 0.95) -> tuple[float, tuple[float, float]]:
    """``func(*scores)`` and its percentile stratified-bootstrap interval, as rliable's
    ``get_interval_estimates`` computes it (Agarwal et al. 2021): each (runs, tasks) array is
    resampled independently, runs with replacement within every task.

    rliable's own bootstrap (``rliable.library``) goes through the ``arch`` package, whose
    releases that rliable 1.2 accepts (< 8) do not import with pandas 3, and whose 8.0 rejects the
    ``random_state`` rliable passes; its metrics and plots are used as they are.
    """
    rng = np.random.default_rng(seed)
    point = float(func(*scores))
    samples = np.empty(reps)
    for r in range(reps):
        resampled = []
        for x in scores:
            runs, tasks = x.shape
            rows = rng.integers(0, runs, size=(runs, tasks))
            resampled.append(x[rows, np.arange(tasks)])
        samples[r] = func(*resampled)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return point, (float(low), float(high))


def _aggregate(by_method: dict[str, np.ndarray], reps: int) -> dict[str, Any]:
    """IQM (rliable's ``aggregate_iqm``) and its 95% CI per method of (runs, tasks) scores."""
    from rliable import metrics

    out = {}
    for method, scores in by_method.items():
        point, (low, high) = stratified_bootstrap(metrics.aggregate_iqm, scores, reps=reps)
        out[method] = {"iqm": point, "ci95": [low, high]}
    return out


def _improvement(pairs: dict[str, tuple[np.ndarray, np.ndarray]], reps: int):
    """rliable's ``probability_of_improvement`` P(X > Y) per pair, with its 95% CI."""
    from rliable import metrics

    point, interval = {}, {}
    for pair, (x, y) in pairs.items():
        point[pair], bounds = stratified_bootstrap(metrics.probability_of_improvement, x, y, reps=reps)
        interval[pair] = np.array(bounds)
    return point, interval


def write_report(cfg: SweepConfig, plan: list[dict[str, Any]], scored: dict[str, dict],
                 out_dir: str | Path, trained: dict[str, dict] | None = None,
                 verbose: bool = True) -> tuple[dict[str, Path], dict[str, Any]]:
    """Write the CSVs, summary, heatmaps and rliable plots of the scored runs into ``out_dir``."""
    import csv

    from maxent.cli.robustness import confidence_interval, heatmaps

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    trained = trained or {}
    runs = [spec for spec in plan if spec["name"] in scored]
    rows = []
    for spec in runs:
        result = scored[spec["name"]]
        done = trained.get(spec["name"]) or {}
        rows.append({"run": spec["name"], "task": spec["task"], "method": LABELS[spec["method"]],
                     "seed": spec["seed"], "budget": spec["budget"], **_run_scores(result),
                     "train_steps_per_s": done.get("steps_per_s", math.nan)})
    score_names = list(SCORES) + sorted({k for r in rows for k in r if k.startswith("vs_")})
    files["runs_csv"] = out / "runs.csv"
    with open(files["runs_csv"], "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["run", "task", "method", "seed", "budget", *score_names,
                                               "train_steps_per_s"], restval="")
        writer.writeheader()
        writer.writerows(rows)
    params = sorted({p for r in scored.values() for p in r["parameters"]})
    files["cells_csv"] = out / "cells.csv"
    with open(files["cells_csv"], "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["run", "task", "method", "seed", "budget", *params,
                                               "episodes", "mean_return"], restval="")
        writer.writeheader()
        for spec in runs:
            result = scored[spec["name"]]
            for point, returns in zip(result["points"], result["mesh_returns"]):
                writer.writerow({"run": spec["name"], "task": spec["task"],
                                 "method": LABELS[spec["method"]], "seed": spec["seed"],
                                 "budget": spec["budget"], **dict(zip(result["parameters"], point)),
                                 "episodes": len(returns), "mean_return": float(np.mean(returns))})

    methods = [LABELS[m] for m in cfg.methods]
    summary: list[dict[str, Any]] = []
    aggregates: dict[str, Any] = {"budgets": {}, "claim": LABELS[cfg.claimed]}
    lines = []
    for budget in cfg.budgets:
        tasks = [t for t in cfg.tasks if any(r["task"] == t and r["budget"] == budget for r in rows)]
        if not tasks:
            continue
        # Scores per method as (seeds, tasks); several tasks are put on one scale by dividing by
        # the task's mean nominal return over all its runs.
        scale = {t: 1.0 for t in tasks}
        if len(tasks) > 1:
            for t in tasks:
                nominal = [r["nominal"] for r in rows if r["task"] == t and r["budget"] == budget]
                scale[t] = float(np.mean(nominal)) or 1.0
        matrices: dict[str, dict[str, np.ndarray]] = {}
        for score in score_names:
            by_method = {}
            for method in methods:
                columns = []
                for t in tasks:
                    values = {r["seed"]: r[score] / scale[t] for r in rows if r["task"] == t
                              and r["budget"] == budget and r["method"] == method and score in r}
                    columns.append(values)
                seeds = sorted(set.intersection(*(set(c) for c in columns))) if columns else []
                if seeds:
                    by_method[method] = np.array([[c[s] for c in columns] for s in seeds])
            if by_method:
                matrices[score] = by_method
        entry: dict[str, Any] = {"tasks": tasks, "normalised_by_nominal": len(tasks) > 1,
                                 "iqm": {}, "probability_of_improvement": {}}
        try:
            for score, by_method in matrices.items():
                entry["iqm"][score] = _aggregate(by_method, cfg.bootstrap_reps)
            claimed = LABELS[cfg.claimed]
            for score, by_method in matrices.items():
                if claimed not in by_method:
                    continue
                pairs = {f"{claimed},{m}": (by_method[claimed], by_method[m]) for m in by_method
                         if m != claimed}
                if pairs:
                    point, interval = _improvement(pairs, cfg.bootstrap_reps)
                    entry["probability_of_improvement"][score] = {
                        k: {"p": float(point[k]), "ci95": [float(interval[k][0]), float(interval[k][1])]}
                        for k in pairs}
                    if score == "mesh_mean":
                        files[f"improvement_b{budget}"] = _plot_improvement(
                            point, interval, out / f"probability_of_improvement-b{budget}.png",
                            f"P({claimed} > X) on mesh mean, {budget} steps")
            files[f"rliable_b{budget}"] = _plot_iqm(entry["iqm"], methods,
                                                    out / f"rliable-b{budget}.png", budget, tasks)
        except ImportError as err:
            entry["error"] = (f"rliable unavailable ({err}); install it: pip install "
                              "'maxent[ray]' or pip install rliable")
        aggregates["budgets"][str(budget)] = entry

        for task in tasks:
            for method in methods:
                members = [r for r in rows if r["task"] == task and r["budget"] == budget
                           and r["method"] == method]
                if not members:
                    continue
                item: dict[str, Any] = {"task": task, "budget": budget, "method": method,
                                        "runs": len(members)}
                for score in score_names:
                    values = [r[score] for r in members if score in r]
                    if values:
                        item[score], item[f"{score}_ci95"] = confidence_interval(values)
                summary.append(item)
            grids = {}
            axes = None
            for method in methods:
                results = [scored[s["name"]] for s in runs if s["task"] == task
                           and s["budget"] == budget and LABELS[s["method"]] == method]
                if results:
                    axes = _mesh_axes(results[0])
                    shape = tuple(len(v) for v in axes.values())
                    grids[method] = np.stack([np.mean(r["mesh_returns"], axis=1).reshape(shape)
                                              for r in results])
            if grids and axes is not None:
                path = out / f"heatmaps-{task}-b{budget}.png"
                heatmaps(grids, axes, f"{task} ({budget} steps)", path)
                files[f"heatmaps_{task}_b{budget}"] = path
        lines.append(_format_budget(summary, entry, budget, score_names, scored))

    files["summary_csv"] = out / "summary.csv"
    if summary:
        with open(files["summary_csv"], "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for s in summary for k in s)),
                                    restval="")
            writer.writeheader()
            writer.writerows(summary)
    else:
        files["summary_csv"].write_text("")
    files["aggregates"] = out / "aggregates.json"
    write_json(files["aggregates"], aggregates)
    text = "\n\n".join(lines) if lines else "no run has been scored yet"
    files["summary_md"] = out / "summary.md"
    files["summary_md"].write_text(text + "\n")
    if verbose:
        print(text)
    return files, aggregates


def _score_table(header: str, table: dict[str, dict], score_names: Sequence[str],
                 columns: Sequence[str], label: Callable[[str], str],
                 cell: Callable[[dict], str]) -> list[str]:
    """Markdown rows of ``table`` ({score: {row key: value}}): one row per key, one column per score."""
    lines = ["", f"| {header} | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for key in dict.fromkeys(k for by_key in table.values() for k in by_key):
        cells = [cell(v) if (v := table.get(score, {}).get(key)) is not None else "n/a"
                 for score in score_names]
        lines.append(f"| {label(key)} | " + " | ".join(cells) + " |")
    return lines


def _mesh_axes(result: dict[str, Any]) -> dict[str, np.ndarray]:
    points = np.asarray(result["points"], dtype=np.float64)
    return {p: np.array(sorted(set(points[:, i].tolist()))) for i, p in enumerate(result["parameters"])}


def _pm(mean: Any, half: Any) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "n/a"
    return f"{mean:.1f}" if half is None or math.isnan(half) else f"{mean:.1f} ± {half:.1f}"


def _format_budget(summary, entry, budget, score_names, scored) -> str:
    sets = sorted({(r["task"], r["uncertainty"]) for r in scored.values() if r["budget"] == budget})
    header = (f"Budget {budget} env steps per run; mesh: "
              + ", ".join(f"{t} over {u}" for t, u in sets)
              + "; ± = 95% t-interval across seeds; IQM [95% stratified-bootstrap CI] (rliable)"
              + (", scores divided by each task's mean nominal return" if entry["normalised_by_nominal"]
                 else ""))
    names = {"mesh_mean": "mesh mean", "mesh_p10": "mesh 10th pct", "mesh_worst": "mesh worst",
             "nominal": "nominal"}
    columns = [names.get(s, s.replace("_", " ") + " adversary") for s in score_names]
    lines = [header, "", "| task | method | runs | " + " | ".join(columns) + " |",
             "|---|---|---|" + "---|" * len(columns)]
    for item in summary:
        if item["budget"] != budget:
            continue
        cells = [_pm(item.get(s), item.get(f"{s}_ci95")) for s in score_names]
        lines.append(f"| {item['task']} | {item['method']} | {item['runs']} | " + " | ".join(cells) + " |")
    if entry.get("iqm"):
        lines += _score_table("IQM", entry["iqm"], score_names, columns, str,
                              lambda v: f"{v['iqm']:.1f} [{v['ci95'][0]:.1f}, {v['ci95'][1]:.1f}]")
    if entry.get("probability_of_improvement"):
        lines += _score_table("P(X > Y) [95% CI]", entry["probability_of_improvement"], score_names,
                              columns, lambda pair: pair.replace(",", " > "),
                              lambda v: f"{v['p']:.2f} [{v['ci95'][0]:.2f}, {v['ci95'][1]:.2f}]")
    if entry.get("error"):
        lines += ["", entry["error"]]
    return "\n".join(lines)


def _plot_iqm(iqm: dict[str, dict], methods: list[str], path: Path, budget: int, tasks) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from rliable import plot_utils

    scores = list(iqm)
    present = [m for m in methods if all(m in iqm[s] for s in scores)]
    point = {m: np.array([iqm[s][m]["iqm"] for s in scores]) for m in present}
    interval = {m: np.array([[iqm[s][m]["ci95"][0] for s in scores],
                             [iqm[s][m]["ci95"][1] for s in scores]]) for m in present}
    unit = "return" if len(tasks) == 1 else "return / nominal"
    fig, _ = plot_utils.plot_interval_estimates(
        point, interval, metric_names=[s.replace("_", " ") for s in scores], algorithms=present,
        xlabel=f"IQM {unit} ({', '.join(tasks)}, {budget} steps; 95% stratified-bootstrap CI)",
        row_height=0.6, xlabel_y_coordinate=-0.35)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def _plot_improvement(point, interval, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from rliable import plot_utils

    ax = plot_utils.plot_probability_of_improvement(point, interval)
    ax.set_title(title)
    ax.figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(ax.figure)
    return path
