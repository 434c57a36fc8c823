"""The ``maxent`` command: ``train`` and ``eval``, generated from the agents' config dataclasses.

``maxent train sac --env HalfCheetah-v5 --total-steps 1e6 --config.learning-rate 3e-4`` trains and
checkpoints into a run directory; running the same command again resumes from its last checkpoint.
Flags after the algorithm name are parsed by tyro from :class:`TrainArgs` and the agent's config,
so unknown fields and bad values are rejected with the field's name.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import tyro

from maxent import __version__

MODEL_SUBDIR = "model"
# Config fields that may differ between a checkpoint and the command resuming it: they change how
# a run executes, not what it learns.
RESUMABLE_CHANGES = {"device", "compile", "torch_threads", "log_interval", "vectorization"}


def parse_count(text: str) -> int:
    """Accept step counts as ``20000``, ``2e4`` or ``20_000``."""
    value = float(text.replace("_", ""))
    if value != int(value):
        raise ValueError(f"expected a whole number of steps, got {text!r}")
    return int(value)


Count = Annotated[int, tyro.constructors.PrimitiveConstructorSpec(
    nargs=1, metavar="INT", instance_from_str=lambda args: parse_count(args[0]),
    is_instance=lambda x: isinstance(x, int), str_from_instance=lambda x: [str(x)])]


def _algorithms() -> dict[str, tuple[type, type]]:
    from maxent.agents.sac import SAC, SACConfig
    return {"sac": (SAC, SACConfig)}


def _agent_class(kind: str) -> type:
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
        raise SystemExit(f"maxent train: unknown algorithm {algo!r}; choose from {sorted(algorithms)}")
    agent_cls, config_cls = algorithms[algo]

    @dataclass
    class Args(TrainArgs):
        config: config_cls = field(default_factory=config_cls)

    Args.__doc__ = f"Train {agent_cls.__name__}; the same command resumes from the run's last checkpoint."
    args = tyro.cli(Args, args=argv, prog=f"maxent train {algo}")
    if args.total_steps <= 0:
        raise SystemExit(f"maxent train: --total-steps must be positive, got {args.total_steps}")
    run_dir = args.run_dir or Path("runs") / f"{algo}-{args.env.replace('/', '_')}-s{args.seed}"
    model_dir = run_dir / MODEL_SUBDIR

    from maxent.agent import CheckpointCallback, evaluate
    from maxent.checkpoint import read_checkpoint_header

    if model_dir.exists():
        if not args.resume:
            raise SystemExit(f"maxent train: {model_dir} already holds a checkpoint; pass --resume "
                             "to continue it or choose another --run-dir")
        saved = read_checkpoint_header(model_dir)["config"]
        wanted = args.config.to_json()
        changed = sorted(k for k in wanted if k in saved and saved[k] != wanted[k]
                         and k not in RESUMABLE_CHANGES)
        if changed:
            raise SystemExit(
                f"maxent train: {model_dir} was trained with a different config ({', '.join(changed)}"
                f" differ); resume with the same values or choose another --run-dir")
        overrides = {k: wanted[k] for k in RESUMABLE_CHANGES if k in wanted}
        agent = agent_cls.load(model_dir, log_dir=run_dir, **overrides)
        print(f"resuming {model_dir} at step {agent.num_timesteps}")
    else:
        agent = agent_cls(args.env, config=args.config, seed=args.seed, log_dir=run_dir)

    remaining = args.total_steps - agent.num_timesteps
    start = time.perf_counter()
    if remaining > 0:
        checkpoints = CheckpointCallback(args.checkpoint_every, model_dir,
                                         include_replay_buffer=args.save_replay_buffer)
        agent.learn(remaining, callback=checkpoints, progress_bar=args.progress_bar)
    elapsed = time.perf_counter() - start
    returns = evaluate(agent, args.env, n_episodes=args.eval_episodes, seed=10_000 + args.seed)
    agent.close()
    fps = max(remaining, 0) / elapsed if remaining > 0 else float("nan")
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
    from maxent.agent import evaluate
    from maxent.checkpoint import read_checkpoint_header

    path = args.run_dir / MODEL_SUBDIR if (args.run_dir / MODEL_SUBDIR).is_dir() else args.run_dir
    header = read_checkpoint_header(path)
    agent_cls = _agent_class(header["kind"])
    agent = agent_cls.load(path, env=args.env)
    env = args.env or agent.env_id
    returns = evaluate(agent, env, n_episodes=args.episodes, deterministic=args.deterministic,
                       seed=args.seed)
    agent.close()
    print(f"{header['kind']} {env}: return {returns.mean():.2f} ± {returns.std():.2f} over "
          f"{args.episodes} episodes (min {returns.min():.2f}, max {returns.max():.2f}; "
          f"trained {agent.num_timesteps} steps)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``maxent`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="maxent",
        description="Entropy-regularized RL. Commands:\n"
                    "  train ALGO [flags]   train (and resume) an agent; algorithms: "
                    + ", ".join(sorted(_algorithms())) + "\n"
                    "  eval RUN_DIR [flags] evaluate a saved agent\n"
                    "Run `maxent train sac --help` for every SAC flag.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"maxent {__version__}")
    parser.add_argument("command", choices=["train", "eval"], help="what to do")
    if not argv or argv[0] in ("-h", "--help", "--version"):
        parser.parse_args(argv)
        return 0
    command, rest = argv[0], argv[1:]
    try:
        if command == "train":
            if not rest or rest[0].startswith("-"):
                if rest and rest[0] in ("-h", "--help"):
                    print("usage: maxent train ALGO [flags]; algorithms: " + ", ".join(sorted(_algorithms())))
                    return 0
                raise SystemExit("maxent train: name an algorithm first, e.g. `maxent train sac`")
            return _train(rest[0], rest[1:])
        if command == "eval":
            return _eval(rest)
    except (ValueError, FloatingPointError) as err:
        raise SystemExit(f"maxent {command}: {err}") from None
    parser.parse_args(argv)  # prints the error for an unknown command
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
