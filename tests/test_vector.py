"""maxent/training/vector.py: env ids checked with close matches, and MuJoCo's settotalmass deprecation notice
silenced (only that one) wherever maxent makes an env."""

from __future__ import annotations

import subprocess
import sys

import pytest

from maxent.training.vector import check_env_id, make_env


def test_unknown_ids_list_close_matches():
    with pytest.raises(ValueError, match="unknown environment id 'HalfCheeta-v5'.*HalfCheetah-v5"):
        check_env_id("HalfCheeta-v5")


def test_mujoco_envs_are_made_without_the_settotalmass_notice_only():
    # A fresh process: the notice is printed by MuJoCo's C code the first time a model compiles.
    script = ("import mujoco, gymnasium as gym\n"
              "from maxent.training.vector import make_env\n"
              "make_env('HalfCheetah-v5').reset(seed=0)\n"
              "make_env('Hopper-v5').reset(seed=0)\n"
              "mujoco.get_mju_user_warning()('another MuJoCo warning')\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                         check=True)
    text = out.stdout + out.stderr
    assert "settotalmass" not in text
    assert "another MuJoCo warning" in text
    # Without maxent, the same env prints the notice: the test can fail.
    plain = subprocess.run([sys.executable, "-c", "import gymnasium as gym; "
                            "gym.make('HalfCheetah-v5').reset(seed=0)"],
                           capture_output=True, text=True, timeout=300, check=True)
    assert "settotalmass" in plain.stdout + plain.stderr


def test_make_env_passes_arguments():
    env = make_env("Pendulum-v1", max_episode_steps=7)
    env.reset(seed=0)
    steps = 0
    while True:
        steps += 1
        *_, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            break
    assert steps == 7
