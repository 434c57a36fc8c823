"""Train SAC on Pendulum-v1 with periodic evaluation and checkpoints, then reload and evaluate.

    python examples/sac_pendulum.py            # about a minute and a half on a 2-core CPU

Run it twice: the second run resumes from runs/example-pendulum/model and finishes at once.
"""

from pathlib import Path

from maxent.training.agent import CheckpointCallback, EvalCallback, evaluate
from maxent.agents import SAC, SACConfig

run = Path("runs/example-pendulum")
model = run / "model"
if model.exists():
    agent = SAC.load(model, log_dir=run)
else:
    agent = SAC("Pendulum-v1", config=SACConfig(learning_starts=1000), seed=0, log_dir=run)

remaining = 15_000 - agent.num_timesteps
if remaining > 0:
    agent.learn(remaining, progress_bar=True, callback=[
        CheckpointCallback(5_000, model),
        EvalCallback("Pendulum-v1", eval_freq=5_000, n_episodes=5, stop_above=-150, verbose=True),
    ])

returns = evaluate(SAC.load(model), "Pendulum-v1", n_episodes=10, seed=123)
print(f"reloaded agent: {returns.mean():.1f} ± {returns.std():.1f} over 10 episodes")
