"""Robustness benchmark of saved protagonists over a grid of torso mass x friction, as in QARL
(Reddi et al., ICLR 2024, "Robust Adversarial RL via Bounded Rationality Curricula", Sec. 5), or
over the mesh of an RRLS uncertainty set (Zouitine et al. 2024; :mod:`maxent.envs.uncertainty`,
both bounds of every range included): each run's protagonist plays every cell with no adversary,
plus the unperturbed task with no adversary and against its own trained adversary at alpha = 0
where it has one. Results go to a CSV, heatmaps (PNG) and a summary of the mean, worst cell and
10th percentile over cells, with 95% confidence intervals across runs.

Speed: every cell's episodes run in lockstep on a pool of envs created once and re-perturbed per
episode, so one batched forward pass chooses the actions of all of them (deterministic policy).
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

__all__ = [
    "AXES",
    "GridEvaluator",
    "Job",
    "Run",
    "confidence_interval",
    "default_grid",
    "evaluate_mesh",
    "heatmaps",
    "load_run",
    "mesh_scores",
    "parse_grid",
    "policy",
    "run_benchmark",
]

# Grid axes: absolute torso mass (kg) and tangential friction of all geoms, as in the paper, or
# factors on the nominal values.
AXES = ("mass", "friction", "mass_scale", "friction_scale")
# Values one axis may hold: each is evaluated, so more is a typo, and int() refuses longer digits.
MAX_AXIS_VALUES = 1_000_000


def _is_number(text: str) -> bool:
    r"""Whether ``text`` is ``[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?``, decided with string methods:
    that regex retries a digit run at every split before failing, quadratic in the run's length."""
    if text[:1] in ("+", "-"):
        text = text[1:]
    mantissa, e, exponent = text.replace("E", "e").partition("e")
    whole, dot, fraction = mantissa.partition(".")
    if whole:
        ok = whole.isdecimal() and (not fraction or fraction.isdecimal())
    else:
        ok = bool(dot) and fraction.isdecimal()
    if e:
        if exponent[:1] in ("+", "-"):
            exponent = exponent[1:]
        ok = ok and exponent.isdecimal()
    return ok


def _numbers(pieces: list[str]) -> bool:
    return all(_is_number(p) for p in pieces)


def parse_grid(specs: Sequence[str]) -> dict[str, np.ndarray]:
    """Parse ``["mass=3:9:11", "friction=0.1:1.9:11"]`` into ``{axis: values}``.

    Each spec is ``AXIS=LOW:HIGH:N`` (N evenly spaced values, both ends included), ``AXIS=V1,V2,...``
    or ``AXIS=V``; axes are from :data:`AXES`, each at most once, at most two of them. Parsing is
    linear in the spec's length: it is split on ``=``, ``:`` and ``,`` first and each piece matched
    on its own.
    """
    grid: dict[str, np.ndarray] = {}
    usage = ("write AXIS=LOW:HIGH:N (e.g. mass=3:9:11), AXIS=V1,V2,... or AXIS=V, with AXIS one of "
             f"{list(AXES)}")
    for spec in specs:
        head, eq, body = str(spec).partition("=")
        axis, body = head.strip(), body.strip()
        shown = spec if len(str(spec)) <= 80 else f"{str(spec)[:60]}... ({len(str(spec))} characters)"
        if axis not in AXES and re.fullmatch(r"\w+", axis) is None or not eq or not body \
                or "\n" in body:
            raise ValueError(f"grid spec {shown!r} does not parse: {usage}")
        if axis not in AXES:
            raise ValueError(f"grid spec {shown!r}: unknown axis {axis!r}; {usage}")
        if axis in grid:
            raise ValueError(f"grid spec {shown!r}: axis {axis!r} given twice")
        if ":" in body:
            parts = body.split(":")
            if len(parts) != 3 or not _numbers(parts[:2]) or not parts[2].isdecimal():
                raise ValueError(f"grid spec {shown!r} does not parse: {usage}")
            low, high, n = parts
            n = n.lstrip("0") or "0"  # int() refuses more than 4300 digits, leading zeros included
            if len(n) > len(str(MAX_AXIS_VALUES)) or int(n) > MAX_AXIS_VALUES:
                raise ValueError(f"grid spec {shown!r}: N must be at most {MAX_AXIS_VALUES:,} (every "
                                 "value is evaluated); use fewer points")
            if int(n) < 1:
                raise ValueError(f"grid spec {shown!r}: N must be >= 1; {usage}")
            values = np.linspace(float(low), float(high), int(n))
        else:
            pieces = body.split(",")
            if not _numbers(pieces):
                raise ValueError(f"grid spec {shown!r} does not parse: {usage}")
            if len(pieces) > MAX_AXIS_VALUES:
                raise ValueError(f"grid spec {shown!r}: an axis holds at most {MAX_AXIS_VALUES:,} "
                                 f"values (every value is evaluated), got {len(pieces):,}")
            values = np.array([float(v) for v in pieces])
        strict = axis in ("mass", "mass_scale")
        if not np.all(np.isfinite(values)) or np.any(values < 0) or (strict and np.any(values <= 0)):
            raise ValueError(f"grid spec {shown!r}: {axis} values must be finite and "
                             f"{'> 0' if strict else '>= 0'}, got {np.array2string(values, threshold=8)}")
        grid[axis] = values
    if len(grid) > 2:
        raise ValueError(f"a grid has at most two axes (a heatmap), got {list(grid)}")
    if "mass" in grid and "mass_scale" in grid or "friction" in grid and "friction_scale" in grid:
        raise ValueError(f"give mass or mass_scale, and friction or friction_scale, not both: {list(grid)}")
    return grid

def default_grid(task: str, n: int = 11) -> dict[str, np.ndarray]:
    """The paper's n-point torso-mass x friction grid for ``task`` (see envs/adversarial.TASKS)."""
    from maxent.envs.adversarial import task_defaults

    defaults = task_defaults(task)
    return {"mass": np.linspace(*defaults.mass, n), "friction": np.linspace(*defaults.friction, n)}


def confidence_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of the Student-t confidence interval (NaN half-width for one value)."""
    from scipy import stats

    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ValueError("confidence_interval needs at least one value")
    if x.size == 1:
        return float(x[0]), math.nan
    half = stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
    return float(x.mean()), float(half)


# --------------------------------------------------------------------------- runs


@dataclass
class Run:
    """A saved protagonist: ``method`` is "SAC", "QARL", "QARL-linear", "QARL-fixed" or "RARL"."""

    path: Path
    agent: Any
    method: str
    task: str
    seed: int
    has_adversary: bool


def _method(kind: str, config: dict, env_id: str | None = None) -> str:
    if kind == "SAC":
        from maxent.envs.uncertainty import set_of_domain_randomized_id

        return "DR" if set_of_domain_randomized_id(env_id) is not None else "SAC"
    if kind != "QARL":
        return kind
    curriculum = config.get("curriculum", "gamma")
    return {"gamma": "QARL", "none": "RARL"}.get(curriculum, f"QARL-{curriculum}")


def load_run(run_dir: str | Path) -> Run:
    """Load the protagonist of a run directory (``maxent train`` layout, ``run/model``) or of a
    checkpoint directory; raises ``ValueError`` when it holds none."""
    from maxent.envs.uncertainty import register_domain_randomized, set_of_domain_randomized_id
    from maxent.training.checkpoint import CheckpointError
    from maxent.training.run import checkpoint_dir, read_header

    register_domain_randomized()  # a domain-randomised SAC saved its env as such an id
    run_dir = Path(run_dir)
    path = checkpoint_dir(run_dir)
    try:
        header = read_header(path)
    except (CheckpointError, FileNotFoundError, NotADirectoryError) as err:
        raise ValueError(f"{run_dir} holds no protagonist: expected a run directory from `maxent "
                         f"train sac|qarl|rarl` (with a model/ checkpoint) or a checkpoint directory "
                         f"({err})") from None
    from maxent.agents.registry import ALGORITHMS, algorithm_for_kind

    kind = header["kind"]
    try:
        algorithm = algorithm_for_kind(kind, header["config"])
    except ValueError:
        algorithm = None
    if algorithm is None or not algorithm.control:
        controls = ", ".join(a.kind for a in ALGORITHMS.values() if a.control and a.name != "rarl")
        raise ValueError(f"{path} holds a {kind} agent, not a protagonist; the robustness benchmark "
                         f"evaluates continuous-control runs ({controls}; RARL is QARL's)")
    agent = algorithm.agent_class().load(path)
    if agent.env_id is None:
        raise ValueError(f"{path} was trained on a custom env instance; its task is unknown")
    randomized = set_of_domain_randomized_id(agent.env_id)
    task = agent.env_id if randomized is None else randomized.task
    return Run(path=run_dir, agent=agent, method=_method(kind, header["config"], agent.env_id),
               task=task, seed=int(agent.seed), has_adversary=algorithm.adversarial)


# --------------------------------------------------------------------------- batched rollouts


@dataclass
class Job:
    """Episodes of one grid cell (``cell`` indexes the grid) under ``settings``; their returns go
    to ``out``."""

    cell: tuple[int, ...]
    seed: int
    settings: dict[str, float]
    out: list[float] = field(default_factory=list)


class GridEvaluator:
    """Runs many episodes of one task in lockstep on a pool of reusable perturbed envs.

    Args:
        task: Gymnasium MuJoCo id.
        max_episode_steps: time limit; ``None`` keeps the task's.
        pool_size: envs stepped together (one batched policy call per step for all of them).
        physics: ``False``: a job's settings are :class:`MassFrictionPerturbation` arguments
            (``mass``, ``friction_scale``...); ``True``: they are ``{"KIND:TARGET": value}``
            parameters of :class:`~maxent.envs.uncertainty.PhysicsPerturbation` (uncertainty sets).
    """

    def __init__(self, task: str, max_episode_steps: int | None = None, pool_size: int = 64,
                 physics: bool = False):
        if pool_size < 1:
            raise ValueError(f"pool_size must be >= 1, got {pool_size}")
        self.task, self.max_episode_steps, self.pool_size = task, max_episode_steps, pool_size
        self.physics = bool(physics)
        self._pools: dict[Any, list[Any]] = {}

    def _make_env(self) -> Any:
        from maxent.envs.adversarial import MassFrictionPerturbation
        from maxent.envs.uncertainty import PhysicsPerturbation

        kwargs = {} if self.max_episode_steps is None else {"max_episode_steps": self.max_episode_steps}
        wrapper = PhysicsPerturbation if self.physics else MassFrictionPerturbation
        return wrapper(gym.make(self.task, **kwargs))

    def _pool(self, key: Any, build: Callable[[], Any], n: int) -> list[Any]:
        pool = self._pools.setdefault(key, [])
        while len(pool) < min(n, self.pool_size):
            pool.append(build())
        return pool[:min(n, self.pool_size)]

    def run(self, jobs: list[Job], act: Callable[[np.ndarray], np.ndarray],
            adversary: Any | None = None) -> None:
        """Play every job's episode; its undiscounted return is appended to ``job.out``.

        ``act(obs_batch) -> actions`` is the protagonist; ``adversary`` an agent with
        ``adversary_predict`` (then each env is the two-player game with that agent's bodies and
        force bound). Both players see the task's observation; a temperature-conditioned QARL
        agent appends its ``eval_temperature`` (0: the paper's alpha = 0) itself, so any
        protagonist can face any run's adversary.
        """
        from maxent.envs.adversarial import AdversarialMujoco

        if adversary is None:
            envs = self._pool("task", self._make_env, len(jobs))
        else:
            cfg = adversary.config
            key = ("game", cfg.bodies, cfg.max_force, cfg.torque)
            envs = self._pool(key, lambda: AdversarialMujoco(
                self._make_env(), bodies=cfg.bodies, max_force=cfg.max_force, torque=cfg.torque,
                temperature_in_obs=False), len(jobs))
        queue = list(jobs)
        active: list[tuple[Any, Job] | None] = [None] * len(envs)
        obs = [None] * len(envs)
        returns = np.zeros(len(envs))

        def start(i: int) -> None:
            if not queue:
                active[i] = None
                return
            job = queue.pop(0)
            env = envs[i]
            wrapper = env.env if adversary is not None else env
            if self.physics:
                wrapper.set_params(job.settings)
            else:
                wrapper.set_perturbation(**_scales(job.settings))
            options = {"temperature": 0.0} if adversary is not None else None
            obs[i], _ = env.reset(seed=job.seed, options=options)
            returns[i] = 0.0
            active[i] = (env, job)

        for i in range(len(envs)):
            start(i)
        try:
            while any(a is not None for a in active):
                live = [i for i, a in enumerate(active) if a is not None]
                batch = np.stack([obs[i] for i in live]).astype(np.float32)
                actions = np.asarray(act(batch))
                forces = adversary.adversary_predict(batch, deterministic=True) \
                    if adversary is not None else None
                for j, i in enumerate(live):
                    env, job = active[i]
                    if adversary is None:
                        step = env.step(actions[j])
                    else:
                        step = env.step(actions[j], forces[j])
                    obs[i], reward, terminated, truncated = step[0], step[1], step[2], step[3]
                    returns[i] += float(reward)
                    if terminated or truncated:
                        job.out.append(float(returns[i]))
                        start(i)
        finally:
            for env in envs:  # leave the pool's models nominal between runs
                (env.env if adversary is not None else env).restore()

    def close(self) -> None:
        for pool in self._pools.values():
            for env in pool:
                env.close()
        self._pools.clear()


def _scales(settings: dict[str, float]) -> dict[str, float]:
    out = {"mass_scale": 1.0, "friction_scale": 1.0}
    out.update(settings)
    if "mass" in settings:
        out.pop("mass_scale")
    if "friction" in settings:
        out.pop("friction_scale")
    return out


def mesh_scores(values: Sequence[float] | np.ndarray) -> dict[str, float]:
    """Worst case, mean and 10th percentile (numpy's linear interpolation) of per-cell returns,
    RRLS's scores plus a tail that one unlucky cell cannot decide alone."""
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    if x.size == 0:
        raise ValueError("mesh_scores needs at least one cell")
    return {"worst": float(x.min()), "mean": float(x.mean()), "p10": float(np.percentile(x, 10))}


@dataclass
class MeshResult:
    """Returns of one protagonist over the mesh of an uncertainty set."""

    points: list[dict[str, float]]   # the mesh, in :func:`maxent.envs.uncertainty.mesh` order
    returns: np.ndarray              # (n_points, episodes) undiscounted returns

    def scores(self) -> dict[str, float]:
        return mesh_scores(self.returns.mean(axis=1))


def evaluate_mesh(agent: Any, uncertainty: Any, points_per_dim: int = 10, episodes: int = 1,
                  seed: int = 0, max_episode_steps: int | None = None, pool_size: int = 64,
                  adversary: Any | None = None, evaluator: GridEvaluator | None = None) -> MeshResult:
    """Play ``agent`` (anything with ``predict``) on every point of the set's mesh, both bounds of
    every range included; episode i of every point starts from ``seed + i``.

    Args:
        agent: the protagonist.
        uncertainty: an :class:`~maxent.envs.uncertainty.UncertaintySet` or a set name.
        points_per_dim: values per parameter (>= 2).
        episodes: episodes per point.
        seed: first episode seed.
        max_episode_steps: time limit; ``None`` keeps the task's.
        pool_size: envs stepped in lockstep.
        adversary: a QARL/RARL agent whose adversary pushes during every episode (``None``: none).
        evaluator: reuse this :class:`GridEvaluator` (``physics=True``, the set's task).
    """
    from maxent.envs.uncertainty import mesh, uncertainty_set

    uset = uncertainty_set(uncertainty)
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    points = mesh(uset, points_per_dim)
    own = evaluator is None
    evaluator = evaluator or GridEvaluator(uset.task, max_episode_steps, pool_size, physics=True)
    try:
        jobs = [Job((i,), seed + e, point) for i, point in enumerate(points) for e in range(episodes)]
        evaluator.run(jobs, policy(agent), adversary=adversary)
    finally:
        if own:
            evaluator.close()
    returns = np.array([job.out[0] for job in jobs]).reshape(len(points), episodes)
    return MeshResult(points, returns)


# --------------------------------------------------------------------------- the benchmark


@dataclass
class BenchmarkResult:
    """What :func:`run_benchmark` measured and wrote."""

    rows: list[dict[str, Any]]       # one per (run, condition, cell)
    summary: list[dict[str, Any]]    # one per method
    grids: dict[str, np.ndarray]     # method -> (n_runs, n_axis0, n_axis1) cell means
    axes: dict[str, np.ndarray]
    files: dict[str, Path]


def policy(agent: Any) -> Callable[[np.ndarray], np.ndarray]:
    """The agent's deterministic action for a batch of observations."""
    def act(batch: np.ndarray) -> np.ndarray:
        action = agent.predict(batch, deterministic=True)
        return action[0] if isinstance(action, tuple) else action
    return act


def run_benchmark(run_dirs: Sequence[str | Path], grid: dict[str, np.ndarray] | None = None,
                  episodes: int = 1, out_dir: str | Path = "runs/robustness", seed: int = 0,
                  max_episode_steps: int | None = None, pool_size: int = 64,
                  adversary_episodes: int | None = None, verbose: bool = True,
                  uncertainty: Any | None = None, points_per_dim: int = 10) -> BenchmarkResult:
    """Evaluate the protagonists of ``run_dirs`` and write ``robustness.csv``, ``summary.csv``,
    ``summary.md`` and ``heatmaps.png`` into ``out_dir``.

    Args:
        run_dirs: run or checkpoint directories (SAC, QARL, RARL, domain-randomised SAC), all
            trained on one task.
        grid: ``{axis: values}`` from :func:`parse_grid` (one or two axes); ``None`` uses the
            paper's 11 x 11 mass x friction grid of the task (or the mesh of ``uncertainty``).
        episodes: episodes per grid cell (episode i of every cell starts from seed + i).
        out_dir: where the files go.
        seed: first episode seed.
        max_episode_steps: time limit of every episode; ``None`` keeps the task's.
        pool_size: envs stepped in lockstep.
        adversary_episodes: episodes for the nominal and adversary conditions (default
            ``max(episodes, 5)``).
        verbose: print the summary table.
        uncertainty: an uncertainty set (name or :class:`~maxent.envs.uncertainty.UncertaintySet`)
            whose mesh replaces the grid; give it or ``grid``, not both.
        points_per_dim: mesh values per parameter of ``uncertainty`` (>= 2, both bounds included).
    """
    if uncertainty is not None and grid is not None:
        raise ValueError("give a grid or an uncertainty set, not both")
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if not run_dirs:
        raise ValueError("give at least one run directory")
    runs = [load_run(d) for d in run_dirs]
    tasks = sorted({r.task for r in runs})
    if len(tasks) > 1:
        raise ValueError(f"runs were trained on different tasks {tasks}; benchmark one task at a time")
    task = tasks[0]
    if uncertainty is not None:
        from maxent.envs.uncertainty import mesh_axes, uncertainty_set

        uncertainty = uncertainty_set(uncertainty)
        if uncertainty.task != task:
            raise ValueError(f"uncertainty set {uncertainty.name!r} is for {uncertainty.task}, but "
                             f"the runs were trained on {task}")
        axes = mesh_axes(uncertainty, points_per_dim)
    else:
        axes = default_grid(task) if grid is None else dict(grid)
    if not axes:
        raise ValueError("the grid needs at least one axis, e.g. mass=3:9:11")
    names = list(axes)
    shape = tuple(len(axes[n]) for n in names)
    n_side = adversary_episodes or max(episodes, 5)
    evaluator = GridEvaluator(task, max_episode_steps, pool_size, physics=uncertainty is not None)
    rows: list[dict[str, Any]] = []
    per_run: list[dict[str, Any]] = []
    try:
        for run in runs:
            act = policy(run.agent)
            jobs = [Job(cell, seed + e, {n: float(axes[n][c]) for n, c in zip(names, cell)})
                    for cell in np.ndindex(*shape) for e in range(episodes)]
            evaluator.run(jobs, act)
            cells = np.zeros(shape)
            for job in jobs:
                cells[job.cell] += job.out[0] / episodes
            for cell in np.ndindex(*shape):
                row = {"run": str(run.path), "method": run.method, "seed": run.seed,
                       "condition": "grid", "episodes": episodes}
                row.update({n: float(axes[n][c]) for n, c in zip(names, cell)})
                row["mean_return"] = float(cells[cell])
                rows.append(row)
            side = {}
            conditions = [("nominal", None)] + ([("adversary", run.agent)] if run.has_adversary else [])
            for condition, adversary in conditions:
                side_jobs = [Job((), seed + e, {}) for e in range(n_side)]
                evaluator.run(side_jobs, act, adversary=adversary)
                side[condition] = float(np.mean([j.out[0] for j in side_jobs]))
                rows.append({"run": str(run.path), "method": run.method, "seed": run.seed,
                             "condition": condition, "episodes": n_side,
                             "mean_return": side[condition]})
            per_run.append({"method": run.method, "cells": cells, **side})
    finally:
        evaluator.close()
        for run in runs:
            run.agent.close()

    methods = list(dict.fromkeys(r["method"] for r in per_run))
    grids = {m: np.stack([r["cells"] for r in per_run if r["method"] == m]) for m in methods}
    summary = []
    for m in methods:
        members = [r for r in per_run if r["method"] == m]
        entry: dict[str, Any] = {"method": m, "runs": len(members)}
        for label, values in (("grid_mean", [r["cells"].mean() for r in members]),
                              ("worst_cell", [r["cells"].min() for r in members]),
                              ("p10_cell", [np.percentile(r["cells"], 10) for r in members]),
                              ("nominal", [r["nominal"] for r in members]),
                              ("vs_adversary", [r["adversary"] for r in members if "adversary" in r])):
            if values:
                mean, half = confidence_interval(values)
                entry[label], entry[f"{label}_ci95"] = mean, half
            else:
                entry[label], entry[f"{label}_ci95"] = math.nan, math.nan
        summary.append(entry)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"csv": out / "robustness.csv", "summary_csv": out / "summary.csv",
             "summary_md": out / "summary.md", "heatmaps": out / "heatmaps.png"}
    fields = ["run", "method", "seed", "condition", *names, "episodes", "mean_return"]
    with open(files["csv"], "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows(rows)
    with open(files["summary_csv"], "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(summary[0]))
        writer.writeheader()
        writer.writerows(summary)
    table = format_summary(summary, task, axes, episodes,
                           None if uncertainty is None else uncertainty.name)
    files["summary_md"].write_text(table + "\n")
    heatmaps(grids, axes, task, files["heatmaps"])
    if verbose:
        print(table)
    return BenchmarkResult(rows, summary, grids, axes, files)


def _pm(mean: float, half: float) -> str:
    if math.isnan(mean):
        return "n/a"
    return f"{mean:.1f}" if math.isnan(half) else f"{mean:.1f} ± {half:.1f}"


def format_summary(summary: list[dict[str, Any]], task: str, axes: dict[str, np.ndarray],
                   episodes: int, set_name: str | None = None) -> str:
    """A Markdown table of the summary (± is the 95% t-interval across runs)."""
    desc = " x ".join(f"{n} {v[0]:g}..{v[-1]:g} ({len(v)})" for n, v in axes.items())
    what = "grid" if set_name is None else f"mesh of uncertainty set {set_name}"
    lines = [f"Robustness on {task}: {what} {desc}, {episodes} episode(s) per cell; ± = 95% CI "
             "across runs",
             "",
             "| method | runs | grid mean | worst cell | 10th pct cell | nominal (no adversary) | "
             "vs adversary (alpha=0) |",
             "|---|---|---|---|---|---|---|"]
    for e in summary:
        lines.append(f"| {e['method']} | {e['runs']} | {_pm(e['grid_mean'], e['grid_mean_ci95'])} | "
                     f"{_pm(e['worst_cell'], e['worst_cell_ci95'])} | "
                     f"{_pm(e['p10_cell'], e['p10_cell_ci95'])} | {_pm(e['nominal'], e['nominal_ci95'])} | "
                     f"{_pm(e['vs_adversary'], e['vs_adversary_ci95'])} |")
    return "\n".join(lines)


def heatmaps(grids: dict[str, np.ndarray], axes: dict[str, np.ndarray], task: str, path: Path) -> None:
    """One heatmap per method of its mean return over the two grid axes, saved to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(axes)
    # Beyond two axes, a panel shows the mean over the others (3-D uncertainty sets).
    means = {m: g.mean(axis=0).reshape(*g.shape[1:3], -1).mean(axis=-1) if g.ndim > 3
             else g.mean(axis=0) for m, g in grids.items()}
    lo = min(float(v.min()) for v in means.values())
    hi = max(float(v.max()) for v in means.values())
    fig, panels = plt.subplots(1, len(means), figsize=(4.2 * len(means) + 1, 4.4), squeeze=False,
                               layout="constrained")
    image = None
    for ax, (method, values) in zip(panels[0], means.items()):
        if values.ndim == 1:
            values = values[:, None]
        image = ax.imshow(values.T, origin="lower", aspect="auto", vmin=lo, vmax=hi, cmap="viridis")
        ax.set_title(f"{method} (mean {values.mean():.0f})")
        ax.set_xlabel(names[0])
        first = axes[names[0]]
        ax.set_xticks(range(len(first)), [f"{v:g}" for v in first], rotation=90)
        if len(names) > 1:
            second = axes[names[1]]
            ax.set_ylabel(names[1])
            ax.set_yticks(range(len(second)), [f"{v:g}" for v in second])
        else:
            ax.set_yticks([])
    fig.colorbar(image, ax=panels[0].tolist(), label="mean return")
    extra = f"; mean over {', '.join(names[2:])}" if len(names) > 2 else ""
    fig.suptitle(f"{task}: return over the perturbation grid (mean over runs{extra})")
    fig.savefig(path, dpi=100)
    plt.close(fig)
