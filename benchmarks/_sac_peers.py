"""The SACs the benchmarks compare, built the same way everywhere: maxent's with its defaults,
Stable-Baselines3's and SBX's with theirs (which maxent's defaults match), one per fresh process."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import Any

LIBRARIES = ("maxent", "sb3", "sbx")


def make_model(lib: str, env: str, seed: int, device: str) -> Any:
    """A SAC of ``lib`` on ``env``; SBX runs where JAX puts it (the CPU here)."""
    if lib == "maxent":
        from maxent.agents import SAC, SACConfig

        return SAC(env, config=SACConfig(device=device, log_interval=10**9), seed=seed)
    if lib == "sb3":
        from stable_baselines3 import SAC as SB3SAC

        return SB3SAC("MlpPolicy", env, seed=seed, device=device, verbose=0)
    if lib == "sbx":
        from sbx import SAC as SBXSAC

        return SBXSAC("MlpPolicy", env, seed=seed, verbose=0)
    raise ValueError(f"unknown library {lib!r}; pick one of {', '.join(LIBRARIES)}")


@contextlib.contextmanager
def inductor_cache(lib: str, env: dict[str, str], warm: bool) -> Iterator[dict[str, str]]:
    """``env`` with an empty inductor cache of its own for maxent's process (what a new machine
    sees) unless ``warm``; the cache is removed on exit."""
    if lib != "maxent" or warm:
        yield env
        return
    with tempfile.TemporaryDirectory(prefix="maxent-bench-inductor-") as cache:
        yield {**env, "TORCHINDUCTOR_CACHE_DIR": cache}


def base_env() -> dict[str, str]:
    """This process's environment with MuJoCo's rendering off (no display is needed)."""
    return {**os.environ, "MUJOCO_GL": "disable"}
