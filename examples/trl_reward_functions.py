"""TRL's reward-function examples (a format reward on conversational completions, and an
accuracy reward reading a dataset column), with a tiny model and an in-memory dataset so it runs
offline (the model and command line come from examples/_offline_model.py). Only the import
line differs from the TRL version: ``from trl import GRPOConfig, GRPOTrainer`` runs the same file
on TRL."""

import re
import sys
from pathlib import Path

from datasets import Dataset

from maxent.trl import GRPOConfig, GRPOTrainer  # TRL: from trl import GRPOConfig, GRPOTrainer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _offline_model import offline_run_args, tiny_model_folder  # noqa: E402  (sibling module)


CHAT_TEMPLATE = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}assistant: {% endif %}")


def format_reward_func(completions, **kwargs):
    """1 when the completion is <think>...</think><answer>...</answer>."""
    pattern = r"^<think>.*?</think><answer>.*?</answer>$"
    contents = [completion[0]["content"] for completion in completions]
    return [1.0 if re.match(pattern, content) else 0.0 for content in contents]


def accuracy_reward(completions, ground_truth, trainer_state, log_metric, **kwargs):
    """1 when the completion's first number is the ground truth; logs the exact-match rate and
    anneals nothing before step 1 (reads trainer_state as reward functions do)."""
    found = [re.search(r"\d+", completion[0]["content"]) for completion in completions]
    rewards = [float(m is not None and m.group(0) == truth) for m, truth in zip(found, ground_truth)]
    log_metric("exact_match", sum(rewards) / len(rewards))
    progress = trainer_state.global_step / max(trainer_state.max_steps, 1)
    return [r * (0.5 + 0.5 * progress) for r in rewards]


def main(argv=None):
    args, work = offline_run_args(__doc__, argv)
    rows = [(a, b) for a in range(6) for b in range(4)]
    dataset = Dataset.from_dict({
        "prompt": [[{"role": "user", "content": f"What is {a}+{b}?"}] for a, b in rows],
        "ground_truth": [str(a + b) for a, b in rows]})
    training_args = GRPOConfig(output_dir=args.output_dir or f"{work}/out", max_steps=args.max_steps,
                               per_device_train_batch_size=4, num_generations=4,
                               max_completion_length=8, report_to="none", use_cpu=True,
                               save_strategy="no", logging_steps=1)
    trainer = GRPOTrainer(model=tiny_model_folder(f"{work}/tiny", CHAT_TEMPLATE),
                          reward_funcs=[format_reward_func, accuracy_reward],
                          args=training_args, train_dataset=dataset)
    trainer.train()
    return trainer


if __name__ == "__main__":
    main()
