"""``maxent sweep``: methods x seeds x tasks x budgets of robust-RL training as resumable run
directories, trained and then scored on an uncertainty mesh and against every adversarial method's
adversary, as Ray tasks (one worker per core on this machine, or a cluster with ``--address``) or,
without Ray, the same plan sequentially in this process; then one report: CSVs, a summary table,
heatmaps, and rliable aggregates (Agarwal et al., NeurIPS 2021: IQM with stratified-bootstrap 95%
CIs, probability of improvement).

The protocol is RRLS's (Zouitine et al. 2024; :mod:`maxent.envs.uncertainty`) for the mesh and
QARL's (Reddi et al., ICLR 2024) for the adversary; methods are ``sac``, ``dr`` (SAC trained with
domain randomisation over the task's uncertainty set), ``qarl`` and ``rarl``. Every run gets the
same env-step budget (for QARL/RARL both players' phases count, as in the paper).

Ray: ``ray.init()`` on this machine with one CPU per run (``workers``), or ``--address`` to join a
running cluster, whose nodes need maxent installed and ``root`` on a filesystem they all share
(checkpoints are how runs resume). Without Ray (``pip install 'maxent[ray]'``) the same plan runs in
this process, one run after another, with the same directories, so either can resume the other.

Layout of ``root``::

    sweep.json                         what this sweep is (refused when a re-run differs)
    <task>/<method>/s<seed>-<budget>/  an ordinary run directory: model/ checkpoint, logs,
                                       run.json (its spec), done.json (once trained),
                                       eval-<hash>.json (scores, cached per evaluation setting)
    report/                            runs.csv, cells.csv, summary.md/.csv, aggregates.json,
                                       heatmaps-*.png, rliable-*.png, probability_of_improvement-*.png

A re-run of the same command skips finished runs, resumes killed ones from their last checkpoint
and re-uses cached scores, so a sweep survives killed workers, preempted nodes and Ctrl-C.

Config file (TOML, or YAML when PyYAML is installed); every key is optional::

    methods = ["qarl", "rarl", "sac", "dr"]
    tasks = ["InvertedPendulum-v5"]
    seeds = 5                      # or a list [0, 1, 2, 3, 4]
    budgets = [20000]
    root = "runs/sweep"
    [common]                       # fields of every method's config that has them
    hidden_sizes = [256, 256]
    [qarl]                         # QARLConfig fields (rarl: RARLConfig, sac/dr: SACConfig)
    max_force = 5.0
    [uncertainty]                  # task -> uncertainty set (DR training and the mesh)
    "InvertedPendulum-v5" = "invertedpendulum-2d"
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tomllib

from maxent.training.config import RESUMABLE_CHANGES

__all__ = ["METHODS", "SweepConfig", "SweepError", "load_sweep_config", "plan_runs", "run_sweep",
           "sweep_main", "write_report"]

METHODS = ("qarl", "rarl", "sac", "dr")
ADVERSARIAL = ("qarl", "rarl")
LABELS = {"sac": "SAC", "dr": "DR", "qarl": "QARL", "rarl": "RARL"}
BACKENDS = ("auto", "ray", "sequential")
MANIFEST = "sweep.json"
FORMAT = "maxent-sweep/1"
REPORT_DIR = "report"
# Test hook: comma-separated run names (``<task>/<method>/s<seed>-<budget>``) whose worker exits
# with CRASH_EXIT_CODE right after its first checkpoint, as if killed (read by the driver).
CRASH_ENV = "MAXENT_SWEEP_CRASH_AFTER_CHECKPOINT"
CRASH_EXIT_CODE = 75
SCORES = ("mesh_mean", "mesh_p10", "mesh_worst", "nominal")


class SweepError(ValueError):
    """Bad sweep input (unknown method or field, a directory from another sweep...)."""


# --------------------------------------------------------------------------- the config


@dataclass
class SweepConfig:
    """Everything a sweep is; a file and flags fill it (flags win).

    Attributes:
        methods: of :data:`METHODS`.
        tasks: Gymnasium MuJoCo ids (each needs an uncertainty set; qarl/rarl need adversary
            defaults in ``maxent.envs.adversarial.TASKS`` or ``bodies`` in their table).
        seeds: seeds of every (method, task, budget).
        budgets: env steps per run (every method the same).
        root: the sweep's directory.
        common: config fields applied to every method's config that has them.
        sac: SACConfig fields for ``sac`` and ``dr``.
        dr: SACConfig fields for ``dr`` only (on top of ``sac``).
        qarl: QARLConfig fields.
        rarl: RARLConfig fields.
        uncertainty: task -> uncertainty set name; default: the task's 2-D RRLS set.
        max_episode_steps: time limit of training episodes (``None``: the task's); also of
            evaluation episodes unless ``eval_max_episode_steps``.
        checkpoint_every: env steps between checkpoints (and one at the end).
        save_replay_buffer: keep replay buffers in checkpoints (an exact resume needs them).
        points_per_dim: mesh values per parameter (both bounds included; RRLS uses 10).
        episodes: episodes per mesh point.
        adversary_episodes: episodes on the nominal task and against each adversary.
        eval_seed: first evaluation episode seed.
        eval_max_episode_steps: time limit of evaluation episodes (``None``: ``max_episode_steps``).
        pool_size: evaluation envs stepped in lockstep.
        claim: the method whose probability of improvement over each other method is reported.
        bootstrap_reps: stratified-bootstrap resamples of the rliable intervals.
        backend: ``"auto"`` (Ray when installed, else sequential), ``"ray"`` or ``"sequential"``.
        address: a Ray cluster to join (``"auto"`` or ``"host:port"``); ``None`` starts Ray here.
        workers: Ray CPUs on this machine (``None``: one per core); one run per CPU.
        retries: Ray retries of a task whose worker died (a retry resumes from the checkpoint).
    """

    methods: tuple[str, ...] = METHODS
    tasks: tuple[str, ...] = ("InvertedPendulum-v5",)
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    budgets: tuple[int, ...] = (20_000,)
    root: str = "runs/sweep"
    common: dict[str, Any] = field(default_factory=dict)
    sac: dict[str, Any] = field(default_factory=dict)
    dr: dict[str, Any] = field(default_factory=dict)
    qarl: dict[str, Any] = field(default_factory=dict)
    rarl: dict[str, Any] = field(default_factory=dict)
    uncertainty: dict[str, str] = field(default_factory=dict)
    max_episode_steps: int | None = None
    checkpoint_every: int = 5_000
    save_replay_buffer: bool = True
    points_per_dim: int = 10
    episodes: int = 1
    adversary_episodes: int = 5
    eval_seed: int = 10_000
    eval_max_episode_steps: int | None = None
    pool_size: int = 64
    claim: str | None = None
    bootstrap_reps: int = 2_000
    backend: str = "auto"
    address: str | None = None
    workers: int | None = None
    retries: int = 0

    def __post_init__(self) -> None:
        self.methods = tuple(_names_list(self.methods, "methods"))
        for method in self.methods:
            if method not in METHODS:
                raise SweepError(f"unknown method {method!r} in methods{_hint(method, METHODS)}; "
                                 f"valid methods: {list(METHODS)}")
        if len(set(self.methods)) != len(self.methods):
            raise SweepError(f"methods lists a method twice: {list(self.methods)}")
        self.tasks = tuple(_names_list(self.tasks, "tasks"))
        if isinstance(self.seeds, int) and not isinstance(self.seeds, bool):
            if self.seeds < 1:
                raise SweepError(f"seeds = N needs N >= 1, got {self.seeds}")
            self.seeds = tuple(range(self.seeds))
        self.seeds = tuple(_int(s, "seeds", least=0) for s in _as_list(self.seeds, "seeds"))
        self.budgets = tuple(_count(b, "budgets") for b in _as_list(self.budgets, "budgets"))
        for name, values in (("tasks", self.tasks), ("seeds", self.seeds), ("budgets", self.budgets)):
            if not values:
                raise SweepError(f"{name} must not be empty")
            if len(set(values)) != len(values):
                raise SweepError(f"{name} lists a value twice: {list(values)}")
        for name in ("common", "sac", "dr", "qarl", "rarl", "uncertainty"):
            if not isinstance(getattr(self, name), Mapping):
                raise SweepError(f"{name} must be a table of fields, got {getattr(self, name)!r}")
            setattr(self, name, dict(getattr(self, name)))
        for name in ("checkpoint_every", "points_per_dim", "episodes", "adversary_episodes",
                     "pool_size", "bootstrap_reps"):
            setattr(self, name, _count(getattr(self, name), name))
        if self.points_per_dim < 2:
            raise SweepError(f"points_per_dim must be >= 2 (the mesh holds both bounds of every "
                             f"range), got {self.points_per_dim}")
        for name in ("max_episode_steps", "eval_max_episode_steps", "workers"):
            if getattr(self, name) is not None:
                setattr(self, name, _count(getattr(self, name), name))
        self.retries = _int(self.retries, "retries", least=0)
        self.eval_seed = _int(self.eval_seed, "eval_seed", least=0)
        if self.backend not in BACKENDS:
            raise SweepError(f"backend must be one of {list(BACKENDS)}, got {self.backend!r}")
        if self.claim is not None and self.claim not in self.methods:
            raise SweepError(f"claim {self.claim!r} is not one of the sweep's methods {list(self.methods)}")
        self.root = str(self.root)

    @property
    def claimed(self) -> str:
        if self.claim is not None:
            return self.claim
        return next((m for m in self.methods if m in ADVERSARIAL), self.methods[0])


FIELDS = tuple(f.name for f in dataclasses.fields(SweepConfig))


def _hint(name: Any, valid: Sequence[str]) -> str:
    close = difflib.get_close_matches(str(name), list(valid), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _as_list(value: Any, name: str) -> list:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        return [value]
    return list(value)


def _names_list(value: Any, name: str) -> list[str]:
    out = _as_list(value, name)
    for item in out:
        if not isinstance(item, str):
            raise SweepError(f"{name} must be names (strings), got {item!r}")
    return out


def _int(value: Any, name: str, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
        raise SweepError(f"{name} must be integers >= {least}, got {value!r}")
    return int(value)


def _count(value: Any, name: str) -> int:
    """A positive whole number; ``20000``, ``2e4`` and ``"20_000"`` are accepted."""
    if isinstance(value, str):
        text = value.strip().replace("_", "")
        try:
            value = float(text)
        except ValueError:
            raise SweepError(f"{name} must be a positive whole number such as 20000 or 2e4, "
                             f"got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value) or value != int(value) or value < 1:
        raise SweepError(f"{name} must be a positive whole number such as 20000 or 2e4, got {value!r}")
    return int(value)


def load_sweep_config(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None,
                      ) -> SweepConfig:
    """A :class:`SweepConfig` from a TOML/YAML file (``None``: defaults) with ``overrides`` on top;
    an unknown field names itself and the file."""
    data: dict[str, Any] = {}
    where = "the flags"
    if path is not None:
        path = Path(path)
        where = str(path)
        if not path.is_file():
            raise SweepError(f"sweep config {path} does not exist")
        if path.suffix in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError:
                raise SweepError(f"{path} is YAML, which needs PyYAML: pip install pyyaml (or write "
                                 "the sweep as TOML)") from None
            loaded = yaml.safe_load(path.read_text()) or {}
        elif path.suffix == ".toml":
            try:
                loaded = tomllib.loads(path.read_text())
            except tomllib.TOMLDecodeError as err:
                raise SweepError(f"{path} is not valid TOML: {err}") from None
        else:
            raise SweepError(f"sweep config {path} must end in .toml, .yaml or .yml")
        if not isinstance(loaded, Mapping):
            raise SweepError(f"{path} must hold a table of sweep fields, got {type(loaded).__name__}")
        data.update(loaded)
    for key, value in (overrides or {}).items():
        if "." in key:  # section.field from --set
            section, _, name = key.partition(".")
            if section not in ("common", "sac", "dr", "qarl", "rarl", "uncertainty"):
                raise SweepError(f"--set {key}: {section!r} is not a table; tables: common, sac, dr, "
                                 "qarl, rarl, uncertainty")
            data.setdefault(section, {})
            data[section] = {**data[section], name: value}
        else:
            data[key] = value
    unknown = [k for k in data if k not in FIELDS]
    if unknown:
        raise SweepError(f"unknown sweep field {unknown[0]!r} in {where}{_hint(unknown[0], FIELDS)}; "
                         f"valid fields: {list(FIELDS)}")
    try:
        return SweepConfig(**data)
    except TypeError as err:
        raise SweepError(f"{where}: {err}") from None


# --------------------------------------------------------------------------- the plan


def _agent_classes(method: str) -> tuple[type, type]:
    if method in ("sac", "dr"):
        from maxent.agents.sac import SAC, SACConfig
        return SAC, SACConfig
    from maxent.agents.qarl import QARL, QARLConfig, RARLConfig
    return QARL, (QARLConfig if method == "qarl" else RARLConfig)


def _field_names(config_cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(config_cls)}


def method_config(cfg: SweepConfig, method: str) -> dict[str, Any]:
    """The resolved config (JSON form) a method's runs train with; bad fields are named."""
    _, config_cls = _agent_classes(method)
    known = _field_names(config_cls)
    values: dict[str, Any] = {"torch_threads": 1}  # one core per run
    if method in ADVERSARIAL and cfg.max_episode_steps is not None:
        values["max_episode_steps"] = cfg.max_episode_steps
    values.update({k: v for k, v in cfg.common.items() if k in known})
    tables = [("sac", cfg.sac), ("dr", cfg.dr)] if method == "dr" else [(method, getattr(cfg, method))]
    for table, entries in tables:
        for key, value in entries.items():
            if key not in known:
                raise SweepError(f"unknown {config_cls.__name__} field {key!r} in [{table}]"
                                 f"{_hint(key, sorted(known))}; valid fields: {sorted(known)}")
            values[key] = value
    try:
        return config_cls.from_json(values).to_json()
    except (TypeError, ValueError) as err:
        raise SweepError(f"[{method}] config: {err}") from None


def _check_common(cfg: SweepConfig) -> None:
    known: set[str] = set()
    for method in cfg.methods:
        known |= _field_names(_agent_classes(method)[1])
    for key in cfg.common:
        if key not in known:
            raise SweepError(f"unknown field {key!r} in [common]: no config of the methods "
                             f"{list(cfg.methods)} has it{_hint(key, sorted(known))}")


def task_uncertainty(cfg: SweepConfig, task: str) -> Any:
    from maxent.envs.uncertainty import default_uncertainty_set, uncertainty_set

    if task in cfg.uncertainty:
        try:
            uset = uncertainty_set(cfg.uncertainty[task])
        except ValueError as err:
            raise SweepError(f"[uncertainty] {task}: {err}") from None
        if uset.task != task:
            raise SweepError(f"[uncertainty] {task}: set {uset.name!r} is for {uset.task}")
        return uset
    try:
        return default_uncertainty_set(task, dim=2)
    except ValueError as err:
        raise SweepError(f"task {task}: {err}; or name one in [uncertainty]") from None


def run_name(task: str, method: str, seed: int, budget: int) -> str:
    return f"{task}/{method}/s{seed}-{budget}"


def plan_runs(cfg: SweepConfig) -> list[dict[str, Any]]:
    """One spec (plain JSON) per run of the sweep, everything validated first."""
    from maxent.training.vector import check_env_id

    unknown_tables = [t for t in cfg.uncertainty if t not in cfg.tasks]
    if unknown_tables:
        raise SweepError(f"[uncertainty] names task {unknown_tables[0]!r}, which is not in tasks "
                         f"{list(cfg.tasks)}")
    _check_common(cfg)
    configs = {m: method_config(cfg, m) for m in cfg.methods}
    root = Path(cfg.root).resolve()
    plan = []
    for task in cfg.tasks:
        try:
            check_env_id(task)
        except ValueError as err:
            raise SweepError(f"tasks: {err}") from None
        uset = task_uncertainty(cfg, task)
        for method in cfg.methods:
            if method in ADVERSARIAL and configs[method].get("bodies") is None:
                from maxent.envs.adversarial import TASKS
                if task not in TASKS:
                    raise SweepError(f"{method} on {task}: no default adversary bodies for this task "
                                     f"(known: {sorted(TASKS)}); set bodies in [{method}]")
            for seed in cfg.seeds:
                for budget in cfg.budgets:
                    name = run_name(task, method, seed, budget)
                    plan.append({
                        "name": name, "dir": str(root / name), "method": method, "task": task,
                        "seed": seed, "budget": budget, "config": configs[method],
                        "env": {"task": task, "max_episode_steps": cfg.max_episode_steps,
                                "domain_randomization": uset.name if method == "dr" else None},
                        "checkpoint_every": cfg.checkpoint_every,
                        "save_replay_buffer": cfg.save_replay_buffer,
                    })
    return plan


def _identity(cfg: SweepConfig) -> dict[str, Any]:
    return {"configs": {m: method_config(cfg, m) for m in cfg.methods},
            "max_episode_steps": cfg.max_episode_steps}


def _differences(saved: Any, wanted: Any, path: str = "") -> list[str]:
    if isinstance(saved, Mapping) and isinstance(wanted, Mapping):
        out = []
        for key in sorted(set(saved) & set(wanted)):
            out += _differences(saved[key], wanted[key], f"{path}.{key}" if path else key)
        return out
    return [] if saved == wanted else [f"{path} is {saved!r} there, {wanted!r} here"]


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


def prepare_root(cfg: SweepConfig, plan: list[dict[str, Any]]) -> Path:
    """Create or check the sweep's manifest and every run's ``run.json``; refuse a directory or a
    run made by a different sweep, naming what differs."""
    root = Path(cfg.root).resolve()
    manifest = root / MANIFEST
    identity = _identity(cfg)
    if manifest.exists():
        saved = json.loads(manifest.read_text())
        if saved.get("format") != FORMAT:
            raise SweepError(f"{manifest} is not a {FORMAT} manifest; choose another root")
        diffs = [d for d in _differences(saved["identity"], identity)
                 if d.split(" ")[0].rsplit(".", 1)[-1] not in RESUMABLE_CHANGES]
        if diffs:
            raise SweepError(f"{root} holds a different sweep ({MANIFEST}): {'; '.join(diffs)}. Resume "
                             "it with the same settings, or choose another root")
        merged = saved["identity"]
        merged["configs"] = {**merged["configs"], **identity["configs"]}
        identity = merged
    elif root.exists() and any(p for p in root.iterdir() if not p.name.startswith(".")):
        raise SweepError(f"{root} is not empty and holds no {MANIFEST}: it is not a sweep directory; "
                         "choose another root")
    root.mkdir(parents=True, exist_ok=True)
    _write_json(manifest, {"format": FORMAT, "identity": identity})
    for spec in plan:
        run_dir = Path(spec["dir"])
        info = run_dir / "run.json"
        if info.exists():
            saved = json.loads(info.read_text())
            mine = {k: spec[k] for k in ("method", "task", "seed", "budget", "env")}
            diffs = _differences({k: saved.get(k) for k in mine}, mine)
            diffs += [d for d in _differences(saved.get("config", {}), spec["config"], "config")
                      if d.split(" ")[0].removeprefix("config.") not in RESUMABLE_CHANGES]
            if diffs:
                raise SweepError(f"run {run_dir} is from a different sweep: {'; '.join(diffs)}; "
                                 "choose another root")
        elif run_dir.exists() and any(run_dir.iterdir()):
            raise SweepError(f"run directory {run_dir} exists but was not made by a sweep (no "
                             "run.json); move it away or choose another root")
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_json(info, {k: spec[k] for k in ("method", "task", "seed", "budget", "env", "config")})
    return root


# --------------------------------------------------------------------------- one run


def make_env(task: str, max_episode_steps: int | None = None,
             domain_randomization: str | None = None) -> Any:
    """A run's training env (picklable as a ``functools.partial`` for Ray)."""
    from maxent.envs.uncertainty import DomainRandomization
    from maxent.training.vector import make_env as make_task

    kwargs = {} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}
    env = make_task(task, **kwargs)
    return env if domain_randomization is None else DomainRandomization(env, domain_randomization)


def _train_env(spec: dict[str, Any]) -> Any:
    """An env id when one describes the env (the run directory is then usable by `maxent eval`),
    else a constructor."""
    env = spec["env"]
    if spec["method"] in ADVERSARIAL:
        return env["task"]  # QARL's time limit is its config's max_episode_steps
    if env["max_episode_steps"] is None:
        if env["domain_randomization"] is None:
            return env["task"]
        from maxent.envs.uncertainty import domain_randomized_id
        return domain_randomized_id(env["domain_randomization"])
    return functools.partial(make_env, env["task"], env["max_episode_steps"],
                             env["domain_randomization"])


def _has_checkpoint(run_dir: Path) -> bool:
    model = run_dir / "model"
    return model.exists() or any(run_dir.glob(".model.old-*"))


def _load_agent(spec: dict[str, Any], env: Any = None) -> Any:
    cls, _ = _agent_classes(spec["method"])
    model = Path(spec["dir"]) / "model"
    if spec["method"] in ADVERSARIAL:
        return cls.load(model)
    return cls.load(model, env=env if env is not None else _train_env(spec))


def _exit_after_checkpoint(model_dir: Path) -> Any:
    """Test hook: a callback that ends the process (as a kill would) once the run's first
    checkpoint exists."""
    from maxent.training.agent import Callback

    class ExitAfterCheckpoint(Callback):
        def on_step(self, agent: Any) -> bool:
            if (model_dir / "config.json").exists():
                os._exit(CRASH_EXIT_CODE)
            return True

    return ExitAfterCheckpoint()


def train_run(spec: dict[str, Any], crash_after_checkpoint: bool = False) -> dict[str, Any]:
    """Train one run to its budget, resuming from its checkpoint; returns (and writes to
    ``done.json``) its step count, wall time and speed. A finished run is skipped."""
    import torch

    from maxent.training.agent import CheckpointCallback

    run_dir = Path(spec["dir"])
    done_file = run_dir / "done.json"
    if done_file.exists():
        done = json.loads(done_file.read_text())
        if done.get("steps", 0) >= spec["budget"]:
            return {**done, "skipped": True}
    torch.set_num_threads(int(spec["config"].get("torch_threads") or 1))
    cls, config_cls = _agent_classes(spec["method"])
    model_dir = run_dir / "model"
    start = time.perf_counter()
    if _has_checkpoint(run_dir):
        overrides = {k: spec["config"][k] for k in RESUMABLE_CHANGES if k in spec["config"]}
        if spec["method"] in ADVERSARIAL:
            agent = cls.load(model_dir, log_dir=run_dir, **overrides)
        else:
            agent = cls.load(model_dir, env=_train_env(spec), log_dir=run_dir, **overrides)
        crash_after_checkpoint = False  # the hook kills fresh runs only
    else:
        agent = cls(_train_env(spec), config=config_cls.from_json(spec["config"]), seed=spec["seed"],
                    log_dir=run_dir)
    resumed_from = int(agent.num_timesteps)
    try:
        remaining = spec["budget"] - agent.num_timesteps
        if remaining > 0:
            callbacks = [CheckpointCallback(spec["checkpoint_every"], model_dir,
                                            include_replay_buffer=spec["save_replay_buffer"])]
            if crash_after_checkpoint:
                callbacks.append(_exit_after_checkpoint(model_dir))
            agent.learn(remaining, callback=callbacks)
        elapsed = time.perf_counter() - start
        recent = list(getattr(agent, "episode_returns", []))
        done = {"name": spec["name"], "steps": int(agent.num_timesteps), "resumed_from": resumed_from,
                "wall_s": elapsed,
                "steps_per_s": (agent.num_timesteps - resumed_from) / elapsed if elapsed > 0 else 0.0,
                "train_return": float(np.mean(recent[-10:])) if recent else math.nan}
    finally:
        agent.close()
    _write_json(done_file, done)
    return done


# --------------------------------------------------------------------------- one evaluation


def eval_spec(cfg: SweepConfig, spec: dict[str, Any], plan: list[dict[str, Any]]) -> dict[str, Any]:
    """What :func:`evaluate_run` does for a run: the mesh of its task's set, the nominal task, and
    every adversarial method's adversary of the same (task, seed, budget)."""
    adversaries = {LABELS[other["method"]]: other for other in plan
                   if other["method"] in ADVERSARIAL and other["task"] == spec["task"]
                   and other["seed"] == spec["seed"] and other["budget"] == spec["budget"]}
    return {"run": spec, "uncertainty": task_uncertainty(cfg, spec["task"]).to_json(),
            "points_per_dim": cfg.points_per_dim, "episodes": cfg.episodes,
            "adversary_episodes": cfg.adversary_episodes, "seed": cfg.eval_seed,
            "max_episode_steps": cfg.eval_max_episode_steps or cfg.max_episode_steps,
            "pool_size": cfg.pool_size, "adversaries": adversaries}


def _eval_key(espec: dict[str, Any]) -> str:
    what = {k: v for k, v in espec.items() if k not in ("run", "adversaries", "pool_size")}
    what["adversaries"] = sorted(a["name"] for a in espec["adversaries"].values())
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:12]


def evaluate_run(espec: dict[str, Any], *_trained: Any) -> dict[str, Any]:
    """Score one trained run (``_trained``: the training results it waits for, under Ray); the
    result is cached in the run directory per evaluation setting."""
    import torch

    from maxent.cli.robustness import GridEvaluator, _Job, _policy, evaluate_mesh
    from maxent.envs.uncertainty import UncertaintySet

    spec = espec["run"]
    cache = Path(spec["dir"]) / f"eval-{_eval_key(espec)}.json"
    if cache.exists():
        return json.loads(cache.read_text())
    torch.set_num_threads(1)
    uset = UncertaintySet.from_json(espec["uncertainty"])
    start = time.perf_counter()
    agent = _load_agent(spec, env=spec["task"] if spec["method"] not in ADVERSARIAL else None)
    evaluator = GridEvaluator(spec["task"], espec["max_episode_steps"], espec["pool_size"], physics=True)
    try:
        result = evaluate_mesh(agent, uset, espec["points_per_dim"], espec["episodes"], espec["seed"],
                               evaluator=evaluator)
        side = {}
        conditions = [("nominal", None)] + [(f"vs {label}", other)
                                            for label, other in espec["adversaries"].items()]
        for condition, other in conditions:
            adversary = _load_agent(other) if other is not None else None
            try:
                jobs = [_Job((), espec["seed"] + e, {}) for e in range(espec["adversary_episodes"])]
                evaluator.run(jobs, _policy(agent), adversary=adversary)
                side[condition] = [job.out[0] for job in jobs]
            finally:
                if adversary is not None:
                    adversary.close()
    finally:
        evaluator.close()
        agent.close()
    out = {"name": spec["name"], "method": spec["method"], "task": spec["task"], "seed": spec["seed"],
           "budget": spec["budget"], "uncertainty": uset.name, "parameters": list(uset.names),
           "points": [list(p.values()) for p in result.points],
           "mesh_returns": result.returns.tolist(), "scores": result.scores(),
           "conditions": side, "wall_s": time.perf_counter() - start}
    _write_json(cache, out)
    return out


# --------------------------------------------------------------------------- backends


def _import_ray(why: str) -> Any:
    try:
        import ray
    except ImportError:
        raise SweepError(f"{why}, but Ray is not installed: pip install 'maxent[ray]' (or run the "
                         "plan without it: --backend sequential)") from None
    return ray


def _choose_backend(cfg: SweepConfig) -> str:
    if cfg.backend == "sequential":
        if cfg.address is not None:
            raise SweepError("--address joins a Ray cluster; it cannot run with --backend sequential")
        return "sequential"
    if cfg.backend == "ray" or cfg.address is not None:
        _import_ray("--backend ray" if cfg.backend == "ray" else f"--address {cfg.address}")
        return "ray"
    try:
        import ray  # noqa: F401
    except ImportError:
        return "sequential"
    return "ray"


def _crash_names() -> set[str]:
    return {n.strip() for n in os.environ.get(CRASH_ENV, "").split(",") if n.strip()}


def _run_sequential(plan, evals, log) -> tuple[dict, dict, dict]:
    crash = _crash_names()
    trained, scored, failed = {}, {}, {}
    for spec in plan:
        try:
            trained[spec["name"]] = train_run(spec, spec["name"] in crash)
            log(_trained_line(trained[spec["name"]]))
        except Exception as err:  # one failed run must not stop the others
            failed[spec["name"]] = f"training failed: {type(err).__name__}: {err}"
            log(f"FAILED {spec['name']}: {failed[spec['name']]}")
    for espec in evals:
        name = espec["run"]["name"]
        missing = [n for n in [name, *[a["name"] for a in espec["adversaries"].values()]]
                   if n not in trained]
        if missing:
            failed.setdefault(name, f"not evaluated: {', '.join(missing)} did not finish training")
            continue
        try:
            scored[name] = evaluate_run(espec)
            log(f"scored {name} ({scored[name]['wall_s']:.1f} s)")
        except Exception as err:
            failed[name] = f"evaluation failed: {type(err).__name__}: {err}"
            log(f"FAILED {name}: {failed[name]}")
    return trained, scored, failed


def _run_ray(cfg: SweepConfig, plan, evals, log) -> tuple[dict, dict, dict]:
    ray = _import_ray("Ray was asked for")
    started = not ray.is_initialized()
    if started:
        if cfg.address is not None:
            ray.init(address=cfg.address, log_to_driver=False)
        else:
            ray.init(num_cpus=cfg.workers or os.cpu_count() or 1, include_dashboard=False,
                     log_to_driver=False)
    try:
        log(f"ray: {ray.cluster_resources().get('CPU', 0):g} CPUs"
            + (f" at {cfg.address}" if cfg.address else " on this machine"))
        crash = _crash_names()
        train_task = ray.remote(num_cpus=1, max_retries=cfg.retries)(train_run)
        eval_task = ray.remote(num_cpus=1, max_retries=cfg.retries)(evaluate_run)
        refs: dict[Any, tuple[str, str]] = {}
        train_refs = {}
        for spec in plan:
            ref = train_task.remote(spec, spec["name"] in crash)
            train_refs[spec["name"]] = ref
            refs[ref] = ("train", spec["name"])
        for espec in evals:  # Ray starts each once the runs it plays against are trained
            deps = [train_refs[espec["run"]["name"]],
                    *[train_refs[a["name"]] for a in espec["adversaries"].values()]]
            refs[eval_task.remote(espec, *deps)] = ("eval", espec["run"]["name"])
        trained, scored, failed = {}, {}, {}
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            kind, name = refs[ready[0]]
            try:
                value = ray.get(ready[0])
            except Exception as err:  # a task error, a dead worker, a failed dependency
                text = str(err).strip().splitlines()
                reason = f"{type(err).__name__}: {text[-1] if text else ''}"
                # An evaluation waiting on a failed run fails with that run's error.
                failed.setdefault(name, f"{'training' if kind == 'train' else 'evaluation'} failed: "
                                  f"{reason}")
                log(f"FAILED {name}: {failed[name]}")
                continue
            if kind == "train":
                trained[name] = value
                log(_trained_line(value))
            else:
                scored[name] = value
                log(f"scored {name} ({value['wall_s']:.1f} s)")
        return trained, scored, failed
    finally:
        if started:
            ray.shutdown()


def _trained_line(done: dict[str, Any]) -> str:
    if done.get("skipped"):
        return f"finished already: {done['name']} ({done['steps']} steps)"
    resumed = f", resumed at step {done['resumed_from']}" if done["resumed_from"] else ""
    return (f"trained {done['name']}: {done['steps']} steps in {done['wall_s']:.1f} s "
            f"({done['steps_per_s']:.0f} steps/s{resumed})")


@dataclass
class SweepResult:
    """What :func:`run_sweep` did."""

    root: Path
    backend: str
    trained: dict[str, dict]
    scored: dict[str, dict]
    failed: dict[str, str]
    files: dict[str, Path]
    aggregates: dict[str, Any]


def run_sweep(cfg: SweepConfig, verbose: bool = True, log: Callable[[str], None] | None = None,
              report: bool = True) -> SweepResult:
    """Plan, train, score and (with ``report``) report a sweep (see the module docstring);
    resumable: call it again with the same config to finish what a killed call left."""
    log = log or (print if verbose else (lambda _line: None))
    plan = plan_runs(cfg)
    backend = _choose_backend(cfg)
    root = prepare_root(cfg, plan)
    evals = [eval_spec(cfg, spec, plan) for spec in plan]
    log(f"sweep {root}: {len(plan)} runs ({len(cfg.methods)} methods x {len(cfg.tasks)} tasks x "
        f"{len(cfg.seeds)} seeds x {len(cfg.budgets)} budgets) on {backend}")
    start = time.perf_counter()
    if backend == "ray":
        trained, scored, failed = _run_ray(cfg, plan, evals, log)
    else:
        trained, scored, failed = _run_sequential(plan, evals, log)
    files, aggregates = {}, {}
    if report:
        files, aggregates = write_report(cfg, plan, scored, root / REPORT_DIR, trained=trained,
                                         verbose=verbose)
    log(f"sweep took {time.perf_counter() - start:.1f} s; report in {root / REPORT_DIR}")
    if failed:
        log(f"{len(failed)} run(s) did not finish: {', '.join(sorted(failed))}; run the same command "
            "again to resume them")
    return SweepResult(root, backend, trained, scored, failed, files, aggregates)


# --------------------------------------------------------------------------- the report


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

    from maxent.cli.robustness import _heatmaps, confidence_interval

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
                _heatmaps(grids, axes, f"{task} ({budget} steps)", path)
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
    _write_json(files["aggregates"], aggregates)
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


# --------------------------------------------------------------------------- the command


def _parse_value(text: str) -> Any:
    """A --set value read as TOML (numbers, booleans, [lists], "strings"), else the bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="maxent sweep",
        description="Train methods x seeds x tasks x budgets as resumable run directories (Ray "
                    "tasks, or sequentially without Ray), score them on an uncertainty mesh and "
                    "against each adversarial method's adversary, and write the report. Running "
                    "the same command again skips finished runs and resumes killed ones.")
    parser.add_argument("config", nargs="?", type=Path, help="sweep file (.toml, .yaml/.yml)")
    parser.add_argument("--methods", nargs="+", help=f"of {list(METHODS)}")
    parser.add_argument("--tasks", nargs="+", help="Gymnasium MuJoCo ids")
    parser.add_argument("--seeds", nargs="+", type=int, help="the seeds, e.g. 0 1 2")
    parser.add_argument("--n-seeds", type=int, help="seeds 0..N-1")
    parser.add_argument("--budgets", nargs="+", help="env steps per run, e.g. 2e4")
    parser.add_argument("--root", help="the sweep's directory")
    parser.add_argument("--backend", choices=BACKENDS, help="default auto: Ray when installed")
    parser.add_argument("--address", help="Ray cluster address ('auto' or host:port)")
    parser.add_argument("--workers", type=int, help="Ray CPUs on this machine (default: cores)")
    parser.add_argument("--retries", type=int, help="Ray retries of a task whose worker died")
    parser.add_argument("--points-per-dim", type=int, help="mesh values per parameter (>= 2)")
    parser.add_argument("--episodes", type=int, help="episodes per mesh point")
    parser.add_argument("--adversary-episodes", type=int, help="episodes per adversary and nominal")
    parser.add_argument("--max-episode-steps", type=int, help="time limit of episodes")
    parser.add_argument("--checkpoint-every", help="env steps between checkpoints")
    parser.add_argument("--set", action="append", default=[], metavar="[TABLE.]FIELD=VALUE",
                        help="any field, e.g. --set qarl.max_force=5 --set common.hidden_sizes=[64,64]")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and stop")
    parser.add_argument("--quiet", action="store_true", help="print only the summary")
    return parser


def sweep_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``maxent sweep``: 0 when every run was trained and scored, 1 otherwise."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    overrides: dict[str, Any] = {}
    for name in ("methods", "tasks", "budgets", "root", "backend", "address", "workers", "retries",
                 "points_per_dim", "episodes", "adversary_episodes", "max_episode_steps",
                 "checkpoint_every"):
        value = getattr(args, name)
        if value is not None:
            overrides[name] = value
    if args.seeds is not None and args.n_seeds is not None:
        raise SystemExit("maxent sweep: give --seeds or --n-seeds, not both")
    if args.seeds is not None:
        overrides["seeds"] = args.seeds
    if args.n_seeds is not None:
        overrides["seeds"] = args.n_seeds
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"maxent sweep: --set {item!r} must be [TABLE.]FIELD=VALUE")
        overrides[key.strip()] = _parse_value(value.strip())
    try:
        cfg = load_sweep_config(args.config, overrides)
        if args.dry_run:
            plan = plan_runs(cfg)
            print(f"{len(plan)} runs on {_choose_backend(cfg)} into {Path(cfg.root).resolve()}:")
            for spec in plan:
                print(f"  {spec['name']}")
            return 0
        result = run_sweep(cfg, verbose=not args.quiet)
        if args.quiet and result.files.get("summary_md"):
            print(result.files["summary_md"].read_text(), end="")
    except SweepError as err:
        raise SystemExit(f"maxent sweep: {err}") from None
    return 1 if result.failed else 0


if __name__ == "__main__":
    raise SystemExit(sweep_main())
