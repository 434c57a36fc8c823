"""Stable-Baselines3's documented SAC example, run on maxent with only the import line changed
(``from maxent.sb3 import SAC`` instead of ``from stable_baselines3 import SAC``).

    python examples/sb3_pendulum.py                       # SB3's 10,000 steps
    python examples/sb3_pendulum.py --total-timesteps 2000
"""

import argparse


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--total-timesteps", type=int, default=10_000, help="env steps to train")
    parser.add_argument("--path", default="sac_pendulum", help="where model.save writes (.zip added)")
    parser.add_argument("--play-steps", type=int, default=400,
                        help="steps of the reloaded model's play loop (SB3's example loops forever)")
    args = parser.parse_args(argv)

    # Imported after parsing, so that --help answers without loading torch.
    import gymnasium as gym

    from maxent.sb3 import SAC

    # ---- SB3's example from here; the loop is bounded and renders nothing.
    env = gym.make("Pendulum-v1")

    model = SAC("MlpPolicy", "Pendulum-v1", verbose=1)
    model.learn(total_timesteps=args.total_timesteps, log_interval=4)
    model.save(args.path)

    del model  # remove to demonstrate saving and loading

    model = SAC.load(args.path)

    obs, info = env.reset()
    total = 0.0
    for _ in range(args.play_steps):
        action, _states = model.predict(obs, deterministic=True)
        obs, reward, terminated, truncated, info = env.step(action)
        total += float(reward)
        if terminated or truncated:
            obs, info = env.reset()
    print(f"reward over {args.play_steps} play steps: {total:.1f}")
    return total


if __name__ == "__main__":
    main()
