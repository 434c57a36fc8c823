"""One run's lifecycle, the same for every algorithm and every caller: the run directory's layout,
finding its checkpoint, build-or-resume (refusing a resume with other settings), the run lock,
training with periodic checkpoints, the Ctrl-C message, and the final evaluation joined to the
last log row.

What differs between algorithms (how an agent is built, a warm-up before learning, what the final
evaluation measures) comes in as :class:`RunHooks`; this module knows no agent, env or flag parser.

Layout of a run directory::

    <run_dir>/model/            the last complete checkpoint (replaced atomically on every save)
    <run_dir>/.model.old-*      left only by a save killed between its two renames; loads as model/
    <run_dir>/progress.csv, events.out.tfevents.*   the logs
    <run_dir>/evaluation.json   the last final evaluation and the flags of the command that ran it
"""

from __future__ import annotations

import inspect
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from maxent.training import runlock
from maxent.training.config import RESUMABLE_CHANGES

__all__ = ["EVALUATION_FILE", "MODEL_SUBDIR", "Evaluation", "RunHooks", "RunResult", "RunSpec",
           "UsageError", "checkpoint_dir", "default_run_dir", "has_checkpoint", "learn",
           "open_agent", "read_evaluation", "read_header", "runs_under", "train"]

MODEL_SUBDIR = "model"
# The last final evaluation of a run and the command that made it, so that ``maxent eval`` repeats
# exactly that evaluation (seeds, count, metric).
EVALUATION_FILE = "evaluation.json"
EVAL_ACCURACY = "eval/accuracy"
EVAL_ACCURACY_STD = "eval/std_accuracy"


class UsageError(SystemExit):
    """A command line that cannot run as given (a bad flag, value or name): its message is one line
    naming the problem and the fix; the ``maxent`` console script exits with status 2 for it
    (argparse's convention), where refusals found while running exit with 1."""


# --------------------------------------------------------------------------- the layout


def default_run_dir(algorithm: str, where: str, seed: int, root: str | Path = "runs") -> Path:
    """``runs/<algorithm>-<where>-s<seed>``, with ``/`` of an env id such as maxent/X made ``_``."""
    return Path(root) / f"{algorithm}-{where.replace('/', '_')}-s{seed}"


def has_checkpoint(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds a checkpoint: ``model/``, or only the ``.model.old-*`` sibling
    that a save killed between its two renames leaves (it loads as ``model/``)."""
    run_dir = Path(run_dir)
    return (run_dir / MODEL_SUBDIR).exists() or any(run_dir.glob(f".{MODEL_SUBDIR}.old-*"))


def checkpoint_dir(path: str | Path) -> Path:
    """The checkpoint of ``path``: a run directory's ``model/`` (also when only its interrupted-save
    sibling is left: loading ``model/`` falls back to it), or ``path`` itself."""
    path = Path(path)
    return path / MODEL_SUBDIR if has_checkpoint(path) else path


def read_header(path: str | Path) -> dict:
    """The checkpoint header (kind, config) of a run directory or checkpoint directory; raises
    :class:`~maxent.training.checkpoint.CheckpointError` when it holds none."""
    from maxent.training.checkpoint import read_checkpoint_header

    return read_checkpoint_header(checkpoint_dir(path))


def read_evaluation(path: str | Path) -> dict | None:
    """The record of the last final evaluation of the run at ``path`` (a run directory or its
    checkpoint directory), or ``None`` when it has none (or an unreadable one)."""
    path = Path(path)
    for directory in (path, path.parent):
        record = directory / EVALUATION_FILE
        if record.is_file() and has_checkpoint(directory):
            try:
                data = json.loads(record.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return None
            return data if isinstance(data, dict) else None
    return None


def runs_under(root: str | Path, limit: int = 20) -> list[Path]:
    """Run directories below ``root`` (for a hint when a path holds no checkpoint)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p.parent.parent for p in root.glob(f"**/{MODEL_SUBDIR}/config.json"))[:limit]


# --------------------------------------------------------------------------- what a run is


@dataclass
class RunSpec:
    """One run of :func:`train`.

    Attributes:
        run_dir: where the checkpoint (``model/``) and the logs go.
        total_steps: steps in total; a resumed run trains only what is left.
        seed: the agent's seed (a resumed run must have the same).
        env: what a fresh agent trains on (an env id, a constructor...).
        config: the agent's config (a resumed run must match it up to ``RESUMABLE_CHANGES``).
        checkpoint_every: steps between checkpoints (and one at the end).
        save_replay_buffer: keep the replay buffer in checkpoints where the agent has one.
        resume: continue from the run directory's checkpoint; ``False`` refuses one that exists.
        check: refuse a resume whose agent kind, config, env id or seed differ from this spec's.
        progress_bar: show the agent's progress bar.
        prog: the command named in messages.
        log: where "resuming ..." goes (``None``: nowhere).
        command: the command line's flags, recorded with the final evaluation so that ``maxent
            eval`` rebuilds the same evaluation settings.
    """

    run_dir: Path
    total_steps: int
    seed: int = 0
    env: Any = None
    config: Any = None
    checkpoint_every: int = 10_000
    save_replay_buffer: bool = True
    resume: bool = True
    check: bool = True
    progress_bar: bool = False
    prog: str = "maxent train"
    log: Callable[[str], None] | None = print
    command: Sequence[str] = ()

    @property
    def model_dir(self) -> Path:
        return Path(self.run_dir) / MODEL_SUBDIR


@dataclass
class Evaluation:
    """The final evaluation of a run: what it measured, over how many of what, from which seed.

    ``row`` joins the last log row; ``text`` is what the training summary says (by default
    ``"eval "`` + :meth:`measure`, which ``maxent eval`` prints too).
    """

    row: dict[str, float] = field(default_factory=dict)
    text: str = ""
    metric: str = ""
    unit: str = ""
    mean: float = math.nan
    std: float | None = None
    count: int = 0
    seed: int | None = None
    digits: int = 2

    def __post_init__(self) -> None:
        if not self.text and self.metric:
            self.text = f"eval {self.measure()}"

    def measure(self) -> str:
        """E.g. ``return -131.84 ± 2.10 over 10 episodes`` or ``held-out accuracy 0.912 over 360
        test images``."""
        d = self.digits
        spread = "" if self.std is None else f" ± {self.std:.{d}f}"
        unit = self.unit[:-1] if self.count == 1 and self.unit.endswith("s") else self.unit
        return f"{self.metric} {self.mean:.{d}f}{spread} over {self.count} {unit}"

    @classmethod
    def of_scores(cls, scores: Any, metric: str, unit: str, seed: int | None) -> Evaluation:
        """Mean and spread of per-episode (or per-task) ``scores``; returns get the return columns
        of the log, anything else the accuracy columns."""
        import numpy as np

        scores = np.asarray(scores, dtype=float).reshape(-1)
        mean, std = float(scores.mean()), float(scores.std())
        keys = _return_columns() if metric == "return" else (EVAL_ACCURACY, EVAL_ACCURACY_STD)
        return cls(row={keys[0]: mean, keys[1]: std}, metric=metric, unit=unit, mean=mean, std=std,
                   count=len(scores), seed=seed,
                   digits=2 if metric == "return" else 3)

    def to_json(self) -> dict[str, Any]:
        return {"metric": self.metric, "unit": self.unit, "mean": self.mean, "std": self.std,
                "count": self.count, "seed": self.seed, "text": self.text}


def _return_columns() -> tuple[str, str]:
    """The log columns of a final evaluation's mean and std return."""
    from maxent.training import logging as mlog

    return mlog.EVAL_RETURN, mlog.EVAL_RETURN_STD


class RunHooks:
    """How a run builds, loads, prepares and scores its agent; the defaults fit an agent built as
    ``cls(env, config=..., seed=..., log_dir=...)`` that is evaluated on its own env.

    An algorithm that needs more (a warm-up, its own evaluation, its own flags) subclasses this and
    names the subclass in its registry entry (``maxent.agents.registry.Algorithm.hooks``).
    """

    #: A dataclass of the algorithm's own command-line flags (added to ``maxent train NAME``).
    flags: type | None = None

    def __init__(self, agent_class: type, eval_episodes: int | None = None, metric: str = "return",
                 unit: str = "episodes"):
        self.agent_class = agent_class
        self.eval_episodes = eval_episodes
        self.metric = metric
        self.unit = unit

    @classmethod
    def from_args(cls, agent_class: type, args: Any, algorithm: Any) -> RunHooks:
        """The hooks of one ``maxent train`` command; checks the algorithm's own flags."""
        return cls(agent_class, getattr(args, "eval_episodes", None), algorithm.metric,
                   algorithm.eval_unit)

    def where(self, args: Any) -> str:
        """What the run trains on, for its default directory name and the summary."""
        return args.env

    def label(self, args: Any) -> str:
        """What the run trains on, as the summary line names it."""
        return self.where(args)

    def spec_env(self, args: Any) -> Any:
        """What a fresh agent of this command trains on."""
        return args.env

    def planned_steps(self, total_steps: int | None) -> int:
        """The steps the run will take when ``--total-steps`` is ``total_steps`` (``None``: the
        algorithm's natural length, where it has one); the progress bar's total."""
        if total_steps is None:
            raise UsageError("--total-steps is required for this algorithm")
        return total_steps

    def build(self, spec: RunSpec) -> Any:
        return self.agent_class(spec.env, config=spec.config, seed=spec.seed, log_dir=spec.run_dir)

    def load(self, spec: RunSpec, overrides: dict[str, Any]) -> Any:
        return self.agent_class.load(spec.model_dir, env=self.resume_env(spec),
                                     log_dir=spec.run_dir, **overrides)

    def resume_env(self, spec: RunSpec) -> Any:
        """The env a resumed agent continues on; ``None``: the one saved in the checkpoint."""
        return None

    def checked_env(self, spec: RunSpec) -> str | None:
        """The env id a resumed agent must have been trained on (``None``: not checked)."""
        return spec.env if isinstance(spec.env, str) else None

    def before_learn(self, agent: Any, spec: RunSpec) -> None:
        """After build-or-resume, before ``learn`` (also when nothing is left to train)."""

    def eval_seed(self, seed: int) -> int:
        """The final evaluation's first seed for a run seeded ``seed`` (not one training uses)."""
        return 10_000 + seed

    def final_evaluation(self, agent: Any, seed: int, count: int | None = None, env: Any = None,
                         deterministic: bool = True) -> Evaluation:
        """The one evaluation of a trained agent, which the training summary and ``maxent eval``
        both report: ``count`` (default: ``eval_episodes``) episodes, episode ``i`` reset with
        ``seed + i``, on ``env`` (default: the agent's own)."""
        count = self.eval_episodes if count is None else count
        scores = agent.evaluate(count, env=env, seed=seed, deterministic=deterministic)
        return Evaluation.of_scores(scores, self.metric, self.unit, seed)

    def evaluate(self, agent: Any, spec: RunSpec) -> Evaluation:
        """The final evaluation of ``maxent train``: :meth:`final_evaluation` from the run's
        evaluation seed."""
        return self.final_evaluation(agent, self.eval_seed(spec.seed))


@dataclass
class RunResult:
    """What :func:`train` did; ``agent`` is closed."""

    agent: Any
    resumed_from: int | None
    trained: int
    elapsed: float
    evaluation: Evaluation | None

    @property
    def steps_per_s(self) -> float:
        return self.trained / self.elapsed if self.trained > 0 and self.elapsed > 0 else 0.0


# --------------------------------------------------------------------------- the lifecycle


def open_agent(spec: RunSpec, hooks: RunHooks) -> tuple[Any, bool]:
    """Build the run's agent, or resume it from the run directory's checkpoint: ``(agent,
    resumed)``. With ``spec.check``, a checkpoint of another agent kind, config, env or seed is
    refused with a ``SystemExit`` naming the flag and the fix."""
    if not has_checkpoint(spec.run_dir):
        return hooks.build(spec), False
    model_dir = spec.model_dir
    if not spec.resume:
        raise SystemExit(f"{spec.prog}: {model_dir} already holds a checkpoint; drop --no-resume "
                         "to continue it, or choose another --run-dir")
    wanted = spec.config.to_json() if spec.config is not None else {}
    if spec.check:
        header = read_header(spec.run_dir)
        kind = hooks.agent_class.checkpoint_kind()
        if header["kind"] != kind:
            raise SystemExit(f"{spec.prog}: {model_dir} holds a {header['kind']} agent, not "
                             f"{kind}; choose another --run-dir")
        saved = header["config"]
        changed = sorted(k for k in wanted if k in saved and saved[k] != wanted[k]
                         and k not in RESUMABLE_CHANGES)
        if changed:
            raise SystemExit(f"{spec.prog}: {model_dir} was trained with a different config "
                             f"({', '.join(changed)} differ); resume with the same values or "
                             "choose another --run-dir")
    agent = hooks.load(spec, {k: wanted[k] for k in RESUMABLE_CHANGES if k in wanted})
    if spec.check:
        checks = [("--seed", agent.seed, spec.seed)]
        env = hooks.checked_env(spec)
        if env is not None:
            checks.insert(0, ("--env", agent.env_id, env))
        for flag, saved_value, value in checks:
            if saved_value != value:
                agent.close()
                raise SystemExit(f"{spec.prog}: {model_dir} was trained with {flag} {saved_value}, "
                                 f"not {value}; resume with {flag} {saved_value} or choose another "
                                 "--run-dir")
    if spec.log is not None:
        note = "" if agent.num_timesteps < spec.total_steps else \
            f" (already at or past --total-steps {spec.total_steps}: nothing left to train)"
        spec.log(f"resuming {model_dir} at step {agent.num_timesteps}{note}")
    return agent, True


def learn(agent: Any, spec: RunSpec, steps: int, callbacks: Sequence[Any] = ()) -> None:
    """``agent.learn(steps)`` with a checkpoint every ``spec.checkpoint_every`` steps and at the
    end; Ctrl-C ends the command with a message saying the last checkpoint is intact."""
    from maxent.training.agent import CheckpointCallback

    save_options = {}
    if "include_replay_buffer" in inspect.signature(agent.save).parameters:
        save_options["include_replay_buffer"] = spec.save_replay_buffer
    checkpoints = CheckpointCallback(spec.checkpoint_every, spec.model_dir, **save_options)
    try:
        agent.learn(steps, callback=[checkpoints, *callbacks], progress_bar=spec.progress_bar)
    except KeyboardInterrupt:
        raise SystemExit(f"\n{spec.prog}: interrupted at step {agent.num_timesteps}; the last "
                         f"checkpoint in {spec.model_dir} is intact; run the same command to resume"
                         ) from None


def _write_evaluation(spec: RunSpec, evaluation: Evaluation) -> None:
    record = {**evaluation.to_json(), "command": list(spec.command)}
    path = Path(spec.run_dir) / EVALUATION_FILE
    tmp = path.with_name(f".{EVALUATION_FILE}.tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)


def train(spec: RunSpec, hooks: RunHooks, evaluate: bool = True,
          callbacks: Sequence[Any] = ()) -> RunResult:
    """The whole run, holding the run directory's lock (a second trainer there is refused before
    it reads the checkpoint this one writes): build or resume, train what is left with periodic
    checkpoints, then (with ``evaluate``) the final evaluation, joined to the last log row when
    this call trained."""
    with runlock.hold(spec.run_dir, purpose=spec.prog):
        agent, resumed = open_agent(spec, hooks)
        try:
            hooks.before_learn(agent, spec)
            first_step = int(agent.num_timesteps)
            remaining = spec.total_steps - first_step
            start = time.perf_counter()
            if remaining > 0:
                learn(agent, spec, remaining, callbacks)
            elapsed = time.perf_counter() - start
            evaluation = hooks.evaluate(agent, spec) if evaluate else None
            if evaluation is not None:
                _write_evaluation(spec, evaluation)
            joined = evaluation is not None and bool(evaluation.row) and remaining > 0
            if joined and agent.logger is not None:
                for key, value in evaluation.row.items():
                    agent.logger.record(key, value)
                agent.logger.dump(agent.num_timesteps)
        finally:
            agent.close()
    return RunResult(agent=agent, resumed_from=first_step if resumed else None,
                     trained=int(agent.num_timesteps) - first_step, elapsed=elapsed,
                     evaluation=evaluation)
