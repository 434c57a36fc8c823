"""The ``maxent`` command: ``train`` (every agent), ``eval``, ``robustness``, ``sweep`` and
``export``, generated from the agents' config dataclasses.

``maxent train sac --env HalfCheetah-v5 --total-steps 1e6 --config.learning-rate 3e-4`` trains and
checkpoints into a run directory; running the same command again resumes from its last checkpoint.
Flags after the algorithm name are parsed by tyro from :class:`TrainArgs` and the agent's config,
so unknown fields and bad values are rejected with the field's name. The algorithms and their
built-in defaults are listed in :mod:`maxent.cli.algorithms`.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import tyro

from maxent import __version__
from maxent.training.config import RESUMABLE_CHANGES

MODEL_SUBDIR = "model"


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
class TrainArgs:
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
    eval_episodes: int = 10
    """Deterministic episodes for the final evaluation."""
    progress_bar: bool = True
    """Show a progress bar with fps and the agent's headline figures."""


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


def _train_args(algorithm: Any) -> type:
    """The flags of ``maxent train <algorithm>``: TrainArgs + ``config`` (+ ``stream``)."""
    config_cls = algorithm.config_class()

    def config_default():
        return config_cls(**algorithm.defaults)

    # Built with make_dataclass so the field's type is the class itself: with postponed annotations
    # a class body here would hold the string "config_cls", which tyro cannot resolve.
    fields: list[tuple] = [("config", config_cls, field(default_factory=config_default))]
    if algorithm.stream:
        fields.insert(0, ("stream", StreamArgs, field(default_factory=StreamArgs)))
    fields.insert(0, ("env", str, field(default=algorithm.env or "")))
    fields.insert(1, ("total_steps", Count, field(default=algorithm.total_steps)))
    fields.insert(2, ("eval_episodes", int, field(default=algorithm.eval_episodes)))
    args = dataclasses.make_dataclass("Args", fields, bases=(TrainArgs,))
    args.__module__ = __name__
    args.__doc__ = f"{algorithm.summary}. The same command resumes from the run's last checkpoint."
    return args


def _run_dir(algorithm: Any, args: Any) -> Path:
    if args.run_dir is not None:
        return args.run_dir
    where = args.env.replace("/", "_") if args.env else f"{args.stream.schedule}-{args.stream.n_tasks}tasks"
    return Path("runs") / f"{algorithm.name}-{where}-s{args.seed}"


def _build(algorithm: Any, args: Any, run_dir: Path) -> Any:
    cls = algorithm.agent_class()
    if algorithm.stream:
        from maxent.envs.continual import PermutedTaskStream

        stream = PermutedTaskStream(**dataclasses.asdict(args.stream))
        return cls(stream, config=args.config, seed=args.seed, log_dir=run_dir)
    if algorithm.name == "grpo":
        return cls(None, args.env, config=args.config, seed=args.seed, log_dir=run_dir)
    return cls(args.env, config=args.config, seed=args.seed, log_dir=run_dir)


def _resume(algorithm: Any, args: Any, model_dir: Path, run_dir: Path) -> Any:
    from maxent.training.checkpoint import read_checkpoint_header

    if not args.resume:
        raise SystemExit(f"maxent train: {model_dir} already holds a checkpoint; drop --no-resume "
                         "to continue it, or choose another --run-dir")
    header = read_checkpoint_header(model_dir)
    cls = algorithm.agent_class()
    if header["kind"] != cls.checkpoint_kind():
        raise SystemExit(f"maxent train: {model_dir} holds a {header['kind']} agent, not "
                         f"{cls.checkpoint_kind()}; choose another --run-dir")
    saved, wanted = header["config"], args.config.to_json()
    changed = sorted(k for k in wanted if k in saved and saved[k] != wanted[k]
                     and k not in RESUMABLE_CHANGES)
    if changed:
        raise SystemExit(f"maxent train: {model_dir} was trained with a different config "
                         f"({', '.join(changed)} differ); resume with the same values or choose "
                         "another --run-dir")
    overrides = {k: wanted[k] for k in RESUMABLE_CHANGES if k in wanted}
    env = None
    if algorithm.stream:
        from maxent.envs.continual import PermutedTaskStream

        env = PermutedTaskStream(**dataclasses.asdict(args.stream))
    agent = cls.load(model_dir, env=env, log_dir=run_dir, **overrides)
    checks = [("--seed", agent.seed, args.seed)]
    if not algorithm.stream:
        checks.insert(0, ("--env", agent.env_id, args.env))
    for flag, saved_value, value in checks:
        if saved_value != value:
            agent.close()
            raise SystemExit(f"maxent train: {model_dir} was trained with {flag} {saved_value}, not "
                             f"{value}; resume with {flag} {saved_value} or choose another --run-dir")
    note = "" if agent.num_timesteps < args.total_steps else \
        f" (already at or past --total-steps {args.total_steps}: nothing left to train)"
    print(f"resuming {model_dir} at step {agent.num_timesteps}{note}")
    return agent


def _train(name: str, argv: list[str]) -> int:
    from maxent.cli.algorithms import find

    algorithm = find(name)
    if algorithm.name == "grpo":  # warm-up, held-out accuracy, datasets: its own command
        from maxent.agents.grpo import train_main

        return train_main(argv)
    args = tyro.cli(_train_args(algorithm), args=argv, prog=f"maxent train {name}")
    # Checked before anything is built, so a bad flag never costs (or overwrites) a training run.
    for flag, value in (("--total-steps", args.total_steps), ("--checkpoint-every", args.checkpoint_every),
                        ("--eval-episodes", args.eval_episodes)):
        if value < 1:
            raise SystemExit(f"maxent train: {flag} must be positive, got {value}")
    run_dir = _run_dir(algorithm, args)
    model_dir = run_dir / MODEL_SUBDIR

    from maxent.training import runlock
    # The whole command holds the run directory: a second trainer there is refused before it
    # reads the checkpoint this one is writing.
    with runlock.hold(run_dir, purpose=f"maxent train {name}"):
        # A save killed between its two renames leaves only a .model.old-* sibling, which loads too.
        if model_dir.exists() or any(run_dir.glob(f".{MODEL_SUBDIR}.old-*")):
            agent = _resume(algorithm, args, model_dir, run_dir)
        else:
            agent = _build(algorithm, args, run_dir)
        return _train_and_report(algorithm, agent, args, model_dir, run_dir)


def _train_and_report(algorithm: Any, agent: Any, args: Any, model_dir: Path, run_dir: Path) -> int:
    from maxent.training import logging as mlog
    from maxent.training.agent import CheckpointCallback

    first_step = agent.num_timesteps
    remaining = args.total_steps - first_step
    start = time.perf_counter()
    try:
        if remaining > 0:
            save_options = {}
            if "include_replay_buffer" in inspect.signature(agent.save).parameters:
                save_options["include_replay_buffer"] = args.save_replay_buffer
            checkpoints = CheckpointCallback(args.checkpoint_every, model_dir, **save_options)
            try:
                agent.learn(remaining, callback=checkpoints, progress_bar=args.progress_bar)
            except KeyboardInterrupt:
                raise SystemExit(f"\nmaxent train: interrupted at step {agent.num_timesteps}; the last "
                                 f"checkpoint in {model_dir} is intact; run the same command to resume"
                                 ) from None
        elapsed = time.perf_counter() - start
        scores = agent.evaluate(args.eval_episodes, seed=10_000 + args.seed)
        if remaining > 0 and agent.logger is not None:
            # The final evaluation joins the last log row (TensorBoard and progress.csv).
            agent.logger.record(mlog.EVAL_RETURN, float(scores.mean()))
            agent.logger.record(mlog.EVAL_RETURN_STD, float(scores.std()))
            agent.logger.dump(agent.num_timesteps)
    finally:
        agent.close()
    trained = agent.num_timesteps - first_step
    fps = trained / elapsed if trained > 0 and elapsed > 0 else 0.0
    where = args.env or "task stream"
    what = f"eval {algorithm.metric} {scores.mean():.{3 if algorithm.metric == 'accuracy' else 1}f}"
    count = f"({args.eval_episodes} episodes)" if algorithm.metric == "return" else f"({len(scores)} tasks)"
    print(f"{type(agent).__name__} {where}: {agent.num_timesteps} steps, {elapsed:.1f} s, "
          f"{fps:.0f} steps/s, {what} ± {scores.std():.{3 if algorithm.metric == 'accuracy' else 1}f} "
          f"{count}; saved to {model_dir}; tensorboard --logdir {run_dir}")
    return 0


def _train_help() -> str:
    from maxent.cli.algorithms import ALGORITHMS

    width = max(len(n) for n in ALGORITHMS)
    lines = ["usage: maxent train ALGO [flags]   (maxent train ALGO --help: every flag and default)",
             "", "algorithms:"]
    lines += [f"  {a.name:<{width}}  {a.summary}" for a in ALGORITHMS.values()]
    lines += ["", "The same command resumes from the run directory's last checkpoint."]
    return "\n".join(lines)


@dataclass
class EvalArgs:
    """Evaluate a saved agent (a run directory or its model/ checkpoint)."""

    run_dir: tyro.conf.Positional[Path]
    """Run directory from `maxent train`, or a checkpoint directory."""
    episodes: int = 10
    """Episodes to run."""
    env: str | None = None
    """Evaluate on another env id than the one trained on."""
    seed: int = 0
    """Episode i is reset with seed + i."""
    deterministic: bool = True
    """Use the policy's mean action."""


def _runs_under(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.glob(f"**/{MODEL_SUBDIR}/config.json"))[:20] if root.is_dir() else []


def _eval(argv: list[str]) -> int:
    args = tyro.cli(EvalArgs, args=argv, prog="maxent eval")
    if args.episodes < 1:
        raise SystemExit(f"maxent eval: --episodes must be positive, got {args.episodes}")
    import numpy as np

    from maxent.training.checkpoint import CheckpointError, read_checkpoint_header
    from maxent.cli.algorithms import algorithm_for_kind

    path = args.run_dir / MODEL_SUBDIR if (args.run_dir / MODEL_SUBDIR).is_dir() else args.run_dir
    try:
        header = read_checkpoint_header(path)
    except CheckpointError as err:
        runs = _runs_under(args.run_dir) or _runs_under(Path("runs"))
        hint = ("; runs found: " + ", ".join(str(r) for r in runs)) if runs else ""
        raise SystemExit(f"maxent eval: {err}{hint}") from None
    algorithm = algorithm_for_kind(header["kind"], header["config"])
    agent = algorithm.agent_class().load(path, env=args.env)
    try:
        scores = agent.evaluate(args.episodes, env=args.env, seed=args.seed,
                                deterministic=args.deterministic)
    finally:
        agent.close()
    if not np.isfinite(scores).all():
        raise SystemExit(f"maxent eval: the evaluation of {path} produced NaN/inf ({scores}); the "
                         "agent or its env is broken")
    where = args.env or getattr(agent, "env_id", None) or "task stream"
    count = f"{args.episodes} episodes" if algorithm.metric == "return" else f"{len(scores)} tasks"
    print(f"{header['kind']} {where}: {algorithm.metric} {scores.mean():.2f} ± {scores.std():.2f} over "
          f"{count} (min {scores.min():.2f}, max {scores.max():.2f}; "
          f"trained {agent.num_timesteps} steps)")
    return 0


@dataclass
class RobustnessArgs:
    """Evaluate saved protagonists (SAC, QARL, RARL runs of one task) over a mass x friction grid,
    with no adversary, and on the nominal task with and without their trained adversary."""

    run_dirs: tyro.conf.Positional[tuple[Path, ...]]
    """Run directories from `maxent train` (or checkpoint directories)."""
    grid: tuple[str, ...] = ()
    """Axes as AXIS=LOW:HIGH:N (e.g. mass=3:9:11 friction=0.1:1.9:11); default: the paper's grid."""
    episodes: int = 1
    """Episodes per grid cell."""
    out: Path = Path("runs/robustness")
    """Where robustness.csv, summary.csv, summary.md and heatmaps.png go."""
    seed: int = 0
    """Episode i of every cell is reset with seed + i."""
    max_episode_steps: int | None = None
    """Time limit of every episode; default: the task's."""
    pool_size: int = 64
    """Environments stepped in lockstep (one batched policy call per step)."""
    uncertainty: str | None = None
    """Score over the mesh of this named uncertainty set (RRLS ranges, e.g. hopper-2d) instead of
    the mass x friction grid; worst case, mean and 10th percentile are reported."""
    points_per_dim: int = 10
    """Mesh points per parameter of --uncertainty (both bounds included)."""


def _robustness(argv: list[str]) -> int:
    args = tyro.cli(RobustnessArgs, args=argv, prog="maxent robustness")
    for flag, value in (("--episodes", args.episodes), ("--pool-size", args.pool_size)):
        if value < 1:
            raise SystemExit(f"maxent robustness: {flag} must be positive, got {value}")
    if args.max_episode_steps is not None and args.max_episode_steps < 1:
        raise SystemExit(f"maxent robustness: --max-episode-steps must be positive, got "
                         f"{args.max_episode_steps}")
    if args.uncertainty is not None and args.grid:
        raise SystemExit("maxent robustness: give either --grid or --uncertainty, not both")
    if args.points_per_dim < 2:
        raise SystemExit(f"maxent robustness: --points-per-dim must be at least 2 (both bounds), "
                         f"got {args.points_per_dim}")
    from maxent.cli.robustness import parse_grid, run_benchmark

    grid = parse_grid(args.grid) if args.grid else None  # a bad spec fails before any run loads
    if args.uncertainty is not None:
        from maxent.envs.uncertainty import uncertainty_set

        uncertainty_set(args.uncertainty)  # an unknown name fails before any run loads
    start = time.perf_counter()
    result = run_benchmark(args.run_dirs, grid, episodes=args.episodes, out_dir=args.out,
                           seed=args.seed, max_episode_steps=args.max_episode_steps,
                           pool_size=args.pool_size, uncertainty=args.uncertainty,
                           points_per_dim=args.points_per_dim)
    print(f"wrote {', '.join(str(p) for p in result.files.values())} "
          f"in {time.perf_counter() - start:.1f} s")
    return 0


def _sweep(argv: list[str]) -> int:
    from maxent.cli.sweep import sweep_main

    return sweep_main(argv)


def _export(argv: list[str]) -> int:
    from maxent.cli.export import export_main

    return export_main(argv)


COMMANDS = {"train": None, "eval": _eval, "robustness": _robustness, "sweep": _sweep,
            "export": _export}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``maxent`` console script."""
    from maxent.training.runlock import RunLockedError

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="maxent",
        description="Entropy-regularized RL. Commands:\n"
                    "  train ALGO [flags]   train (and resume) an agent; `maxent train --help` lists\n"
                    "                       every algorithm (sac, qarl, grpo, bandits, ...)\n"
                    "  eval RUN_DIR [flags] evaluate a saved agent\n"
                    "  robustness RUN_DIR [RUN_DIR ...] --grid mass=3:9:11 friction=0.1:1.9:11\n"
                    "                       robustness grid of saved protagonists (CSV, PNG, summary)\n"
                    "  sweep CONFIG.toml    methods x seeds x tasks as resumable runs (Ray if installed)\n"
                    "  export RUN_DIR OUT   a trained language model as a Hugging Face folder\n"
                    "Run `maxent train sac --help` for every SAC flag.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"maxent {__version__}")
    parser.add_argument("command", choices=list(COMMANDS), help="what to do")
    if not argv or argv[0] in ("-h", "--help", "--version"):
        parser.parse_args(argv)
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        parser.parse_args(argv)  # prints the error for an unknown command
        return 2
    try:
        if command == "train":
            if not rest or rest[0].startswith("-"):
                if rest and rest[0] in ("-h", "--help"):
                    print(_train_help())
                    return 0
                raise SystemExit("maxent train: name an algorithm first, e.g. `maxent train sac`; "
                                 "`maxent train --help` lists them")
            return _train(rest[0], rest[1:])
        return COMMANDS[command](rest)
    except (ValueError, FloatingPointError, RunLockedError) as err:
        raise SystemExit(f"maxent {command}: {err}") from None
    except ImportError as err:
        from maxent.extras import install_hint

        raise SystemExit(f"maxent {command}: {install_hint(err)}") from None


if __name__ == "__main__":
    raise SystemExit(main())
