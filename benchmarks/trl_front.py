"""What the TRL front (``maxent.trl.GRPOTrainer``) costs over the native API (``GRPO.learn``) on
the tiny model: the same settings, the same dataset and reward function, alternating runs; prints
each pair's seconds, the median ratio front / native and the geometric mean of the ratios
(pairs alternate which runs first: on a shared machine the first of a pair tends to be slower)."""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time


def reward_len(completions, **kwargs):
    return [-abs(6 - len(c)) for c in completions]


def main(argv=None) -> float:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=5, help="GRPO steps per run")
    parser.add_argument("--rounds", type=int, default=3, help="front/native pairs, alternating")
    parser.add_argument("--max-completion-length", type=int, default=8)
    args = parser.parse_args(argv)

    from maxent import llm
    from maxent.agents.grpo import GRPO
    from maxent.agents.grpo_config import GRPOConfig as Native
    from maxent.envs.prompts import PromptDataset
    from maxent.trl import GRPOConfig, GRPOTrainer

    work = tempfile.mkdtemp()
    model, tokenizer = llm.load_model("tiny", seed=0, tiny={"hidden_size": 32, "num_layers": 1,
                                                            "num_heads": 2})
    llm.save_pretrained(model, tokenizer, f"{work}/tiny")
    rows = [{"prompt": f"{a}+{b}="} for a in range(10) for b in range(10)]
    trl_args = GRPOConfig(f"{work}/out", max_steps=args.steps, per_device_train_batch_size=8,
                          num_generations=4, max_completion_length=args.max_completion_length,
                          report_to="none", use_cpu=True, save_strategy="no", learning_rate=1e-4,
                          lr_scheduler_type="constant", gradient_checkpointing=False, bf16=False)

    def front() -> float:
        trainer = GRPOTrainer(f"{work}/tiny", reward_len, trl_args, train_dataset=rows)
        start = time.perf_counter()
        trainer.train()
        return time.perf_counter() - start

    def native() -> float:
        overrides = trl_args.maxent_overrides()
        overrides.update(model=f"{work}/tiny", chat_template=False, max_prompt_tokens=256 - 8)
        agent = GRPO(None, PromptDataset(rows, [reward_len]), config=Native(**overrides), seed=42)
        start = time.perf_counter()
        agent.learn(args.steps)
        return time.perf_counter() - start

    front(), native()  # warm-up: first-call costs (imports, allocator) out of the pairs
    ratios = []
    for r in range(args.rounds):
        pair = (front(), native()) if r % 2 == 0 else tuple(reversed((native(), front())))
        ratios.append(pair[0] / pair[1])
        print(f"round {r}: front {pair[0]:.3f} s, native {pair[1]:.3f} s, ratio {ratios[-1]:.3f}")
    ratio = statistics.median(ratios)
    print(f"median front / native over {args.rounds} rounds of {args.steps} steps: {ratio:.3f} "
          f"(geometric mean {statistics.geometric_mean(ratios):.3f})")
    return ratio


if __name__ == "__main__":
    main()
