"""Train SAC on Pendulum-v1 with periodic evaluation and checkpoints, then reload and evaluate.

    python examples/sac_pendulum.py            # about a minute and a half on a 2-core CPU

Run it twice: the second run resumes from runs/example-pendulum/model and finishes at once.
"""

import argparse
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--total-steps", type=int, default=15_000, help="env steps in total")
    parser.add_argument("--run-dir", type=Path, default=Path("runs/example-pendulum"),
                        help="logs and checkpoints; an existing checkpoint here is resumed")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    # Imported after parsing, so that --help answers without loading torch.
    from maxent.agents import SAC, SACConfig
    from maxent.training.agent import CheckpointCallback, EvalCallback, evaluate

    run = args.run_dir
    model = run / "model"
    if model.exists():
        agent = SAC.load(model, log_dir=run)
    else:
        agent = SAC("Pendulum-v1", config=SACConfig(learning_starts=1000), seed=args.seed,
                    log_dir=run)

    remaining = args.total_steps - agent.num_timesteps
    if remaining > 0:
        agent.learn(remaining, progress_bar=True, callback=[
            CheckpointCallback(5_000, model),
            EvalCallback("Pendulum-v1", eval_freq=5_000, n_episodes=5, stop_above=-150, verbose=True),
        ])
    agent.close()

    returns = evaluate(SAC.load(model), "Pendulum-v1", n_episodes=10, seed=123)
    print(f"reloaded agent: {returns.mean():.1f} ± {returns.std():.1f} over 10 episodes")


if __name__ == "__main__":
    main()
