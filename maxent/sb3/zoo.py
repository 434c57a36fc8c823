"""rl-baselines3-zoo hyperparameters (an entry of ``hyperparams/sac.yml``) turned into a
``maxent.sb3.SAC`` and its step budget. The zoo writes some values as Python source
(``"dict(net_arch=[256, 256])"``); they are read as literals, never executed."""

from __future__ import annotations

import ast
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from maxent.sb3.translate import SB3_SAC_DEFAULTS, UnsupportedArgument, closest

# Zoo keys that are not SAC arguments: each is refused with why, unless at its inert value.
ZOO_ONLY = {
    "normalize": (False, "maxent's SAC front trains without VecNormalize"),
    "n_envs": (1, "maxent's SAC front trains on one env copy"),
    "env_wrapper": (None, "the front builds the env from its id without zoo wrappers"),
    "frame_stack": (None, "the front has no frame stacking"),
    "callback": (None, "pass callbacks to learn() instead"),
    "vec_env_wrapper": (None, "the front trains on plain envs"),
    "monitor_kwargs": (None, "the front records episodes itself"),
}
# Activation names the zoo writes (nn.X or th.nn.X) and the torch classes they mean.
_ACTIVATIONS = {name: getattr(nn, name) for name in ("ReLU", "Tanh", "ELU", "LeakyReLU", "GELU", "SiLU")}


def parse_python_value(text: str, key: str) -> Any:
    """A zoo value written as Python: literals, ``dict(k=...)`` calls and ``nn.<Activation>``
    names only; anything else (a function call, an import, arithmetic on names) is refused."""
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as err:
        raise ValueError(f"zoo value {key}={text!r} is not a Python expression: {err.msg}") from None
    return _value(tree, key, text)


def _value(node: ast.AST, key: str, text: str) -> Any:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" \
            and not node.args and all(k.arg is not None for k in node.keywords):
        return {k.arg: _value(k.value, key, text) for k in node.keywords}
    if isinstance(node, ast.Dict) and all(k is not None for k in node.keys):
        return {_value(k, key, text): _value(v, key, text) for k, v in zip(node.keys, node.values)}
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_value(e, key, text) for e in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.Attribute) and node.attr in _ACTIVATIONS \
            and ast.unparse(node.value) in ("nn", "th.nn", "torch.nn"):
        return _ACTIVATIONS[node.attr]
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise ValueError(f"zoo value {key}={text!r}: {ast.unparse(node)!r} is not a literal, dict(...) "
                         "or nn.<Activation>; the front reads zoo values without running code") from None


def read_entry(entry: Mapping[str, Any] | str | Path, env_id: str) -> dict[str, Any]:
    """The hyperparameters for ``env_id``: ``entry`` itself when it is a dict of them, or that
    env's entry of a zoo YAML file (``entry`` its path)."""
    if isinstance(entry, Mapping):
        return dict(entry)
    import yaml  # the zoo's format; PyYAML comes with SB3's dependencies

    path = Path(entry)
    table = yaml.safe_load(path.read_text())
    if not isinstance(table, Mapping) or env_id not in table:
        keys = list(table) if isinstance(table, Mapping) else []
        raise KeyError(f"{path} has no entry for {env_id!r}{closest(env_id, keys)}")
    return dict(table[env_id])


def from_zoo(entry: Mapping[str, Any] | str | Path, env_id: str, **sac_kwargs: Any) -> tuple[Any, int]:
    """``(model, n_timesteps)`` for a zoo entry: ``model = SAC(env=env_id, **entry)``, ready for
    ``model.learn(n_timesteps)``. ``sac_kwargs`` (``seed``, ``verbose``...) are added on top."""
    from maxent.sb3.sac import SAC

    params = read_entry(entry, env_id)
    if "n_timesteps" not in params:
        raise ValueError(f"the zoo entry for {env_id} has no n_timesteps; every zoo entry names its budget")
    n_timesteps = int(float(params.pop("n_timesteps")))
    for key, (inert, why) in ZOO_ONLY.items():
        if key in params:
            value = params.pop(key)
            if value != inert and not (inert is None and value in ({}, [], "")):
                raise UnsupportedArgument(f"zoo key {key}={value!r} is not supported: {why}")
    for key in ("policy_kwargs", "replay_buffer_kwargs"):
        if isinstance(params.get(key), str):
            params[key] = parse_python_value(params[key], key)
    for key in ("learning_rate",):
        value = params.get(key)
        if isinstance(value, str) and value.startswith("lin_"):
            raise UnsupportedArgument(f"zoo {key}={value!r} is a linear schedule, which is not "
                                      "supported: maxent's SAC keeps one learning rate; use a float")
    if isinstance(params.get("train_freq"), list):
        params["train_freq"] = tuple(params["train_freq"])
    unknown = [k for k in params if k != "policy" and k not in SB3_SAC_DEFAULTS]
    if unknown:
        raise ValueError(f"zoo key {unknown[0]!r} is not a SAC argument"
                         f"{closest(unknown[0], list(SB3_SAC_DEFAULTS))}")
    policy = params.pop("policy", "MlpPolicy")
    return SAC(policy, env_id, **{**params, **sac_kwargs}), n_timesteps
