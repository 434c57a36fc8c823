"""Tests for maxent/training/checkpoint.py and optim_state.py: round trips, atomic replacement,
crash recovery, load errors and optimizer-state continuation, all without pickle."""

import hashlib
import json
import os
import zipfile

import numpy as np
import pytest
import torch

import maxent
from maxent.training.checkpoint import (
    FORMAT_VERSION,
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    read_checkpoint_header,
    save_checkpoint,
)
from maxent.training.optim_state import (
    generator_state_to_tensor,
    load_optimizer_state,
    optimizer_state_to_tensors,
)

BIG_INT = 2**200 + 12345  # e.g. a Mersenne-twister state word list flattened into one int


def _sample(tmp_path, name="ckpt", **overrides):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(4, 3, generator=g)
    kwargs = {
        "kind": "SAC",
        "config": {"lr": 3e-4, "hidden": [256, 256], "env": "Pendulum-v1"},
        "tensors": {
            "actor.w": w,
            "actor.w_t": w.t(),  # non-contiguous view sharing storage with actor.w
            "tied": w,  # the same storage twice
            "half": torch.randn(5, generator=g).half(),
            "bf16": torch.randn(2, 2, generator=g).bfloat16(),
            "ints": torch.arange(7, dtype=torch.int64),
            "scalar": torch.tensor(1.5),
            "empty": torch.zeros(0, 3),
            "rng": generator_state_to_tensor(g),
        },
        "state": {"step": 1234, "rng": BIG_INT, "nested": {"a": [1, 2.5, None, True]}},
        "arrays": {
            "obs": np.random.default_rng(0).standard_normal((10, 3)).astype(np.float32),
            "done": np.array([True, False] * 5),
            "idx": np.arange(10, dtype=np.int64),
        },
    }
    kwargs.update(overrides)
    return save_checkpoint(tmp_path / name, **kwargs), kwargs


def _siblings(tmp_path):
    """What a save leaves beside the checkpoint, less its run-lock file (maxent.training.runlock), which
    stays by design: it is empty and unlocked between saves."""
    return sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock"))


def _rewrite_listed_hash(path, name):
    header = json.loads((path / "config.json").read_text())
    header["files"][name] = hashlib.sha256((path / name).read_bytes()).hexdigest()
    (path / "config.json").write_text(json.dumps(header))


# -- round trip --------------------------------------------------------------------------------


def test_round_trip_is_exact(tmp_path):
    path, saved = _sample(tmp_path)
    assert path == tmp_path / "ckpt"
    assert sorted(os.listdir(path)) == [
        "config.json",
        "replay.npz",
        "state.json",
        "weights.safetensors",
    ]
    ckpt = load_checkpoint(path, kind="SAC")
    assert isinstance(ckpt, Checkpoint)
    assert ckpt.path == path
    assert ckpt.kind == "SAC"
    assert ckpt.config == saved["config"]
    assert ckpt.state == saved["state"]
    assert ckpt.state["rng"] == BIG_INT
    assert ckpt.format_version == FORMAT_VERSION
    assert ckpt.maxent_version == maxent.__version__
    assert ckpt.tensors.keys() == saved["tensors"].keys()
    for name, t in saved["tensors"].items():
        got = ckpt.tensors[name]
        assert got.dtype == t.dtype and got.shape == t.shape, name
        assert torch.equal(got, t), name
        assert got.is_contiguous()
    assert ckpt.arrays.keys() == saved["arrays"].keys()
    for name, a in saved["arrays"].items():
        assert ckpt.arrays[name].dtype == a.dtype
        np.testing.assert_array_equal(ckpt.arrays[name], a)


def test_header_lists_checksums(tmp_path):
    path, _ = _sample(tmp_path)
    header = read_checkpoint_header(path)
    assert header["format"] == "maxent-checkpoint"
    assert header["format_version"] == FORMAT_VERSION
    assert header["maxent_version"] == maxent.__version__
    assert header["kind"] == "SAC"
    assert header["config"]["hidden"] == [256, 256]
    assert set(header["files"]) == {"weights.safetensors", "state.json", "replay.npz"}
    for name, digest in header["files"].items():
        assert hashlib.sha256((path / name).read_bytes()).hexdigest() == digest


def test_no_arrays_and_skipping_arrays(tmp_path):
    path, _ = _sample(tmp_path, arrays=None, state=None)
    assert not (path / "replay.npz").exists()
    ckpt = load_checkpoint(path)
    assert ckpt.arrays is None and ckpt.state == {}
    path2, _ = _sample(tmp_path, name="with_replay")
    assert load_checkpoint(path2, load_arrays=False).arrays is None


def test_saving_does_not_touch_caller_tensors(tmp_path):
    p = torch.nn.Parameter(torch.ones(3))
    save_checkpoint(tmp_path / "c", kind="X", config={}, tensors={"p": p})
    assert p.requires_grad and torch.equal(p.detach(), torch.ones(3))
    loaded = load_checkpoint(tmp_path / "c").tensors["p"]
    assert not loaded.requires_grad


def test_save_rejects_unsavable_values(tmp_path):
    with pytest.raises(ValueError, match="JSON"):
        save_checkpoint(tmp_path / "a", kind="X", config={"f": object()}, tensors={})
    with pytest.raises(ValueError, match="object"):
        save_checkpoint(
            tmp_path / "b", kind="X", config={}, tensors={}, arrays={"o": np.array([{}, 1])}
        )
    with pytest.raises(TypeError, match="'w'"):
        save_checkpoint(tmp_path / "c", kind="X", config={}, tensors={"w": [1.0]})
    with pytest.raises(ValueError, match="kind"):
        save_checkpoint(tmp_path / "d", kind="", config={}, tensors={})
    # Nothing was left behind by the refused saves.
    assert _siblings(tmp_path) == []


# -- atomic replacement and crash recovery -----------------------------------------------------


def test_replace_keeps_exactly_one_checkpoint(tmp_path):
    _sample(tmp_path)
    new = {"w": torch.full((2,), 7.0)}
    path = save_checkpoint(tmp_path / "ckpt", kind="SAC", config={"v": 2}, tensors=new)
    assert _siblings(tmp_path) == ["ckpt"]
    ckpt = load_checkpoint(path)
    assert ckpt.config == {"v": 2}
    assert list(ckpt.tensors) == ["w"]
    assert ckpt.arrays is None
    assert not (path / "replay.npz").exists()  # no stale file from the old checkpoint


def test_creates_parents_and_accepts_empty_dir(tmp_path):
    path = save_checkpoint(tmp_path / "a" / "b" / "c", kind="X", config={}, tensors={})
    assert load_checkpoint(path).kind == "X"
    (tmp_path / "empty").mkdir()
    save_checkpoint(tmp_path / "empty", kind="X", config={}, tensors={})
    assert load_checkpoint(tmp_path / "empty").kind == "X"


def test_leftover_temp_dir_is_ignored_and_cleaned(tmp_path):
    path, _ = _sample(tmp_path)
    # A save killed mid-write, by a process that no longer exists: a half-written temp dir.
    dead_pid = 2**22 + 17
    tmp = tmp_path / f".ckpt.tmp-{dead_pid}-abcd"
    tmp.mkdir()
    (tmp / "weights.safetensors").write_bytes(b"partial")
    assert load_checkpoint(path).state["step"] == 1234
    save_checkpoint(path, kind="SAC", config={}, tensors={})
    assert _siblings(tmp_path) == ["ckpt"]


def test_old_sibling_recovered_when_main_dir_missing(tmp_path):
    path, saved = _sample(tmp_path)
    # Killed between renaming the old checkpoint away and moving the new one into place.
    old = tmp_path / ".ckpt.old-999-beef"
    os.replace(path, old)
    tmp = tmp_path / ".ckpt.tmp-999-cafe"
    tmp.mkdir()
    with pytest.warns(UserWarning, match="interrupted save"):
        ckpt = load_checkpoint(path)
    assert ckpt.path == old
    assert torch.equal(ckpt.tensors["actor.w"], saved["tensors"]["actor.w"])
    with pytest.warns(UserWarning):
        assert read_checkpoint_header(path)["kind"] == "SAC"
    # The next save completes the picture and removes the superseded .old sibling.
    save_checkpoint(path, kind="SAC", config={}, tensors={})
    assert ".ckpt.old-999-beef" not in _siblings(tmp_path)
    assert load_checkpoint(path).config == {}


def test_refuses_to_overwrite_foreign_directory(tmp_path):
    user_dir = tmp_path / "my_results"
    user_dir.mkdir()
    (user_dir / "thesis.tex").write_text("precious")
    with pytest.raises(CheckpointError, match="my_results.*not a maxent checkpoint"):
        save_checkpoint(user_dir, kind="SAC", config={}, tensors={})
    assert (user_dir / "thesis.tex").read_text() == "precious"
    assert _siblings(tmp_path) == ["my_results"]
    # A foreign config.json does not count as a checkpoint either.
    (user_dir / "config.json").write_text('{"format": "something-else"}')
    with pytest.raises(CheckpointError):
        save_checkpoint(user_dir, kind="SAC", config={}, tensors={})
    assert (user_dir / "thesis.tex").exists()
    # Nor does a plain file.
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match="not a directory"):
        save_checkpoint(tmp_path / "file", kind="SAC", config={}, tensors={})


def test_failure_during_write_leaves_old_checkpoint(tmp_path, monkeypatch):
    path, saved = _sample(tmp_path)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, kind="SAC", config={"v": 2}, tensors={}, arrays={"a": np.zeros(2)})
    assert _siblings(tmp_path) == ["ckpt"]
    assert load_checkpoint(path).config == saved["config"]


# -- load errors -------------------------------------------------------------------------------


def test_missing_directory(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at .*nowhere"):
        load_checkpoint(tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match="nowhere"):
        read_checkpoint_header(tmp_path / "nowhere")


def test_missing_config(tmp_path):
    path, _ = _sample(tmp_path)
    (path / "config.json").unlink()
    with pytest.raises(CheckpointError, match="not a maxent checkpoint: config.json missing"):
        load_checkpoint(path)


def test_garbage_config(tmp_path):
    path, _ = _sample(tmp_path)
    (path / "config.json").write_bytes(b"{not json\xff")
    with pytest.raises(CheckpointError, match="config.json invalid"):
        load_checkpoint(path)


def test_foreign_format(tmp_path):
    path, _ = _sample(tmp_path)
    (path / "config.json").write_text(json.dumps({"format": "hf-model", "files": {}}))
    with pytest.raises(CheckpointError, match="not a maxent checkpoint.*config.json"):
        load_checkpoint(path)


def test_newer_format_version(tmp_path):
    path, _ = _sample(tmp_path)
    header = json.loads((path / "config.json").read_text())
    header["format_version"] = FORMAT_VERSION + 1
    header["maxent_version"] = "9.0.0"
    (path / "config.json").write_text(json.dumps(header))
    with pytest.raises(CheckpointError, match=r"newer maxent.*format 2.*upgrade maxent"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="upgrade maxent"):
        read_checkpoint_header(path)


def test_wrong_kind(tmp_path):
    path, _ = _sample(tmp_path, kind="DQN")
    with pytest.raises(CheckpointError, match="holds a DQN checkpoint, not SAC"):
        load_checkpoint(path, kind="SAC")


def test_truncated_weights(tmp_path):
    path, _ = _sample(tmp_path)
    data = (path / "weights.safetensors").read_bytes()
    (path / "weights.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"weights\.safetensors is corrupt or truncated"):
        load_checkpoint(path)


def test_flipped_byte_in_weights(tmp_path):
    path, _ = _sample(tmp_path)
    data = bytearray((path / "weights.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (path / "weights.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"weights\.safetensors.*checksum mismatch"):
        load_checkpoint(path)


def test_unreadable_weights_with_matching_checksum(tmp_path):
    # The checksum guards against damage; a file that was wrong at write time must still fail
    # as a CheckpointError naming the file, not a raw safetensors error.
    path, _ = _sample(tmp_path)
    (path / "weights.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00garbage!")
    _rewrite_listed_hash(path, "weights.safetensors")
    with pytest.raises(CheckpointError, match=r"weights\.safetensors"):
        load_checkpoint(path)


def test_corrupt_state_json(tmp_path):
    path, _ = _sample(tmp_path)
    (path / "state.json").write_text("{}")
    with pytest.raises(CheckpointError, match=r"state\.json is corrupt"):
        load_checkpoint(path)


def test_missing_listed_replay_file(tmp_path):
    path, _ = _sample(tmp_path)
    (path / "replay.npz").unlink()
    with pytest.raises(CheckpointError, match=r"replay\.npz"):
        load_checkpoint(path)
    # Not asking for the replay buffer skips it.
    assert load_checkpoint(path, load_arrays=False).state["step"] == 1234


def test_object_array_in_replay_is_refused_without_pickle(tmp_path):
    path, _ = _sample(tmp_path)
    # A hostile or foreign replay.npz holding a pickled object array, with a valid checksum.
    with zipfile.ZipFile(path / "replay.npz", "w") as zf, zf.open("obs.npy", "w") as f:
        np.lib.format.write_array(f, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    _rewrite_listed_hash(path, "replay.npz")
    with pytest.raises(CheckpointError, match=r"replay\.npz.*without pickle"):
        load_checkpoint(path)


# -- optimizer state ---------------------------------------------------------------------------


def _model_and_batches():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    batches = [(torch.randn(16, 5), torch.randn(16, 2)) for _ in range(6)]
    return model, batches


def _train(model, opt, batches):
    for x, y in batches:
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()


@pytest.mark.parametrize(
    "opt_kwargs",
    [
        {"fused": True},
        {"foreach": True},
        {"foreach": False, "amsgrad": True, "weight_decay": 0.01},
    ],
    ids=["fused", "foreach", "for-loop-amsgrad"],
)
def test_optimizer_round_trip_continues_bit_identically(tmp_path, opt_kwargs):
    model, batches = _model_and_batches()
    groups = [
        {"params": model[0].parameters()},
        {"params": model[2].parameters(), "lr": 3e-3, "betas": (0.8, 0.95)},
    ]
    opt = torch.optim.Adam(groups, lr=1e-3, **opt_kwargs)
    _train(model, opt, batches[:3])

    tensors, meta = optimizer_state_to_tensors(opt, "optim.actor")
    assert all(k.startswith("optim.actor.state.") for k in tensors)
    assert "optim.actor.state.0.step" in tensors  # Adam keeps step as a tensor
    model_tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    save_checkpoint(
        tmp_path / "c",
        kind="SAC",
        config={},
        tensors={**model_tensors, **tensors},
        state={"optim.actor": meta},
    )
    ckpt = load_checkpoint(tmp_path / "c")

    restored, _ = _model_and_batches()
    restored.load_state_dict({k[6:]: v for k, v in ckpt.tensors.items() if k.startswith("model.")})
    groups2 = [
        {"params": restored[0].parameters()},
        {"params": restored[2].parameters(), "lr": 0.5, "betas": (0.1, 0.2)},  # overwritten
    ]
    opt2 = torch.optim.Adam(groups2, lr=0.5, **opt_kwargs)
    load_optimizer_state(opt2, ckpt.tensors, ckpt.state["optim.actor"], "optim.actor")
    assert opt2.param_groups[1]["lr"] == 3e-3
    assert opt2.param_groups[1]["betas"] == (0.8, 0.95)
    assert isinstance(opt2.param_groups[1]["betas"], tuple)

    _train(model, opt, batches[3:])
    _train(restored, opt2, batches[3:])
    for a, b in zip(model.parameters(), restored.parameters(), strict=True):
        assert torch.equal(a, b)


def test_optimizer_state_is_not_aliased(tmp_path):
    model, batches = _model_and_batches()
    opt = torch.optim.Adam(model.parameters())
    _train(model, opt, batches[:1])
    tensors, meta = optimizer_state_to_tensors(opt, "o")
    snapshot = {k: v.clone() for k, v in tensors.items()}
    opt2 = torch.optim.Adam(model.parameters())
    load_optimizer_state(opt2, tensors, json.loads(json.dumps(meta)), "o")
    _train(model, opt2, batches[1:2])
    for k, v in tensors.items():
        assert torch.equal(v, snapshot[k]), k


def test_optimizer_state_missing_tensor(tmp_path):
    model, batches = _model_and_batches()
    opt = torch.optim.Adam(model.parameters())
    _train(model, opt, batches[:1])
    _tensors, meta = optimizer_state_to_tensors(opt, "o")
    with pytest.raises(CheckpointError, match="o.state.0"):
        load_optimizer_state(opt, {}, meta, "o")


def test_crash_between_renames_is_recovered(tmp_path, monkeypatch):
    path, saved = _sample(tmp_path)
    real_replace = os.replace
    calls = []

    def replace_then_die(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # the old checkpoint is already renamed away; die before the new one
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace_then_die)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, kind="SAC", config={"v": 2}, tensors={})
    monkeypatch.setattr(os, "replace", real_replace)
    assert not path.exists()
    assert [p.startswith(".ckpt.old-") for p in _siblings(tmp_path)] == [True]
    with pytest.warns(UserWarning, match="interrupted save"):
        assert load_checkpoint(path).config == saved["config"]
