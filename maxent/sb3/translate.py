"""Stable-Baselines3's SAC arguments translated into :class:`maxent.agents.SACConfig` fields, and
refused, by name, where maxent's SAC cannot do what SB3 would (so nothing is silently ignored)."""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

# SB3's SAC.__init__ arguments and defaults (stable-baselines3 2.x), less policy and env.
SB3_SAC_DEFAULTS: dict[str, Any] = {
    "learning_rate": 3e-4, "buffer_size": 1_000_000, "learning_starts": 100, "batch_size": 256,
    "tau": 0.005, "gamma": 0.99, "train_freq": 1, "gradient_steps": 1, "action_noise": None,
    "replay_buffer_class": None, "replay_buffer_kwargs": None, "optimize_memory_usage": False,
    "n_steps": 1, "ent_coef": "auto", "target_update_interval": 1, "target_entropy": "auto",
    "use_sde": False, "sde_sample_freq": -1, "use_sde_at_warmup": False, "stats_window_size": 100,
    "tensorboard_log": None, "policy_kwargs": None, "verbose": 0, "seed": None, "device": "auto",
    "_init_setup_model": True,
}

# Arguments maxent's SAC has no counterpart for: the value it must keep, and why not another.
UNSUPPORTED: dict[str, tuple[Any, str]] = {
    "action_noise": (None, "SAC explores through its stochastic policy; maxent adds no action noise"),
    "replay_buffer_class": (None, "maxent's SAC has one uniform replay buffer (no HER or custom class)"),
    "replay_buffer_kwargs": (None, "maxent's replay buffer takes only buffer_size"),
    "optimize_memory_usage": (False, "maxent's replay buffer stores next observations explicitly"),
    "n_steps": (1, "maxent's SAC uses one-step soft Bellman targets"),
    "target_update_interval": (1, "maxent's SAC Polyak-averages the target critics after every update"),
    "use_sde": (False, "maxent's SAC has no generalized state-dependent exploration (gSDE)"),
    "sde_sample_freq": (-1, "maxent's SAC has no gSDE"),
    "use_sde_at_warmup": (False, "maxent's SAC has no gSDE"),
    "_init_setup_model": (True, "maxent builds the networks in the constructor"),
}

SUPPORTED_POLICIES = ("MlpPolicy",)
REFUSED_POLICIES = {
    "CnnPolicy": "maxent's SAC takes flat Box observations through an MLP and has no CNN encoder",
    "MultiInputPolicy": "maxent's SAC takes one Box observation, not a Dict of them",
}

POLICY_KWARGS = ("net_arch", "activation_fn", "use_sde", "log_std_init", "use_expln", "clip_mean",
                 "features_extractor_class", "features_extractor_kwargs", "normalize_images",
                 "optimizer_class", "optimizer_kwargs", "n_critics", "share_features_extractor")


class UnsupportedArgument(ValueError):
    """An SB3 argument (or value) that maxent's SAC cannot honour."""


def closest(name: str, choices: list[str] | tuple[str, ...]) -> str:
    """``"; did you mean 'x'?"`` for the nearest of ``choices``, or an empty string."""
    match = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f"; did you mean {match[0]!r}?" if match else ""


def reject_unknown(kwargs: Mapping[str, Any], known: list[str] | tuple[str, ...], owner: str) -> None:
    """A one-line ``TypeError`` for the first unknown keyword, naming the closest known one."""
    for name in kwargs:
        if name not in known:
            raise TypeError(f"{owner} got an unexpected keyword argument {name!r}{closest(name, known)}")


def _same(value: Any, default: Any) -> bool:
    if default is None:
        return value is None or (isinstance(value, (dict, list)) and not value)
    return value is default or (type(value) is type(default) and value == default)


def policy_name(policy: Any) -> str:
    """``"MlpPolicy"`` for SB3's SAC MLP policy (by name or class); the others are refused."""
    name = policy if isinstance(policy, str) else getattr(policy, "__name__", repr(policy))
    if name == "SACPolicy":  # SB3's MlpPolicy is an alias of SACPolicy
        name = "MlpPolicy"
    if name in REFUSED_POLICIES:
        raise UnsupportedArgument(f"policy={name!r} is not supported: {REFUSED_POLICIES[name]}; "
                                  "use 'MlpPolicy' with a flat Box observation space")
    if name not in SUPPORTED_POLICIES:
        raise ValueError(f"unknown policy {name!r}{closest(name, [*SUPPORTED_POLICIES, *REFUSED_POLICIES])}"
                         "; maxent's SAC front takes 'MlpPolicy'")
    return name


def hidden_sizes(net_arch: Any) -> tuple[int, ...]:
    """SB3's ``net_arch`` (a list, or ``dict(pi=..., qf=...)``) as maxent's shared hidden widths."""
    if isinstance(net_arch, Mapping):
        extra = sorted(set(net_arch) - {"pi", "qf"})
        if extra:
            raise ValueError(f"policy_kwargs net_arch has unknown keys {extra}; SAC's are 'pi' and 'qf'")
        pi, qf = list(net_arch.get("pi", [256, 256])), list(net_arch.get("qf", [256, 256]))
        if pi != qf:
            raise UnsupportedArgument(
                f"policy_kwargs net_arch=dict(pi={pi}, qf={qf}) is not supported: maxent's actor and "
                "critics share one hidden_sizes; give one list, e.g. net_arch=[256, 256]")
        net_arch = pi
    if not isinstance(net_arch, (list, tuple)) or not net_arch \
            or not all(isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in net_arch):
        raise ValueError(f"policy_kwargs net_arch must be a non-empty list of positive widths (or "
                         f"dict(pi=..., qf=...)), got {net_arch!r}")
    return tuple(int(h) for h in net_arch)


def policy_overrides(policy_kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """SACConfig fields from SB3's ``policy_kwargs``; anything maxent's networks cannot be is refused."""
    kwargs = dict(policy_kwargs or {})
    reject_unknown(kwargs, POLICY_KWARGS, "SAC policy_kwargs")
    out: dict[str, Any] = {}
    if kwargs.get("net_arch") is not None:
        out["hidden_sizes"] = hidden_sizes(kwargs["net_arch"])
    if "n_critics" in kwargs:
        out["n_critics"] = int(kwargs["n_critics"])
    activation = kwargs.get("activation_fn", nn.ReLU)
    if activation is not nn.ReLU:
        raise UnsupportedArgument(f"policy_kwargs activation_fn={getattr(activation, '__name__', activation)} "
                                  "is not supported: maxent's SAC networks use ReLU (SB3's SAC default)")
    refusals = {
        "use_sde": (False, "maxent's SAC has no gSDE"),
        "use_expln": (False, "it applies to gSDE only, which maxent's SAC does not have"),
        "share_features_extractor": (False, "maxent's actor and critics share no feature extractor"),
        "features_extractor_kwargs": (None, "maxent's SAC has no feature extractor to configure"),
        "optimizer_kwargs": (None, "maxent's SAC uses Adam with its default settings"),
    }
    for name, (default, why) in refusals.items():
        if name in kwargs and not _same(kwargs[name], default):
            raise UnsupportedArgument(f"policy_kwargs {name}={kwargs[name]!r} is not supported: {why}")
    extractor = kwargs.get("features_extractor_class")
    if extractor is not None and getattr(extractor, "__name__", None) != "FlattenExtractor":
        raise UnsupportedArgument(f"policy_kwargs features_extractor_class={extractor.__name__} is not "
                                  "supported: maxent's SAC flattens the observation into an MLP")
    optimizer = kwargs.get("optimizer_class", torch.optim.Adam)
    if optimizer is not torch.optim.Adam:
        raise UnsupportedArgument(f"policy_kwargs optimizer_class={getattr(optimizer, '__name__', optimizer)} "
                                  "is not supported: maxent's SAC steps with Adam")
    # log_std_init and clip_mean act only under gSDE in SB3 too, so accepting them changes nothing
    # either side; normalize_images concerns image inputs, which MlpPolicy does not take.
    return out


def _train_freq(value: Any) -> int:
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"train_freq must be an int or (n, 'step'), got {value!r}")
        n, unit = value
        if unit == "episode":
            raise UnsupportedArgument(f"train_freq={tuple(value)!r} is not supported: maxent's SAC trains "
                                      "every n env steps; use (n, 'step') or an int")
        if unit != "step":
            raise ValueError(f"train_freq unit must be 'step' or 'episode', got {unit!r}")
        value = n
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"train_freq must be a positive int, got {value!r}")
    return int(value)


def _ent_coef(value: Any) -> dict[str, Any]:
    if isinstance(value, str) and value.startswith("auto"):
        if value == "auto":
            return {"auto_alpha": True, "alpha": 1.0}
        head, _, init = value.partition("_")
        try:
            alpha = float(init)
        except ValueError:
            alpha = math.nan
        if head != "auto" or not alpha > 0:
            raise ValueError(f"ent_coef {value!r} must be 'auto', 'auto_<initial value > 0>' (e.g. "
                             "'auto_0.1') or a positive float")
        return {"auto_alpha": True, "alpha": alpha}
    try:
        alpha = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"ent_coef must be 'auto', 'auto_<float>' or a float, got {value!r}") from None
    if not alpha > 0:
        raise ValueError(f"ent_coef must be positive, got {value!r}")
    return {"auto_alpha": False, "alpha": alpha}


def _target_entropy(value: Any) -> float | None:
    if value == "auto":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"target_entropy must be 'auto' or a float, got {value!r}") from None


def resolve_device(device: Any) -> str:
    """SB3's ``device``: ``"auto"`` is CUDA when available, else the CPU."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(torch.device(device))


def config_overrides(args: Mapping[str, Any]) -> dict[str, Any]:
    """SACConfig fields for SB3 SAC arguments ``args`` (any subset of :data:`SB3_SAC_DEFAULTS`
    less the front's own: tensorboard_log, verbose, seed, stats_window_size)."""
    for name, (default, why) in UNSUPPORTED.items():
        if name in args and not _same(args[name], default):
            raise UnsupportedArgument(f"{name}={args[name]!r} is not supported: {why}; remove it "
                                      f"(SB3's default is {default!r})")
    out: dict[str, Any] = {}
    if "learning_rate" in args:
        rate = args["learning_rate"]
        if callable(rate):
            raise UnsupportedArgument("a learning_rate schedule is not supported: maxent's SAC keeps "
                                      "one learning rate; pass a float")
        out["learning_rate"] = float(rate)
    for name in ("buffer_size", "learning_starts", "batch_size"):
        if name in args:
            out[name] = int(args[name])
    for name in ("tau", "gamma"):
        if name in args:
            out[name] = float(args[name])
    if "train_freq" in args:
        out["train_freq"] = _train_freq(args["train_freq"])
    if "gradient_steps" in args:
        steps = args["gradient_steps"]
        # SB3's -1: as many updates as env steps collected in the round (n_envs is 1 here).
        out["gradient_steps"] = out.get("train_freq", 1) if steps == -1 else int(steps)
    if "ent_coef" in args:
        out.update(_ent_coef(args["ent_coef"]))
    if "target_entropy" in args:
        out["target_entropy"] = _target_entropy(args["target_entropy"])
    if "policy_kwargs" in args:
        out.update(policy_overrides(args["policy_kwargs"]))
    if "device" in args:
        out["device"] = resolve_device(args["device"])
    return out
