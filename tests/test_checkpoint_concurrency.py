"""A checkpoint read while another process saves to the same path is one save whole: the old or
the new, never weights of one and state of another, and never a false "corrupt" or "missing"."""

import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest
import torch

from maxent.training.checkpoint import (
    load_checkpoint,
    read_checkpoint_header,
    read_checkpoint_state,
    save_checkpoint,
)

# The writer stamps its save counter into every file, so a load can tell if it mixed two saves.
WRITER = textwrap.dedent("""
    import sys, pathlib
    import numpy as np, torch
    from maxent.training.checkpoint import save_checkpoint
    path, stop, start = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), int(sys.argv[3])
    i = start
    while not stop.exists():
        i += 1
        save_checkpoint(path, kind="Stamp", config={"counter": i},
                        tensors={"w": torch.full((64,), float(i)), "counter": torch.tensor([i])},
                        state={"counter": i}, arrays={"counter": np.full(8, i, dtype=np.int64)})
""")


def _stamps(ckpt):
    return {ckpt.config["counter"], ckpt.state["counter"], int(ckpt.tensors["counter"]),
            *ckpt.tensors["w"].tolist(), *ckpt.arrays["counter"].tolist()}


def _read_while_saving(tmp_path, loads):
    path = tmp_path / "ckpt"
    save_checkpoint(path, kind="Stamp", config={"counter": 0},
                    tensors={"w": torch.zeros(64), "counter": torch.tensor([0])},
                    state={"counter": 0}, arrays={"counter": np.zeros(8, dtype=np.int64)})
    stop = tmp_path / "stop"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(stop), "0"])
    seen, mixed, errors = set(), [], []
    try:
        # Wait for the writer's first save so that the loads below overlap its saves.
        while read_checkpoint_header(path)["config"]["counter"] == 0:
            assert writer.poll() is None, "the writer process died"
            time.sleep(0.01)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a .old fallback warning would be a false alarm too
            for n in range(loads):
                try:
                    if n % 4 == 3:
                        seen.add(read_checkpoint_header(path)["config"]["counter"])
                        continue
                    if n % 4 == 2:
                        header, state = read_checkpoint_state(path)
                        stamps = {header["config"]["counter"], state["counter"]}
                    else:
                        stamps = _stamps(load_checkpoint(path, kind="Stamp"))
                except Exception as err:  # noqa: BLE001 - every error is a failure here
                    errors.append(f"{type(err).__name__}: {err}")
                    continue
                if len(stamps) != 1:
                    mixed.append(sorted(stamps))
                seen |= stamps
    finally:
        stop.touch()
        writer.wait(timeout=60)
    assert writer.returncode == 0
    return seen, mixed, errors


def test_loads_beside_a_saving_process_see_one_save_whole(tmp_path):
    seen, mixed, errors = _read_while_saving(tmp_path, loads=2000)
    assert errors == []
    assert mixed == []
    assert len(seen) > 2  # the loads really overlapped several saves


@pytest.mark.slow
def test_many_loads_beside_a_saving_process_see_one_save_whole(tmp_path):
    seen, mixed, errors = _read_while_saving(tmp_path, loads=20_000)
    assert errors == []
    assert mixed == []
    assert len(seen) > 10


SAC_WRITER = textwrap.dedent("""
    import sys, pathlib
    from maxent.agents import SAC
    path, stop = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    agent = SAC("Pendulum-v1", seed=0, hidden_sizes=(8,), buffer_size=300, learning_starts=5,
                batch_size=4, compile=False).learn(10)
    agent.save(path)
    while not stop.exists():
        agent.learn(1)
        agent.save(path)
""")


@pytest.mark.slow
def test_sac_loads_beside_a_training_process_are_whole_saves(tmp_path):
    """The reported symptom: an agent whose Adam step count is not its update count, or a raw
    error, when SAC.load runs beside `maxent train --checkpoint-every` saving the same path."""
    from maxent.agents import SAC

    path, stop = tmp_path / "model", tmp_path / "stop"
    writer = subprocess.Popen([sys.executable, "-c", SAC_WRITER, str(path), str(stop)])
    seen, errors, mixed = set(), [], []
    try:
        while not (path / "config.json").exists():
            assert writer.poll() is None, "the writer process died"
            time.sleep(0.05)
        for _ in range(1500):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("error")
                    agent = SAC.load(path)
            except Exception as err:  # noqa: BLE001 - every error is a failure here
                errors.append(f"{type(err).__name__}: {err}")
                continue
            steps = {int(s["step"]) for s in agent.optimizer.state_dict()["state"].values()}
            if steps != {agent.n_updates} or len(agent.buffer) != min(agent.num_timesteps, 300):
                mixed.append((agent.num_timesteps, agent.n_updates, sorted(steps)))
            seen.add(agent.num_timesteps)
            agent.close()
    finally:
        stop.touch()
        writer.wait(timeout=120)
    assert errors == []
    assert mixed == []
    assert len(seen) > 10
