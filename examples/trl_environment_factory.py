"""TRL's environment_factory example (GRPO trains an agent whose tools are the methods of an
environment object, one per rollout) with a tiny model and an in-memory dataset, so it runs
offline (the model and command line come from examples/_offline_model.py). The only line that
differs from the TRL version is the import: ``from trl import GRPOConfig, GRPOTrainer`` runs the
same file on TRL."""

import sys
from pathlib import Path

from datasets import Dataset

from maxent.trl import GRPOConfig, GRPOTrainer  # TRL: from trl import GRPOConfig, GRPOTrainer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _offline_model import offline_run_args, tiny_model_folder, tool_chat_template  # noqa: E402


class CounterEnv:
    """The environment, as TRL's documentation writes them: ``reset`` receives the dataset row
    and may return text for the prompt; every other public method is a tool; the trainer builds
    one instance per rollout and reuses it."""

    def reset(self, **kwargs) -> str | None:
        self.value = 0
        self.target = kwargs["target"]
        return " The counter starts at 0."

    def add(self, amount: int) -> int:
        """Add an amount to the counter.

        Args:
            amount: How much to add; negative amounts subtract.

        Returns:
            The counter's new value.
        """
        self.value += amount
        return self.value


# The reward reads each rollout's environment: 1 when its counter ended on the row's target.
def reached_target(environments, **kwargs):
    return [1.0 if env.value == env.target else 0.0 for env in environments]


def main(argv=None):
    args, work = offline_run_args(__doc__, argv)
    targets = [3, 5, 8, 13] * 4
    dataset = Dataset.from_dict({
        "prompt": [[{"role": "user", "content": f"Bring the counter to {t} with the add tool."}]
                   for t in targets],
        "target": targets})
    training_args = GRPOConfig(output_dir=args.output_dir or f"{work}/out", max_steps=args.max_steps,
                               per_device_train_batch_size=4, num_generations=4,
                               max_completion_length=64, max_tool_calling_iterations=2,
                               report_to="none", use_cpu=True, save_strategy="no")
    model = tiny_model_folder(f"{work}/tiny", chat_template=tool_chat_template(), max_positions=1024)
    trainer = GRPOTrainer(model=model, reward_funcs=reached_target, args=training_args,
                          train_dataset=dataset, environment_factory=CounterEnv)
    trainer.train()
    trainer.save_model()
    return trainer


if __name__ == "__main__":
    main()
