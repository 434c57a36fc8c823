"""Optimiser and generator state as checkpoint parts: a torch optimiser's ``state_dict`` split into
safetensors-able tensors and a JSON-able dict that refers to them by name, and back, so that an
optimiser resumes bit-identically from a checkpoint that holds no pickle."""

from typing import Any

import torch

from maxent.training.checkpoint import CheckpointError

__all__ = ["decode_optimizer_state", "generator_state_to_tensor", "load_optimizer_state",
           "optimizer_state_to_tensors", "state_dict_to_tensors"]


def optimizer_state_to_tensors(
    optimizer: torch.optim.Optimizer, prefix: str
) -> tuple[dict[str, torch.Tensor], dict]:
    """Split ``optimizer.state_dict()`` into safetensors-able tensors and a JSON-able dict.

    Tensors are named ``f"{prefix}.state.{param_idx}.{name}"`` (nested values get further
    ``.{key}`` parts; tensors inside param_groups, e.g. a tensor lr, go under
    ``f"{prefix}.param_groups.{i}.{name}"``); the JSON dict refers to them by name.

    Args:
        optimizer: any torch optimizer.
        prefix: namespace for the tensor names, e.g. ``"optim.actor"``; keep it unique
            among everything saved in the same checkpoint.

    Returns:
        ``(tensors, meta)``; pass both back to :func:`load_optimizer_state`. The tensors share
        memory with the optimizer's live state, so save them before its next step.
    """
    return state_dict_to_tensors(optimizer.state_dict(), prefix)


def state_dict_to_tensors(sd: dict, prefix: str) -> tuple[dict[str, torch.Tensor], dict]:
    """:func:`optimizer_state_to_tensors` of an optimizer state dict in torch's format (e.g. one
    gathered from the shards of a distributed optimizer)."""
    tensors: dict[str, torch.Tensor] = {}
    state = [
        [idx, _encode(entry, f"{prefix}.state.{idx}", tensors)]
        for idx, entry in sd["state"].items()
    ]
    groups = [
        _encode(g, f"{prefix}.param_groups.{i}", tensors) for i, g in enumerate(sd["param_groups"])
    ]
    return tensors, {"state": state, "param_groups": groups}


def load_optimizer_state(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict, prefix: str
) -> None:
    """Restore optimizer state saved by :func:`optimizer_state_to_tensors`.

    Args:
        optimizer: an optimizer built over the same parameters, in the same order.
        tensors: the tensors (e.g. ``Checkpoint.tensors``); may hold other entries too.
        meta: the JSON-able dict returned alongside them.
        prefix: the prefix used when saving.
    """
    optimizer.load_state_dict(decode_optimizer_state(optimizer, tensors, meta, prefix))


def decode_optimizer_state(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                           meta: dict, prefix: str) -> dict:
    """The optimizer state dict (torch's format) that :func:`load_optimizer_state` would load."""
    if not isinstance(meta, dict) or "state" not in meta or "param_groups" not in meta:
        raise CheckpointError(
            f"optimizer metadata for {prefix!r} is invalid (expected keys 'state' and "
            "'param_groups'); pass the dict returned by optimizer_state_to_tensors"
        )
    state = {}
    for idx, entry in meta["state"]:
        state[idx] = _decode(entry, tensors, prefix)
    groups = [_decode(g, tensors, prefix) for g in meta["param_groups"]]
    # JSON turns tuples (Adam's betas) into lists; restore the optimizer's own types.
    for group, current in zip(groups, optimizer.param_groups):
        for key, value in current.items():
            if isinstance(value, tuple) and isinstance(group.get(key), list):
                group[key] = tuple(group[key])
    return {"state": state, "param_groups": groups}


_TENSOR_REF = "__tensor__"


def _encode(value: Any, key: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        tensors[key] = value.detach()
        return {_TENSOR_REF: key}
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise ValueError(f"optimizer state at {key!r} has non-string keys; cannot save it")
        return {k: _encode(v, f"{key}.{k}", tensors) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v, f"{key}.{i}", tensors) for i, v in enumerate(value)]
    # Non-finite floats are fine too: Python's json writes and reads NaN/Infinity.
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ValueError(
        f"optimizer state value at {key!r} has type {type(value).__name__}, which cannot be "
        "saved without pickle; use an optimizer whose state holds tensors and plain numbers"
    )


def _decode(value: Any, tensors: dict[str, torch.Tensor], prefix: str) -> Any:
    if isinstance(value, dict):
        if set(value) == {_TENSOR_REF}:
            key = value[_TENSOR_REF]
            if key not in tensors:
                raise CheckpointError(
                    f"optimizer tensor {key!r} (prefix {prefix!r}) is missing from the saved "
                    "tensors; save and load with the same prefix and checkpoint"
                )
            # Clone: the optimizer updates its state in place and must not alias the caller's.
            return tensors[key].clone()
        return {k: _decode(v, tensors, prefix) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, tensors, prefix) for v in value]
    return value


def generator_state_to_tensor(g: torch.Generator) -> torch.Tensor:
    """Return a torch generator's state as a uint8 tensor (restore with ``g.set_state``).

    Args:
        g: the generator, e.g. ``torch.default_generator``.
    """
    return g.get_state()
