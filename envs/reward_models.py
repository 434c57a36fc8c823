"""Reward models as reward functions, as TRL's ``GRPOTrainer`` takes them: a sequence classifier
with one output (``AutoModelForSequenceClassification(num_labels=1)``), or the local path of one,
scores each prompt + completion; its logit is the reward."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["RewardModel", "as_reward_functions"]


class RewardModel:
    """A sequence classifier called in TRL's reward-function convention.

    Plain prompts are scored as ``prompt + completion``; conversations as the reward tokenizer's
    chat template over the prompt's messages and the completion's, as TRL does. Inputs are
    right-padded, special tokens are not added, and the first logit is the reward.
    """

    def __init__(self, model: Any, tokenizer: Any, name: str):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.__name__ = name
        if tokenizer.pad_token is None:  # batches need padding; the eos serves, as in TRL
            tokenizer.pad_token = tokenizer.eos_token
        if getattr(model.config, "pad_token_id", None) is None:
            model.config.pad_token_id = tokenizer.pad_token_id

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **_: Any) -> list[float]:
        import torch

        if prompts and isinstance(prompts[0], list):
            texts = [self.tokenizer.apply_chat_template(list(p) + list(c), tokenize=False)
                     for p, c in zip(prompts, completions)]
        else:
            texts = [p + c for p, c in zip(prompts, completions)]
        inputs = self.tokenizer(texts, return_tensors="pt", padding=True, padding_side="right",
                                add_special_tokens=False)
        device = next(self.model.parameters()).device
        with torch.inference_mode():
            logits = self.model(**{k: v.to(device) for k, v in inputs.items()}).logits
        return logits[:, 0].float().cpu().tolist()


def _model_name(model: Any) -> str:
    path = str(getattr(model.config, "_name_or_path", "") or type(model).__name__)
    return path.rstrip("/").split("/")[-1] or type(model).__name__


def _load_tokenizer(where: str, what: str) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(where)
    except (OSError, ValueError) as err:
        raise ValueError(f"reward model {what} has no tokenizer at {where} ({type(err).__name__}); "
                         "pass its tokenizer in reward_processing_classes=[...]") from None


def _reward_model(spec: Any, tokenizer: Any) -> RewardModel:
    import torch

    if isinstance(spec, (str, Path)):
        path = Path(spec)
        if not path.is_dir():
            raise ValueError(f"reward function {str(spec)!r} is not callable and not a local model "
                             "folder; pass a function, a PreTrainedModel or a local path (no hub "
                             "downloads)")
        from transformers import AutoModelForSequenceClassification

        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
        if tokenizer is None:
            tokenizer = _load_tokenizer(str(path), repr(str(spec)))
        return RewardModel(model, tokenizer, path.name)
    if not isinstance(spec, torch.nn.Module):
        raise TypeError(f"every reward function must be callable, a reward model or its local path, "
                        f"got {spec!r:.80}")
    name = _model_name(spec)
    if tokenizer is None:
        source = str(getattr(spec.config, "_name_or_path", "") or "")
        if not source or not Path(source).is_dir():
            raise ValueError(f"reward model {name} ({type(spec).__name__}) has no tokenizer: pass "
                             "reward_processing_classes=[its tokenizer] (one per reward function, "
                             "None for plain functions)")
        tokenizer = _load_tokenizer(source, name)
    if getattr(spec.config, "num_labels", 1) != 1:
        raise ValueError(f"reward model {name} has num_labels={spec.config.num_labels}; a reward "
                         "model gives one score (load it with num_labels=1)")
    return RewardModel(spec, tokenizer, name)


def as_reward_functions(functions: Sequence[Any], processing_classes: Any = None) -> list[Callable]:
    """``functions`` with each reward model (or local model path) wrapped as a reward function;
    ``processing_classes`` holds one tokenizer (or ``None``) per function, or one for a single
    function."""
    import torch

    n = len(functions)
    if processing_classes is None:
        processing_classes = [None] * n
    elif not isinstance(processing_classes, (list, tuple)):
        processing_classes = [processing_classes]
    if len(processing_classes) != n:
        raise ValueError(f"reward_processing_classes has {len(processing_classes)} entries for {n} "
                         "reward functions; give one per function (None for plain functions)")
    out = []
    for fn, tokenizer in zip(functions, processing_classes):
        if isinstance(fn, (str, Path, torch.nn.Module)):
            out.append(_reward_model(fn, tokenizer))
        else:
            out.append(fn)
    return out
