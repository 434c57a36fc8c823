"""What a sweep is: its config (a TOML/YAML file and flags), the methods it may train (every
algorithm of :mod:`maxent.agents.registry` that acts on continuous-control tasks, plus ``dr``), the
plan of runs and evaluations, and the manifest that makes a re-run refuse a different sweep."""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from maxent.agents.registry import ALGORITHMS, Algorithm
from maxent.cli.config_files import check_nesting, load_config_file
from maxent.training.config import RESUMABLE_CHANGES

__all__ = ["BACKENDS", "LABELS", "METHODS", "SweepConfig", "SweepError", "eval_spec",
           "is_adversarial", "load_sweep_config", "method_algorithm", "method_config", "plan_runs",
           "prepare_root", "run_name", "sweepable", "task_uncertainty", "write_json"]

# Sweep methods that are a registered algorithm trained another way: ``dr`` is SAC trained with
# domain randomisation over the task's uncertainty set.
VARIANTS = {"dr": "sac"}


def sweepable() -> tuple[str, ...]:
    """Every method the sweep can train: the registered algorithms that act on continuous-control
    tasks, adversarial ones first (the default claim is the first), then the variants."""
    control = [n for n, a in ALGORITHMS.items() if a.control]
    return tuple(sorted(control, key=lambda n: not ALGORITHMS[n].adversarial)) + tuple(VARIANTS)


class _Labels(dict):
    """Method -> its name in reports (upper case), also for a method registered later."""

    def __missing__(self, method: str) -> str:
        return method.upper()


METHODS = sweepable()
LABELS = _Labels({m: m.upper() for m in METHODS})
BACKENDS = ("auto", "ray", "sequential")
MANIFEST = "sweep.json"
FORMAT = "maxent-sweep/1"
SCORES = ("mesh_mean", "mesh_p10", "mesh_worst", "nominal")


class SweepError(ValueError):
    """Bad sweep input (unknown method or field, a directory from another sweep...)."""


def method_algorithm(method: str) -> Algorithm:
    """The registered algorithm a sweep method trains (``dr``: SAC)."""
    return ALGORITHMS[VARIANTS.get(method, method)]


def is_adversarial(method: str) -> bool:
    """Whether the method trains an adversary, against which every protagonist is scored."""
    return method_algorithm(method).adversarial


def check_method(method: str) -> None:
    """Refuse a method that is not registered, or one that the sweep cannot train and score."""
    methods = sweepable()
    if method in methods:
        return
    if method in ALGORITHMS:
        raise SweepError(f"method {method!r} cannot be swept: the sweep trains continuous-control "
                         f"policies on MuJoCo tasks and scores them on an uncertainty mesh, and "
                         f"{method} is not one ({ALGORITHMS[method].summary}); sweepable methods: "
                         f"{list(methods)}")
    raise SweepError(f"unknown method {method!r} in methods{_hint(method, methods)}; valid methods: "
                     f"{list(methods)}")


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
        tables: method -> fields of its algorithm's config (``[qarl]`` in a file: QARLConfig
            fields); ``dr``'s apply on top of ``sac``'s.
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
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)
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
            check_method(method)
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
        for name in ("common", "uncertainty"):
            if not isinstance(getattr(self, name), Mapping):
                raise SweepError(f"{name} must be a table of fields, got {getattr(self, name)!r}")
            setattr(self, name, dict(getattr(self, name)))
        tables = {}
        for method, entries in dict(self.tables).items():
            check_method(method)
            if not isinstance(entries, Mapping):
                raise SweepError(f"{method} must be a table of fields, got {entries!r}")
            tables[method] = dict(entries)
        self.tables = tables
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
        return next((m for m in self.methods if is_adversarial(m)), self.methods[0])

    def table(self, method: str) -> dict[str, Any]:
        return self.tables.get(method, {})


# The keys of a sweep file: the config's fields, and one table per method instead of "tables".
FIELDS = tuple(f.name for f in dataclasses.fields(SweepConfig) if f.name != "tables")


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
    if value >= 2**63:  # step counters and seeds are int64 in numpy, torch and checkpoints
        raise SweepError(f"{name} must be below 2**63 (about 9.2e18), got {value!r}; use a "
                         "realistic count")
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
        if path.suffix not in (".toml", ".yaml", ".yml"):
            raise SweepError(f"sweep config {path} must end in .toml, .yaml or .yml")
        # Safe and bounded: no Python tags, no RecursionError, one-line errors naming the file.
        loaded = load_config_file(path, SweepError, (".toml", ".yaml", ".yml")) or {}
        if not isinstance(loaded, Mapping):
            raise SweepError(f"{path} must hold a table of sweep fields, got {type(loaded).__name__}")
        data.update(loaded)
    for key, value in (overrides or {}).items():
        check_nesting(value, f"the value of {key}", SweepError)
        if "." in key:  # section.field from --set
            section, _, name = key.partition(".")
            if "." in name:
                raise SweepError(f"--set {key}: tables are one level deep, so write TABLE.FIELD=VALUE "
                                 f"(e.g. {section}.{name.partition('.')[0]}=...)")
            tables = ("common", "uncertainty", *ALGORITHMS, *VARIANTS)
            if section not in tables:
                raise SweepError(f"--set {key}: {section!r} is not a table; tables: common, "
                                 f"uncertainty and one per method ({', '.join(sweepable())})")
            data.setdefault(section, {})
            data[section] = {**data[section], name: value}
        else:
            data[key] = value
    tables = {k: data.pop(k) for k in list(data) if k in ALGORITHMS or k in VARIANTS}
    unknown = [k for k in data if k not in FIELDS]
    if unknown:
        raise SweepError(f"unknown sweep field {unknown[0]!r} in {where}{_hint(unknown[0], FIELDS)}; "
                         f"valid fields: {list(FIELDS)} and a table per method")
    try:
        return SweepConfig(**data, tables=tables)
    except TypeError as err:
        raise SweepError(f"{where}: {err}") from None


# --------------------------------------------------------------------------- the plan


def _field_names(config_cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(config_cls)}


def method_config(cfg: SweepConfig, method: str) -> dict[str, Any]:
    """The resolved config (JSON form) a method's runs train with; bad fields are named."""
    config_cls = method_algorithm(method).config_class()
    known = _field_names(config_cls)
    values: dict[str, Any] = {"torch_threads": 1}  # one core per run
    # An adversarial agent makes its own envs, so its config carries the time limit.
    if is_adversarial(method) and cfg.max_episode_steps is not None:
        values["max_episode_steps"] = cfg.max_episode_steps
    values.update({k: v for k, v in cfg.common.items() if k in known})
    tables = [(VARIANTS[method], cfg.table(VARIANTS[method])), (method, cfg.table(method))] \
        if method in VARIANTS else [(method, cfg.table(method))]
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
        known |= _field_names(method_algorithm(method).config_class())
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
            if is_adversarial(method) and configs[method].get("bodies") is None:
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


def write_json(path: Path, data: Any) -> None:
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
    write_json(manifest, {"format": FORMAT, "identity": identity})
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
        write_json(info, {k: spec[k] for k in ("method", "task", "seed", "budget", "env", "config")})
    return root



# --------------------------------------------------------------------------- the evaluations


def eval_spec(cfg: SweepConfig, spec: dict[str, Any], plan: list[dict[str, Any]]) -> dict[str, Any]:
    """What :func:`evaluate_run` does for a run: the mesh of its task's set, the nominal task, and
    every adversarial method's adversary of the same (task, seed, budget)."""
    adversaries = {LABELS[other["method"]]: other for other in plan
                   if is_adversarial(other["method"]) and other["task"] == spec["task"]
                   and other["seed"] == spec["seed"] and other["budget"] == spec["budget"]}
    return {"run": spec, "uncertainty": task_uncertainty(cfg, spec["task"]).to_json(),
            "points_per_dim": cfg.points_per_dim, "episodes": cfg.episodes,
            "adversary_episodes": cfg.adversary_episodes, "seed": cfg.eval_seed,
            "max_episode_steps": cfg.eval_max_episode_steps or cfg.max_episode_steps,
            "pool_size": cfg.pool_size, "adversaries": adversaries}


def eval_key(espec: dict[str, Any]) -> str:
    what = {k: v for k, v in espec.items() if k not in ("run", "adversaries", "pool_size")}
    what["adversaries"] = sorted(a["name"] for a in espec["adversaries"].values())
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:12]

