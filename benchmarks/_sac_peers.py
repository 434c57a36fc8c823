"""The SACs the benchmarks compare, built the same way everywhere: maxent's with its defaults,
Stable-Baselines3's and SBX's with theirs (which maxent's defaults match), one per fresh process."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

LIBRARIES = ("maxent", "sb3", "sbx")


def make_model(lib: str, env: str, seed: int, device: str, learning_starts: int | None = None) -> Any:
    """A SAC of ``lib`` on ``env`` with the library's defaults (``learning_starts`` replaces each
    one's, 100 in all three); SBX runs where JAX puts it (the CPU here)."""
    starts = {} if learning_starts is None else {"learning_starts": learning_starts}
    if lib == "maxent":
        from maxent.agents import SAC, SACConfig

        return SAC(env, config=SACConfig(device=device, log_interval=10**9, **starts), seed=seed)
    if lib == "sb3":
        from stable_baselines3 import SAC as SB3SAC

        return SB3SAC("MlpPolicy", env, seed=seed, device=device, verbose=0, **starts)
    if lib == "sbx":
        from sbx import SAC as SBXSAC

        return SBXSAC("MlpPolicy", env, seed=seed, verbose=0, **starts)
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


def run_worker(cmd: list[str], env: dict[str, str], what: str) -> dict:
    """Run one worker process (``python <script> --worker ...``) and return the JSON object on the
    last line of its output; a failed worker stops the benchmark, naming ``what`` and its error."""
    out = subprocess.run([sys.executable, *cmd], capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{what} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])
