"""TRL's GRPO quickstart (a dataset and one reward function) with a tiny model and an in-memory
dataset, so it runs offline. The only line that differs from the TRL version is the import:
``from trl import GRPOConfig, GRPOTrainer`` runs the same file on TRL."""

import argparse
import tempfile

from datasets import Dataset

from maxent.trl import GRPOConfig, GRPOTrainer  # TRL: from trl import GRPOConfig, GRPOTrainer


def tiny_model_folder(path: str) -> str:
    """A tiny Qwen2 model and its tokenizer written as a Hugging Face folder (offline)."""
    from maxent import llm

    model, tokenizer = llm.load_model("tiny", seed=0, tiny={"hidden_size": 32, "num_layers": 1,
                                                            "num_heads": 2})
    llm.save_pretrained(model, tokenizer, path)
    return path


# A reward function as TRL's documentation writes them: completions close to 20 characters.
def reward_len(completions, **kwargs):
    return [-abs(20 - len(completion)) for completion in completions]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-steps", type=int, default=2)
    parser.add_argument("--output-dir", default=None)
    args = parser.parse_args(argv)
    work = tempfile.mkdtemp()
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
