"""Where one of our GRPO steps goes, by phase, for several samplers alternating in one process:
seconds of each steady step (the first excluded), of the sampler's ``generate``, of the vLLM
weight ``sync`` and of the update (which includes the sync). Same task and settings as
``grpo_vs_trl.py`` (SmolLM2-135M or the tiny model, G = 8, 2 prompts a step, fp32 training).

    VLLM_CPU_OMP_THREADS_BIND=0-1 python benchmarks/grpo_phases.py --model smollm2 --samplers static vllm static vllm
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
import warnings

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=["tiny", "smollm2"], default="smollm2")
    parser.add_argument("--samplers", nargs="+", default=["static", "vllm", "static", "vllm"],
                        choices=["static", "hf", "vllm"], help="runs, in this order")
    parser.add_argument("--steps", type=int, default=6, help="GRPO steps per run (>= 2)")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.steps < 2:
        parser.error(f"--steps must be >= 2, got {args.steps}")
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    torch.set_num_threads(args.threads)

    from grpo_vs_trl import build, our_config
    from maxent import llm
    from maxent.training.agent import Callback
    from maxent.agents.grpo import COMPLETION_LENGTH, GRPO

    model, tokenizer, env, chat = build(argparse.Namespace(model=args.model, seed=0, hidden=128,
                                                           layers=2, heads=4))
    settings = argparse.Namespace(  # grpo_vs_trl.py's defaults
        group_size=8, prompts=2, max_new_tokens=args.max_new_tokens,
        lr=1e-6 if args.model == "smollm2" else 3e-4, vllm_weight_sync="auto", vllm_dtype="auto",
        no_prompt_sharing=False)
    seconds: dict[str, list[float]] = {}

    def timed(owner, name: str, key: str) -> None:
        real = getattr(owner, name)

        def wrapper(*a, **k):
            start = time.perf_counter()
            out = real(*a, **k)
            seconds.setdefault(key, []).append(time.perf_counter() - start)
            return out
        setattr(owner, name, wrapper)

    timed(llm.StaticSampler, "generate", "generate")
    timed(llm.HFSampler, "generate", "generate")
    timed(GRPO, "update", "update")
    try:
        from maxent.llm.vllm_sampler import VLLMSampler
        timed(VLLMSampler, "generate", "generate")
        timed(VLLMSampler, "sync", "sync")
    except ImportError:
        pass

    widths: list[int] = []  # padded (prompt + completion) width of each update's batch
    real_prepare = GRPO.prepare

    def prepare(agent, rollout, *a, **k):
        widths.append(rollout.prompt_ids.shape[1] + rollout.completion_ids.shape[1])
        return real_prepare(agent, rollout, *a, **k)
    GRPO.prepare = prepare

    class Clock(Callback):
        def __init__(self):
            self.ends: list[float] = []
            self.lengths: list[float] = []

        def on_step(self, agent) -> bool:
            self.ends.append(time.perf_counter())
            self.lengths.append(agent.last_metrics[COMPLETION_LENGTH])
            return True

    for sampler in args.samplers:
        seconds.clear()
        widths.clear()
        config = our_config(settings, model, chat, sampler)
        agent = GRPO(copy.deepcopy(model), env, config=config, seed=0, tokenizer=tokenizer)
        clock = Clock()
        agent.learn(args.steps, callback=clock)
        agent.close()
        steps = [b - a for a, b in zip(clock.ends, clock.ends[1:])]
        phases = "  ".join(f"{k} {statistics.mean(v[1:]):.2f}" for k, v in seconds.items() if len(v) > 1)
        print(f"{sampler:>7}: step {statistics.mean(steps):.2f} s (min {min(steps):.2f}, max "
              f"{max(steps):.2f})  per call: {phases}  completion length "
              f"{statistics.mean(clock.lengths[1:]):.1f}, padded width "
              f"{statistics.mean(widths[1:]):.1f}", flush=True)


if __name__ == "__main__":  # the vLLM engine may start a spawned process
    main()
