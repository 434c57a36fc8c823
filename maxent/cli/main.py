"""The ``maxent`` command: dispatches ``train`` (every registered algorithm, in
:mod:`maxent.cli.train`), ``eval``, ``robustness``, ``sweep`` and ``export``; the flags of ``eval``
and ``robustness`` live here.

Run directories are laid out, found and resumed by :mod:`maxent.training.run`; the algorithms and
their built-in defaults are the table in :mod:`maxent.agents.registry`.
"""

from __future__ import annotations

# First, before the imports below load torch: its OpenMP runtime reads the team size and the wait
# policy once, when it loads (maxent.training.threads itself imports nothing heavy).
from maxent.training.threads import configure_environment as _configure_openmp

_configure_openmp()

import argparse
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import tyro

from maxent import __version__
from maxent.cli.train import parse_count  # noqa: F401  (the step-count parser, imported from here too)
from maxent.training.env_identity import InexactResumeWarning
from maxent.training.run import UsageError


@dataclass
class EvalArgs:
    """Evaluate a saved agent (a run directory or its model/ checkpoint) as its training summary
    did: the same metric, seeds and count, unless flags say otherwise."""

    run_dir: tyro.conf.Positional[Path]
    """Run directory from `maxent train`, or a checkpoint directory."""
    episodes: int | None = None
    """Episodes (prompts for GRPO) to run; default: as many as the run's final evaluation."""
    env: str | None = None
    """Evaluate on another env id than the one trained on."""
    seed: int | None = None
    """Episode i is reset with seed + i; default: the seed of the run's final evaluation (10000 +
    the training seed)."""
    deterministic: bool = True
    """Use the policy's mean action."""


def _eval_hooks(algorithm, run_dir: Path):
    """The run hooks of the run at ``run_dir`` as its last ``maxent train`` command set them
    (evaluation counts, a dataset...); the algorithm's defaults where nothing was recorded."""
    from maxent.cli.train import hooks_class, parse_train_args
    from maxent.training.run import read_evaluation

    hooks_cls = hooks_class(algorithm)
    record = read_evaluation(run_dir) or {}
    command = [str(a) for a in record.get("command", [])]
    try:
        args = parse_train_args(algorithm, command, hooks_cls)
        return hooks_cls.from_args(algorithm.agent_class(), args, algorithm)
    except SystemExit as err:
        if not command:
            raise
        print(f"maxent eval: the run's recorded flags no longer apply ({err}); evaluating with "
              f"{algorithm.name}'s defaults", file=sys.stderr)
    args = parse_train_args(algorithm, [], hooks_cls)
    return hooks_cls.from_args(algorithm.agent_class(), args, algorithm)


def _eval(argv: list[str]) -> int:
    import math

    from maxent.cli.flags import parse

    args = parse(EvalArgs, argv, "maxent eval")
    if args.episodes is not None and args.episodes < 1:
        raise UsageError(f"maxent eval: --episodes must be positive, got {args.episodes}")
    from maxent.agents.registry import algorithm_for_kind
    from maxent.training.checkpoint import CheckpointError
    from maxent.training.run import checkpoint_dir, read_header, runs_under

    path = checkpoint_dir(args.run_dir)
    try:
        header = read_header(path)
    except CheckpointError as err:
        runs = runs_under(args.run_dir) or runs_under(Path("runs"))
        hint = ("; runs found: " + ", ".join(str(r) for r in runs)) if runs else ""
        raise SystemExit(f"maxent eval: {str(err).rstrip('.')}{hint}") from None
    algorithm = algorithm_for_kind(header["kind"], header["config"])
    hooks = _eval_hooks(algorithm, args.run_dir)
    with warnings.catch_warnings():
        # An evaluation continues no episode: that a resume on this env would not be exact is noise.
        warnings.simplefilter("ignore", InexactResumeWarning)
        agent = algorithm.agent_class().load(path, env=args.env)
    try:
        seed = hooks.eval_seed(agent.seed) if args.seed is None else args.seed
        evaluation = hooks.final_evaluation(agent, seed, args.episodes, env=args.env,
                                            deterministic=args.deterministic)
    finally:
        agent.close()
    if not math.isfinite(evaluation.mean):
        raise SystemExit(f"maxent eval: the evaluation of {path} produced NaN/inf "
                         f"({evaluation.measure()}); the agent or its env is broken")
    where = args.env or getattr(agent, "env_id", None) or \
        ("task stream" if algorithm.stream else "its dataset")
    seeds = "" if evaluation.seed is None else f"evaluation seed {evaluation.seed}; "
    print(f"{header['kind']} {where}: {evaluation.measure()} ({seeds}trained "
          f"{agent.num_timesteps} steps)")
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
    from maxent.cli.flags import parse

    args = parse(RobustnessArgs, argv, "maxent robustness")
    for flag, value in (("--episodes", args.episodes), ("--pool-size", args.pool_size)):
        if value < 1:
            raise UsageError(f"maxent robustness: {flag} must be positive, got {value}")
    if args.max_episode_steps is not None and args.max_episode_steps < 1:
        raise UsageError(f"maxent robustness: --max-episode-steps must be positive, got "
                         f"{args.max_episode_steps}")
    if args.uncertainty is not None and args.grid:
        raise UsageError("maxent robustness: give either --grid or --uncertainty, not both")
    if args.points_per_dim < 2:
        raise UsageError(f"maxent robustness: --points-per-dim must be at least 2 (both bounds), "
                         f"got {args.points_per_dim}")
    from maxent.cli.robustness import parse_grid, run_benchmark

    # A bad spec or set name is a usage error, found before any run loads.
    try:
        grid = parse_grid(args.grid) if args.grid else None
        if args.uncertainty is not None:
            from maxent.envs.uncertainty import uncertainty_set

            uncertainty_set(args.uncertainty)
    except ValueError as err:
        raise UsageError(f"maxent robustness: {err}") from None
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
    """Entry point of the ``maxent`` console script (``argv`` ``None``: ``sys.argv``).

    Every error is one line. As the console script, a usage error (a bad flag, value, algorithm
    or command) prints it on stderr and returns 2, argparse's convention; a refusal found while
    running (a checkpoint of another config, a locked run) exits with it and status 1. Called
    with ``argv`` from Python, both are raised as ``SystemExit`` carrying the line
    (:class:`~maxent.training.run.UsageError` for usage errors).
    """
    if argv is not None:
        return _main(list(argv))
    try:
        return _main(sys.argv[1:])
    except UsageError as err:
        print(err.code, file=sys.stderr)
        return 2


def _main(argv: list[str]) -> int:
    from maxent.training.runlock import RunLockedError

    parser = argparse.ArgumentParser(
        prog="maxent",
        description="Entropy-regularized RL. Commands:\n"
                    "  train ALGO [flags]   train (and resume) an agent; `maxent train --help` lists\n"
                    "                       every algorithm (sac, qarl, grpo, bandits, ...)\n"
                    "  eval RUN_DIR [flags] evaluate a saved agent as its training summary did\n"
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
        if not argv:
            raise UsageError("maxent: name a command: " + ", ".join(COMMANDS)
                             + " (see `maxent --help`)")
        parser.parse_args(argv)
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        raise UsageError(f"maxent: unknown command {command!r}; choose from "
                         f"{', '.join(COMMANDS)} (see `maxent --help`)")
    try:
        if command == "train":
            from maxent.cli.train import train_help, train_main

            if not rest or rest[0].startswith("-"):
                if rest and rest[0] in ("-h", "--help"):
                    print(train_help())
                    return 0
                raise UsageError("maxent train: name an algorithm first, e.g. `maxent train sac`; "
                                 "`maxent train --help` lists them")
            return train_main(rest[0], rest[1:])
        return COMMANDS[command](rest)
    except (ValueError, FloatingPointError, RunLockedError) as err:
        raise SystemExit(f"maxent {command}: {err}") from None
    except ImportError as err:
        from maxent.extras import install_hint

        raise SystemExit(f"maxent {command}: {install_hint(err)}") from None


if __name__ == "__main__":
    raise SystemExit(main())
