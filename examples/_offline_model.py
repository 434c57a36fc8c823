"""What the TRL-mirroring examples need to run offline, outside the part they mirror: a tiny model
written as a Hugging Face folder, and the command line (step count, output folder) that sizes a run.
Imported by the examples, not run itself."""

from __future__ import annotations

import argparse
import tempfile


def tiny_model_folder(path: str, chat_template: str | None = None, max_positions: int = 256) -> str:
    """A tiny Qwen2 model and its tokenizer written as a Hugging Face folder at ``path``; a
    ``chat_template`` is set on the tokenizer where the prompts are conversations, and
    ``max_positions`` leaves room for multi-turn transcripts."""
    from maxent import llm

    model, tokenizer = llm.load_model("tiny", seed=0, tiny={"hidden_size": 32, "num_layers": 1,
                                                            "num_heads": 2,
                                                            "max_positions": max_positions})
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    llm.save_pretrained(model, tokenizer, path)
    return path


def tool_chat_template() -> str | None:
    """A chat template both trainers can run tool calls with: TRL parses tool calls only for the
    templates of models it knows, so when TRL is installed this is the Qwen2.5 template it ships
    (read from its package); otherwise None, and maxent.trl gives the tokenizer plain ChatML."""
    try:
        import trl
    except ImportError:
        return None
    from pathlib import Path

    shipped = Path(trl.__file__).parent / "chat_templates" / "qwen2_5.jinja"
    return shipped.read_text() if shipped.is_file() else None


def offline_run_args(description: str, argv: list[str] | None) -> tuple[argparse.Namespace, str]:
    """The parsed ``--max-steps`` / ``--output-dir`` and a fresh scratch folder for the model and,
    when no output folder is given, the outputs."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--max-steps", type=int, default=2)
    parser.add_argument("--output-dir", default=None)
    return parser.parse_args(argv), tempfile.mkdtemp()
