"""What the TRL-mirroring examples need to run offline, outside the part they mirror: a tiny model
written as a Hugging Face folder, and the command line (step count, output folder) that sizes a run.
Imported by the examples, not run itself."""

from __future__ import annotations

import argparse
import tempfile


def tiny_model_folder(path: str, chat_template: str | None = None) -> str:
    """A tiny Qwen2 model and its tokenizer written as a Hugging Face folder at ``path``; a
    ``chat_template`` is set on the tokenizer where the prompts are conversations."""
    from maxent import llm

    model, tokenizer = llm.load_model("tiny", seed=0, tiny={"hidden_size": 32, "num_layers": 1,
                                                            "num_heads": 2})
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    llm.save_pretrained(model, tokenizer, path)
    return path


def offline_run_args(description: str, argv: list[str] | None) -> tuple[argparse.Namespace, str]:
    """The parsed ``--max-steps`` / ``--output-dir`` and a fresh scratch folder for the model and,
    when no output folder is given, the outputs."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--max-steps", type=int, default=2)
    parser.add_argument("--output-dir", default=None)
    return parser.parse_args(argv), tempfile.mkdtemp()
