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

from maxent.training.checkpoint import load_checkpoint, read_checkpoint_header, save_checkpoint

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
