"""``maxent export RUN_DIR OUT``: a trained language model of a maxent run as a Hugging Face folder
(weights as safetensors, config, tokenizer with its chat template) that transformers and vLLM load
unchanged; LoRA adapters are merged in."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import tyro

# The task env does not matter for the weights; a run trained on a dataset saved no env id.
PLACEHOLDER_ENV = "maxent/TextArithmetic-v0"


@dataclass
class ExportArgs:
    """Export the policy of a GRPO run as a Hugging Face model folder."""

    run_dir: tyro.conf.Positional[Path]
    """Run directory from `maxent train grpo`, or its model/ checkpoint."""
    out: tyro.conf.Positional[Path]
    """The folder to write (must not exist, or be empty)."""


def export_main(argv: list[str]) -> int:
    from maxent.cli.flags import parse

    args = parse(ExportArgs, argv, "maxent export")
    from maxent.agents.registry import ALGORITHMS
    from maxent.training.run import checkpoint_dir, read_header

    grpo = ALGORITHMS["grpo"]
    path = checkpoint_dir(args.run_dir)
    header = read_header(path)
    if header["kind"] != grpo.kind:
        raise SystemExit(f"maxent export: {path} holds a {header['kind']} agent; only language models "
                         "trained by GRPO export as Hugging Face folders")
    if args.out.exists() and any(args.out.iterdir()):
        raise SystemExit(f"maxent export: {args.out} exists and is not empty; choose a new folder")
    start = time.perf_counter()
    from maxent.training.checkpoint import read_checkpoint_state

    state = read_checkpoint_state(path)[1]
    agent = grpo.agent_class().load(path, env=state.get("env_id") or PLACEHOLDER_ENV)
    try:
        out = agent.save_pretrained(args.out)
    finally:
        agent.close()
    print(f"exported {path} (GRPO step {agent.num_timesteps}) to {out} in "
          f"{time.perf_counter() - start:.1f} s: AutoModelForCausalLM.from_pretrained({str(out)!r})")
    return 0
