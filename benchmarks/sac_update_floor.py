"""The arithmetic floor of one SAC update on this machine, and how close the compiled update gets.

FLOPs of one update (SB3's defaults: batch 256, 2x256 hidden, two critics, one actor) are counted
from the matrix products (2 * batch * fan_in * fan_out per dense layer, forward and backward as
autograd runs them: the target pass and the actor's pass through the critics take no weight
gradients); dividing by the measured bf16 (and fp32) GEMM rate of a 256^3 product gives the floor
in updates/s. The compiled update (maxent's default fast path) is then timed on its own.

    python benchmarks/sac_update_floor.py --env HalfCheetah-v5
"""

from __future__ import annotations

import argparse
import time

import torch


def mlp_flops(batch: int, sizes: list[int]) -> int:
    """Forward FLOPs of a dense MLP with layer widths ``sizes``."""
    return sum(2 * batch * a * b for a, b in zip(sizes[:-1], sizes[1:]))


def update_flops(obs: int, act: int, hidden: int = 256, batch: int = 256, critics: int = 2) -> int:
    actor = mlp_flops(batch, [obs, hidden, hidden, 2 * act])
    critic = critics * mlp_flops(batch, [obs + act, hidden, hidden, 1])
    target = actor + critic                       # next action and target critics, no grad
    critic_loss = critic + 2 * critic             # forward, input and weight gradients
    actor_loss = actor + critic + critic + 2 * actor  # critics' backward: input gradients only
    return target + critic_loss + actor_loss


def gemm_rate(dtype: torch.dtype, n: int = 256, repeats: int = 2000) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(50):
        a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n ** 3 * repeats / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="HalfCheetah-v5")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--updates", type=int, default=500)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from maxent.agents import SAC

    agent = SAC(args.env, compile=True, learning_starts=256, log_interval=10**9, seed=0)
    flops = update_flops(agent.obs_dim, agent.action_dim)
    rates = {"float32": gemm_rate(torch.float32), "bfloat16": gemm_rate(torch.bfloat16)}
    print(f"{args.env}: obs {agent.obs_dim}, action {agent.action_dim}; one update = "
          f"{flops / 1e9:.3f} GFLOP of matrix products")
    for name, rate in rates.items():
        print(f"  {name:8s} GEMM 256^3: {rate / 1e9:6.1f} GFLOP/s -> floor "
              f"{rate / flops:5.0f} updates/s ({flops / rate * 1e3:.2f} ms)")
    agent.learn(300)  # fills the buffer and compiles (compile=True: before the first update)
    rows = agent.buffer.sample_rows(256, agent.generator)
    noise = torch.randn((2, 256, agent.action_dim))
    step = agent._compiled_step
    for _ in range(50):
        step(*agent._step_tensors, rows, noise)
    start = time.perf_counter()
    for _ in range(args.updates):
        step(*agent._step_tensors, rows, noise)
    seconds = (time.perf_counter() - start) / args.updates
    floor = flops / rates[agent.precision]
    print(f"  compiled update ({agent.precision}): {seconds * 1e3:.2f} ms = {1 / seconds:.0f} "
          f"updates/s, {floor / seconds:.0%} of the {agent.precision} floor")


if __name__ == "__main__":
    main()
