"""The ``maxent`` command: ``train``, ``eval`` and ``robustness``, generated from the agents' config
dataclasses.

``maxent train sac --env HalfCheetah-v5 --total-steps 1e6 --config.learning-rate 3e-4`` trains and
checkpoints into a run directory; running the same command again resumes from its last checkpoint.
Flags after the algorithm name are parsed by tyro from :class:`TrainArgs` and the agent's config,
so unknown fields and bad values are rejected with the field's name.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import tyro

from maxent import __version__

MODEL_SUBDIR = "model"
# Config fields that may differ between a checkpoint and the command resuming it: they change how
# a run executes, not what it learns.
RESUMABLE_CHANGES = {"device", "compile", "precision", "torch_threads", "log_interval",
                     "vectorization"}


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


def _algorithms() -> dict[str, tuple[type, type]]:
    from maxent.agents.qarl import QARL, QARLConfig, RARLConfig
    from maxent.agents.sac import SAC, SACConfig
    return {"sac": (SAC, SACConfig), "qarl": (QARL, QARLConfig), "rarl": (QARL, RARLConfig)}


# Algorithms with their own training command (text tasks, not Gymnasium control): module path of
# a ``train_main(argv) -> int`` that parses its flags the same way (tyro over the agent's config).
OWN_TRAIN_COMMANDS = {"grpo": "maxent.agents.grpo"}


def _all_algorithm_names() -> list[str]:
    return sorted([*_algorithms(), *OWN_TRAIN_COMMANDS])


# Algorithms that need another default env than TrainArgs' (two-player MuJoCo tasks).
DEFAULT_ENVS = {"qarl": "Hopper-v5", "rarl": "Hopper-v5"}


def _agent_class(kind: str) -> type:
    if kind == "GRPO":
        from maxent.agents.grpo import GRPO
        return GRPO
    for agent_cls, _ in _algorithms().values():
        if agent_cls.__name__ == kind:
            return agent_cls
    raise ValueError(f"checkpoint holds a {kind!r} agent, which this maxent version cannot load")


@dataclass
class TrainArgs:
    """Train an agent; the same command resumes from the run directory's last checkpoint."""

    env: str = "Pendulum-v1"
    """Gymnasium env id."""
    total_steps: Count = 20_000
    """Env steps in total (a resumed run trains only what is left)."""
    seed: int = 0
    """Seeds networks, exploration, replay sampling and episode resets."""
    run_dir: Path | None = None
    """Where logs and the checkpoint go; default runs/<algo>-<env>-s<seed>."""
    checkpoint_every: Count = 10_000
    """Env steps between checkpoints (and one at the end)."""
    save_replay_buffer: bool = True
    """Keep the replay buffer in checkpoints (needed for an exact resume)."""
    resume: bool = True
    """Continue from run_dir/model when it exists."""
    eval_episodes: int = 10
    """Deterministic episodes for the final evaluation."""
    progress_bar: bool = True
    """Show a progress bar with fps and recent return."""


def _train(algo: str, argv: list[str]) -> int:
    algorithms = _algorithms()
    if algo not in algorithms:
        raise SystemExit(f"maxent train: unknown algorithm {algo!r}; choose from {_all_algorithm_names()}")
    agent_cls, config_cls = algorithms[algo]

    # Built with make_dataclass so the field's type is the class itself: with postponed annotations
    # a class body here would hold the string "config_cls", which tyro cannot resolve.
    fields = [("config", config_cls, field(default_factory=config_cls))]
    if algo in DEFAULT_ENVS:
        fields.insert(0, ("env", str, field(default=DEFAULT_ENVS[algo])))
    Args = dataclasses.make_dataclass("Args", fields, bases=(TrainArgs,))
    Args.__module__ = __name__
    Args.__doc__ = f"Train {agent_cls.__name__}; the same command resumes from the run's last checkpoint."
    args = tyro.cli(Args, args=argv, prog=f"maxent train {algo}")
    # Checked before anything is built, so a bad flag never costs (or overwrites) a training run.
    for flag, value, least in (("--total-steps", args.total_steps, 1),
                               ("--checkpoint-every", args.checkpoint_every, 1),
                               ("--eval-episodes", args.eval_episodes, 1)):
        if value < least:
            raise SystemExit(f"maxent train: {flag} must be positive, got {value}")
    run_dir = args.run_dir or Path("runs") / f"{algo}-{args.env.replace('/', '_')}-s{args.seed}"
    model_dir = run_dir / MODEL_SUBDIR

    from maxent.agent import CheckpointCallback, evaluate
    from maxent.checkpoint import read_checkpoint_header

    # A save killed between its two renames leaves only a .model.old-* sibling, which loads too.
    if model_dir.exists() or any(run_dir.glob(f".{MODEL_SUBDIR}.old-*")):
        if not args.resume:
            raise SystemExit(f"maxent train: {model_dir} already holds a checkpoint; drop "
                             "--no-resume to continue it, or choose another --run-dir")
        header = read_checkpoint_header(model_dir)
        if header["kind"] != agent_cls.__name__:
            raise SystemExit(f"maxent train: {model_dir} holds a {header['kind']} agent, not "
                             f"{agent_cls.__name__}; choose another --run-dir")
        saved = header["config"]
        wanted = args.config.to_json()
        changed = sorted(k for k in wanted if k in saved and saved[k] != wanted[k]
                         and k not in RESUMABLE_CHANGES)
        if changed:
            raise SystemExit(
                f"maxent train: {model_dir} was trained with a different config ({', '.join(changed)}"
                f" differ); resume with the same values or choose another --run-dir")
        overrides = {k: wanted[k] for k in RESUMABLE_CHANGES if k in wanted}
        agent = agent_cls.load(model_dir, log_dir=run_dir, **overrides)
        for flag, saved_value, value in (("--env", getattr(agent, "env_id", args.env), args.env),
                                         ("--seed", getattr(agent, "seed", args.seed), args.seed)):
            if saved_value != value:
                agent.close()
                raise SystemExit(
                    f"maxent train: {model_dir} was trained with {flag} {saved_value}, not {value}; "
                    f"resume with {flag} {saved_value} or choose another --run-dir")
        note = "" if agent.num_timesteps < args.total_steps else \
            f" (already at or past --total-steps {args.total_steps}: nothing left to train)"
        print(f"resuming {model_dir} at step {agent.num_timesteps}{note}")
    else:
        agent = agent_cls(args.env, config=args.config, seed=args.seed, log_dir=run_dir)

    first_step = agent.num_timesteps
    remaining = args.total_steps - first_step
    start = time.perf_counter()
    try:
        if remaining > 0:
            checkpoints = CheckpointCallback(args.checkpoint_every, model_dir,
                                             include_replay_buffer=args.save_replay_buffer)
            try:
                agent.learn(remaining, callback=checkpoints, progress_bar=args.progress_bar)
            except KeyboardInterrupt:
                raise SystemExit(f"\nmaxent train: interrupted at step {agent.num_timesteps}; the last "
                                 f"checkpoint in {model_dir} is intact; run the same command to resume"
                                 ) from None
        elapsed = time.perf_counter() - start
        returns = evaluate(agent, args.env, n_episodes=args.eval_episodes, seed=10_000 + args.seed)
    finally:
        agent.close()
    trained = agent.num_timesteps - first_step
    fps = trained / elapsed if trained > 0 and elapsed > 0 else 0.0
    print(f"{agent_cls.__name__} {args.env}: {agent.num_timesteps} steps, {elapsed:.1f} s, "
          f"{fps:.0f} steps/s, eval return {returns.mean():.1f} ± {returns.std():.1f} "
          f"({args.eval_episodes} episodes); saved to {model_dir}; "
          f"tensorboard --logdir {run_dir}")
    return 0


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


def _eval(argv: list[str]) -> int:
    args = tyro.cli(EvalArgs, args=argv, prog="maxent eval")
    if args.episodes < 1:
        raise SystemExit(f"maxent eval: --episodes must be positive, got {args.episodes}")
    from maxent.agent import evaluate
    from maxent.checkpoint import read_checkpoint_header

    path = args.run_dir / MODEL_SUBDIR if (args.run_dir / MODEL_SUBDIR).is_dir() else args.run_dir
    header = read_checkpoint_header(path)
    agent_cls = _agent_class(header["kind"])
    agent = agent_cls.load(path, env=args.env)
    env = args.env or agent.env_id
    try:
        returns = evaluate(agent, env, n_episodes=args.episodes, deterministic=args.deterministic,
                           seed=args.seed)
    finally:
        agent.close()
    print(f"{header['kind']} {env}: return {returns.mean():.2f} ± {returns.std():.2f} over "
          f"{args.episodes} episodes (min {returns.min():.2f}, max {returns.max():.2f}; "
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


def _robustness(argv: list[str]) -> int:
    args = tyro.cli(RobustnessArgs, args=argv, prog="maxent robustness")
    for flag, value in (("--episodes", args.episodes), ("--pool-size", args.pool_size)):
        if value < 1:
            raise SystemExit(f"maxent robustness: {flag} must be positive, got {value}")
    if args.max_episode_steps is not None and args.max_episode_steps < 1:
        raise SystemExit(f"maxent robustness: --max-episode-steps must be positive, got "
                         f"{args.max_episode_steps}")
    from maxent.commands.robustness import parse_grid, run_benchmark

    grid = parse_grid(args.grid) if args.grid else None  # a bad spec fails before any run loads
    start = time.perf_counter()
    result = run_benchmark(args.run_dirs, grid, episodes=args.episodes, out_dir=args.out,
                           seed=args.seed, max_episode_steps=args.max_episode_steps,
                           pool_size=args.pool_size)
    print(f"wrote {', '.join(str(p) for p in result.files.values())} "
          f"in {time.perf_counter() - start:.1f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``maxent`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="maxent",
        description="Entropy-regularized RL. Commands:\n"
                    "  train ALGO [flags]   train (and resume) an agent; algorithms: "
                    + ", ".join(_all_algorithm_names()) + "\n"
                    "  eval RUN_DIR [flags] evaluate a saved agent\n"
                    "  robustness RUN_DIR [RUN_DIR ...] --grid mass=3:9:11 friction=0.1:1.9:11\n"
                    "                       robustness grid of saved protagonists (CSV, PNG, summary)\n"
                    "Run `maxent train sac --help` for every SAC flag.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"maxent {__version__}")
    parser.add_argument("command", choices=["train", "eval", "robustness"], help="what to do")
    if not argv or argv[0] in ("-h", "--help", "--version"):
        parser.parse_args(argv)
        return 0
    command, rest = argv[0], argv[1:]
    try:
        if command == "train":
            if not rest or rest[0].startswith("-"):
                if rest and rest[0] in ("-h", "--help"):
                    print("usage: maxent train ALGO [flags]; algorithms: "
                          + ", ".join(_all_algorithm_names()))
                    return 0
                raise SystemExit("maxent train: name an algorithm first, e.g. `maxent train sac`")
            if rest[0] in OWN_TRAIN_COMMANDS:
                from importlib import import_module
                return import_module(OWN_TRAIN_COMMANDS[rest[0]]).train_main(rest[1:])
            return _train(rest[0], rest[1:])
        if command == "eval":
            return _eval(rest)
        if command == "robustness":
            return _robustness(rest)
    except (ValueError, FloatingPointError) as err:
        raise SystemExit(f"maxent {command}: {err}") from None
    parser.parse_args(argv)  # prints the error for an unknown command
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
