"""How much a trained adversary hurts a trained SAC, by force bound: the measurement that picks the
setting of the QARL claim test (benchmarks/robustness_claim.py), where the adversary must matter.

A SAC protagonist is trained on the nominal task and frozen; for each force bound an adversary SAC
(reward = minus the protagonist's) is trained against it on the task's default bodies
(maxent.envs.adversarial.TASKS: InvertedPendulum's pole, Hopper's foot; Fx and Fz each within
±F), then both play deterministically ("trained") and with the adversary sampling ("stochastic");
a uniformly random force within ±F is the untrained reference. Resumable: finished stages are read
back from ``--out/results.json``.

    python benchmarks/adversary_strength.py --tasks InvertedPendulum-v5 Hopper-v5 --forces 1 2 5 10
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from maxent.training.agent import evaluate
from maxent.agents.sac import SAC, SACConfig
from maxent.envs.adversarial import AdversarialMujoco

PROTAGONIST_STEPS = {"InvertedPendulum-v5": 15_000, "Hopper-v5": 40_000}


def play(game: AdversarialMujoco, protagonist: SAC, adversary_fn, episodes: int, seed: int = 10_000):
    """Returns of ``episodes`` deterministic protagonist episodes against ``adversary_fn``."""
    out = []
    for i in range(episodes):
        obs, _ = game.reset(seed=seed + i)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = game.step(
                protagonist.predict(obs, deterministic=True), adversary_fn(obs))
            total += reward
            done = terminated or truncated
        out.append(float(total))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["InvertedPendulum-v5", "Hopper-v5"])
    parser.add_argument("--forces", type=float, nargs="+", default=[1.0, 2.0, 5.0, 10.0])
    parser.add_argument("--protagonist-steps", type=int, default=None,
                        help="default: 15k for InvertedPendulum, 40k for Hopper")
    parser.add_argument("--adversary-steps", type=int, default=8_000)
    parser.add_argument("--train-horizon", type=int, default=200,
                        help="adversary training episode length (more terminations per step)")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("runs/adversary-strength"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {}

    def save() -> None:
        path.write_text(json.dumps(results, indent=1))

    config = SACConfig(torch_threads=args.threads, learning_starts=1000, log_interval=5000)
    adversary_config = SACConfig(torch_threads=args.threads, learning_starts=500, log_interval=5000)
    for task in args.tasks:
        res = results.setdefault(task, {})
        steps = args.protagonist_steps or PROTAGONIST_STEPS.get(task, 40_000)
        folder = args.out / f"{task}-protagonist"
        if (folder / "config.json").exists():
            protagonist = SAC.load(folder)
        else:
            protagonist = SAC(task, config=config, seed=0).learn(steps)
            protagonist.save(folder, include_replay_buffer=False)
        if "nominal" not in res:
            res["nominal"] = evaluate(protagonist, task, n_episodes=args.episodes, seed=10_000).tolist()
            save()
        print(f"{task}: nominal {np.mean(res['nominal']):.0f}", flush=True)
        for force in args.forces:
            key = f"{force:g}"
            if key in res.get("adversary", {}):
                continue
            game = AdversarialMujoco(task, max_force=force)
            rng = np.random.default_rng(0)
            high = game.adversary_action_space.high
            random_returns = play(game, protagonist, lambda o: rng.uniform(-high, high), args.episodes)
            view = AdversarialMujoco(task, max_force=force, max_episode_steps=args.train_horizon
                                     ).adversary_view(lambda o: protagonist.predict(o, deterministic=True))
            start = time.perf_counter()
            adversary = SAC(view, config=adversary_config, seed=1).learn(args.adversary_steps)
            fps = args.adversary_steps / (time.perf_counter() - start)
            trained = play(game, protagonist, lambda o: adversary.predict(o, deterministic=True),
                           args.episodes)
            stochastic = play(game, protagonist, lambda o: adversary.predict(o, deterministic=False),
                              args.episodes)
            res.setdefault("adversary", {})[key] = {
                "trained": trained, "stochastic": stochastic, "random": random_returns,
                "adversary_steps": args.adversary_steps, "steps_per_s": fps}
            save()
            print(f"{task} ±{key} N: random {np.mean(random_returns):.0f}, trained adversary "
                  f"{np.mean(trained):.0f}, stochastic {np.mean(stochastic):.0f} ({fps:.0f} steps/s)",
                  flush=True)
            adversary.close()
            game.close()
    print(json.dumps({t: {"nominal": float(np.mean(r["nominal"])),
                          **{k: {m: float(np.mean(v[m])) for m in ("trained", "stochastic", "random")}
                             for k, v in r.get("adversary", {}).items()}}
                      for t, r in results.items()}, indent=1))


if __name__ == "__main__":
    main()
