"""Speed of the Stable-Baselines3 front (``maxent.sb3.SAC``) against maxent's SAC called natively:
the same engine, config and seed, alternating in one process so machine noise hits both alike.
Prints env-steps/s of each, the front/native time ratio, and whether both ended on the same
weights (they should: the front translates arguments, it does not train differently).

    python benchmarks/sb3_front.py --steps 3000 --repeats 3
    OMP_NUM_THREADS=1 python benchmarks/sb3_front.py --steps 1000 --repeats 2   # quick
"""

from __future__ import annotations

import argparse
import statistics
import time


def run(kind: str, steps: int, seed: int, hidden: int, device: str) -> tuple[float, object]:
    """Seconds ``learn(steps)`` took, and the trained engine."""
    settings = dict(learning_starts=100, batch_size=256, seed=seed)
    if kind == "native":
        from maxent.agents import SAC

        agent = SAC("Pendulum-v1", hidden_sizes=(hidden, hidden), device=device, **settings)
        engine = agent
    else:
        from maxent.sb3 import SAC

        agent = SAC("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[hidden, hidden]),
                    device=device, **settings)
        engine = agent.engine
    start = time.perf_counter()
    agent.learn(steps)
    return time.perf_counter() - start, engine


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3000, help="env steps per learn call")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each, alternating")
    parser.add_argument("--hidden", type=int, default=256, help="hidden width (SB3's default 256)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import torch

    times: dict[str, list[float]] = {"native": [], "front": []}
    same = True
    for rep in range(args.repeats):
        order = ("native", "front") if rep % 2 == 0 else ("front", "native")
        engines = {}
        for kind in order:
            seconds, engines[kind] = run(kind, args.steps, args.seed, args.hidden, args.device)
            times[kind].append(seconds)
            print(f"run {rep + 1} {kind:>6}: {args.steps / seconds:7.1f} env-steps/s", flush=True)
        a, b = (dict(engines[k].actor.state_dict()) for k in ("native", "front"))
        same = same and all(torch.equal(a[n], b[n]) for n in a)
    native, front = statistics.median(times["native"]), statistics.median(times["front"])
    print(f"median over {args.repeats}: native {args.steps / native:.1f} env-steps/s, front "
          f"{args.steps / front:.1f} env-steps/s; front/native time ratio {front / native:.3f}")
    print(f"identical actor weights after training: {same}")


if __name__ == "__main__":
    main()
