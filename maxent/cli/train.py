"""``maxent train ALGO``: the flags of every registered algorithm (tyro, from its config dataclass
and its run hooks' own flags), then the one run lifecycle of :mod:`maxent.training.run`.

``maxent train sac --env HalfCheetah-v5 --total-steps 1e6 --config.learning-rate 3e-4`` trains and
checkpoints into a run directory; running the same command again resumes from its last checkpoint.
Unknown fields and bad values are rejected with the field's name.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import tyro

from maxent.cli.flags import parse
from maxent.training.logging import rate_text
from maxent.training.run import Evaluation, RunHooks, RunSpec, UsageError, default_run_dir, train

if TYPE_CHECKING:
    from maxent.agents.registry import Algorithm

__all__ = ["RunArgs", "StreamArgs", "StreamHooks", "TrainArgs", "hooks_class", "parse_count",
           "parse_train_args", "train_args", "train_help", "train_main"]


def parse_count(text: str) -> int:
    """Accept step counts as ``20000``, ``2e4`` or ``20_000``."""
    digits = text.strip().replace("_", "")
    try:
        return int(digits)
    except ValueError:
        pass
    try:
        value = float(digits)
    except ValueError:
        raise ValueError(f"expected a number of steps such as 20000 or 2e4, got {text!r}") from None
    if not math.isfinite(value) or value != int(value):
        raise ValueError(f"expected a whole number of steps, got {text!r}")
    return int(value)


Count = Annotated[int, tyro.constructors.PrimitiveConstructorSpec(
    nargs=1, metavar="INT", instance_from_str=lambda args: parse_count(args[0]),
    is_instance=lambda x: isinstance(x, int), str_from_instance=lambda x: [str(x)])]


@dataclass
class RunArgs:
    """Train an agent; the same command resumes from the run directory's last checkpoint."""

    env: str = "Pendulum-v1"
    """Env id."""
    total_steps: Count = 20_000
    """Steps in total (a resumed run trains only what is left)."""
    seed: int = 0
    """Seeds networks, exploration, replay sampling and episode resets."""
    run_dir: Path | None = None
    """Where logs and the checkpoint go; default runs/<algo>-<env>-s<seed>."""
    checkpoint_every: Count = 10_000
    """Steps between checkpoints (and one at the end)."""
    save_replay_buffer: bool = True
    """Keep the replay buffer in checkpoints (needed for an exact resume; SAC and QARL)."""
    resume: bool = True
    """Continue from run_dir/model when it exists."""
    progress_bar: bool = True
    """Show a progress bar with fps and the agent's headline figures."""


@dataclass
class TrainArgs(RunArgs):
    """Train an agent; the same command resumes from the run directory's last checkpoint."""

    eval_episodes: int = 10
    """Deterministic episodes for the final evaluation."""


@dataclass
class StreamArgs:
    """The task stream of the continual learners (maxent.envs.continual.PermutedTaskStream);
    defaults sized for a run of about a minute (the paper's study uses 10 tasks)."""

    n_tasks: int = 3
    """Permuted-digit tasks in the stream."""
    schedule: str = "power"
    """Rehearsal schedule: power, uniform, exponential or none."""
    rehearsal_fraction: float = 0.25
    """Rehearsal budget as a fraction of one task's samples."""
    epochs: int = 1
    """Passes over each new task."""
    batch_size: int = 32
    """Samples per batch (one learning step)."""
    seed: int = 0
    """Seeds the permutations and the rehearsal draws."""


class StreamHooks(RunHooks):
    """A continual learner's run: its env is a task stream made from the ``--stream.*`` flags,
    its length is the stream's, and its final evaluation is test accuracy on every task."""

    def __init__(self, agent_class: type, stream: StreamArgs, eval_episodes: int | None = None,
                 metric: str = "test accuracy", unit: str = "tasks"):
        super().__init__(agent_class, eval_episodes, metric, unit)
        self.stream = stream
        self._stream: Any = None

    @classmethod
    def from_args(cls, agent_class: type, args: Any, algorithm: Algorithm) -> StreamHooks:
        return cls(agent_class, args.stream, None, algorithm.metric, algorithm.eval_unit)

    def where(self, args: Any) -> str:
        return f"{args.stream.schedule}-{args.stream.n_tasks}tasks"

    def label(self, args: Any) -> str:
        return "task stream"

    def _make_stream(self) -> Any:
        from maxent.envs.continual import PermutedTaskStream

        if self._stream is None:
            try:
                self._stream = PermutedTaskStream(**dataclasses.asdict(self.stream))
            except (TypeError, ValueError) as err:
                raise UsageError(f"maxent train: --stream.*: {err}") from None
        return self._stream

    def planned_steps(self, total_steps: int | None) -> int:
        """The stream's batches (a learner stops at its end), or ``total_steps`` if fewer."""
        length = self._make_stream().total_batches()
        return length if total_steps is None else min(total_steps, length)

    def spec_env(self, args: Any) -> Any:
        return None

    def checked_env(self, spec: RunSpec) -> str | None:
        return None

    def build(self, spec: RunSpec) -> Any:
        return self.agent_class(self._make_stream(), config=spec.config, seed=spec.seed,
                                log_dir=spec.run_dir)

    def resume_env(self, spec: RunSpec) -> Any:
        return self._make_stream()

    def final_evaluation(self, agent: Any, seed: int, count: int | None = None, env: Any = None,
                         deterministic: bool = True) -> Evaluation:
        """Test accuracy on every task of the stream (no episodes, so no seed or count)."""
        return Evaluation.of_scores(agent.evaluate(), self.metric, self.unit, None)


def hooks_class(algorithm: Algorithm) -> type[RunHooks]:
    """The run hooks of ``algorithm``: its registry entry's, else a stream's or the defaults."""
    return algorithm.hooks_class() or (StreamHooks if algorithm.stream else RunHooks)


def _has_replay_option(agent_class: type) -> bool:
    return "include_replay_buffer" in inspect.signature(agent_class.save).parameters


def train_args(algorithm: Algorithm, hooks: type[RunHooks] | None = None, preset: str | None = None) -> type:
    """The flags of ``maxent train <algorithm>``: RunArgs (+ eval_episodes) + the hooks' own flags +
    ``config`` (+ ``stream``), with this algorithm's defaults (env, length, evaluation) and without
    the flags that mean nothing to it. ``preset`` (a ``--config.preset`` value on the command
    line) makes the preset's values the config flags' defaults: tyro gives the config every field,
    and a preset fills only the fields a config was not given, so a flag the command line names
    wins and every other field holds the preset's value."""
    hooks = hooks or hooks_class(algorithm)
    config_cls = algorithm.config_class()
    default_fields = dict(algorithm.defaults)
    if preset is not None and "preset" in config_cls.field_names():
        try:
            config_cls(**default_fields, preset=preset)
            default_fields["preset"] = preset
        except (TypeError, ValueError):
            pass  # an unknown preset: tyro builds the config with it and its error names the choices

    def config_default():
        return config_cls(**default_fields)

    unit = algorithm.unit[:1].upper() + algorithm.unit[1:]
    # Built with make_dataclass so the field's type is the class itself: with postponed annotations
    # a class body here would hold the string "config_cls", which tyro cannot resolve.
    if algorithm.stream:
        fields: list[tuple] = [
            ("env", tyro.conf.Suppress[str], field(default="")),
            ("total_steps", Annotated[Count | None, tyro.conf.arg(
                help=f"{unit} in total; default: the whole stream (tasks x epochs x batches, plus "
                     "the rehearsal batches). A resumed run trains only what is left.")],
             field(default=None))]
    else:
        fields = [
            ("env", Annotated[str, tyro.conf.arg(help="Env id.")], field(default=algorithm.env)),
            ("total_steps", Annotated[Count, tyro.conf.arg(
                help=f"{unit} in total (a resumed run trains only what is left).")],
             field(default=algorithm.total_steps))]
    fields.append(("checkpoint_every", Annotated[Count, tyro.conf.arg(
        help=f"{unit} between checkpoints (and one at the end).")],
        field(default=algorithm.checkpoint_every)))
    if not _has_replay_option(algorithm.agent_class()):
        fields.append(("save_replay_buffer", tyro.conf.Suppress[bool], field(default=True)))
    if algorithm.eval_episodes is not None:
        fields.append(("eval_episodes", int, field(default=algorithm.eval_episodes)))
    if algorithm.stream:
        fields.append(("stream", StreamArgs, field(default_factory=StreamArgs)))
    fields.append(("config", config_cls, field(default_factory=config_default)))
    base = TrainArgs if algorithm.eval_episodes is not None else RunArgs
    bases = (base,) if hooks.flags is None else (hooks.flags, base)
    args = dataclasses.make_dataclass("Args", fields, bases=bases)
    args.__module__ = __name__
    args.__doc__ = f"{algorithm.summary}. The same command resumes from the run's last checkpoint."
    return args


def help_namespaces(algorithm: Algorithm, hooks: type[RunHooks]) -> list:
    """The modules whose constants the help of ``maxent train <algorithm>`` may name."""
    classes = [*algorithm.config_class().__mro__, algorithm.agent_class(), hooks]
    names = dict.fromkeys(c.__module__ for c in classes if c.__module__ in sys.modules)
    return [sys.modules[n] for n in names]


def parse_train_args(algorithm: Algorithm, argv: list[str], hooks_cls: type[RunHooks] | None = None
                     ) -> Any:
    """The flags of ``maxent train <algorithm>`` parsed from ``argv`` (help cleaned, errors one
    line), with the counts checked."""
    hooks_cls = hooks_cls or hooks_class(algorithm)
    prog = f"maxent train {algorithm.name}"
    args = parse(train_args(algorithm, hooks_cls, preset_flag(argv)), argv, prog,
                 namespaces=help_namespaces(algorithm, hooks_cls))
    # Checked before anything is built, so a bad flag never costs (or overwrites) a training run.
    counts = [("--total-steps", args.total_steps), ("--checkpoint-every", args.checkpoint_every)]
    if algorithm.eval_episodes is not None:
        counts.append(("--eval-episodes", args.eval_episodes))
    for flag, value in counts:
        if value is not None and value < 1:
            raise UsageError(f"maxent train: {flag} must be positive, got {value}")
    return args


def preset_flag(argv: list[str]) -> str | None:
    """The value of a ``--config.preset`` flag in ``argv`` (the last one), else ``None``."""
    value = None
    for i, token in enumerate(argv):
        if token == "--config.preset" and i + 1 < len(argv):
            value = argv[i + 1]
        elif token.startswith("--config.preset="):
            value = token.split("=", 1)[1]
    return value


def train_main(name: str, argv: list[str]) -> int:
    """``maxent train NAME [flags]``: train (or resume) and print one summary line."""
    from maxent.agents.registry import find

    algorithm = find(name)
    hooks_cls = hooks_class(algorithm)
    args = parse_train_args(algorithm, argv, hooks_cls)
    hooks = hooks_cls.from_args(algorithm.agent_class(), args, algorithm)
    run_dir = args.run_dir or default_run_dir(name, hooks.where(args), args.seed)
    spec = RunSpec(run_dir=run_dir, total_steps=hooks.planned_steps(args.total_steps),
                   seed=args.seed, env=hooks.spec_env(args), config=args.config,
                   checkpoint_every=args.checkpoint_every,
                   save_replay_buffer=args.save_replay_buffer, resume=args.resume,
                   progress_bar=args.progress_bar, prog="maxent train", command=list(argv))
    result = train(spec, hooks)
    agent = result.agent
    print(f"{type(agent).__name__} {hooks.label(args)}: {agent.num_timesteps} steps, "
          f"{result.elapsed:.1f} s, {rate_text(result.steps_per_s)}, {result.evaluation.text}; "
          f"saved to {spec.model_dir}; tensorboard --logdir {run_dir}")
    return 0


def train_help() -> str:
    from maxent.agents.registry import ALGORITHMS

    width = max(len(n) for n in ALGORITHMS)
    lines = ["usage: maxent train ALGO [flags]   (maxent train ALGO --help: every flag and default)",
             "", "algorithms:"]
    lines += [f"  {a.name:<{width}}  {a.summary}" for a in ALGORITHMS.values()]
    lines += ["", "The same command resumes from the run directory's last checkpoint."]
    return "\n".join(lines)
