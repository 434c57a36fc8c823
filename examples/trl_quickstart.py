"""TRL's GRPO quickstart (a dataset and one reward function) with a tiny model and an in-memory
dataset, so it runs offline (the model and command line come from examples/_offline_model.py).
The only line that differs from the TRL version is the import: ``from trl import GRPOConfig,
GRPOTrainer`` runs the same file on TRL."""

import sys
from pathlib import Path

from datasets import Dataset

from maxent.trl import GRPOConfig, GRPOTrainer  # TRL: from trl import GRPOConfig, GRPOTrainer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _offline_model import offline_run_args, tiny_model_folder  # noqa: E402  (sibling module)


# A reward function as TRL's documentation writes them: completions close to 20 characters.
def reward_len(completions, **kwargs):
    return [-abs(20 - len(completion)) for completion in completions]


def main(argv=None):
    args, work = offline_run_args(__doc__, argv)
    dataset = Dataset.from_dict({"prompt": [f"{a}+{b}=" for a in range(8) for b in range(4)]})
    training_args = GRPOConfig(output_dir=args.output_dir or f"{work}/out", max_steps=args.max_steps,
                               per_device_train_batch_size=4, num_generations=4,
                               max_completion_length=8, report_to="none", use_cpu=True,
                               save_strategy="no")
    trainer = GRPOTrainer(model=tiny_model_folder(f"{work}/tiny"), reward_funcs=reward_len,
                          args=training_args, train_dataset=dataset)
    trainer.train()
    trainer.save_model()
    return trainer


if __name__ == "__main__":
    main()
