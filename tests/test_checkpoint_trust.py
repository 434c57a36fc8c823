"""A checkpoint is trusted only after every field of every file is checked: edited files (with their
checksums recomputed, so the edit reaches validation) are refused in one line naming the file and
the field, or load an agent equal to the one saved; a full disk is one line too."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import math
import os
import shutil
import subprocess
import tempfile
import warnings
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maxent.training.checkpoint import (
    MAX_JSON_DEPTH,
    CheckpointError,
    CheckpointWriteError,
    _config_digest,
    load_checkpoint,
    save_checkpoint,
)

FILES = ("config.json", "state.json", "weights.safetensors", "replay.npz")


# --------------------------------------------------------------------------- raw files


def _read(path: Path) -> dict:
    raw = {"config.json": json.loads((path / "config.json").read_text()),
           "state.json": json.loads((path / "state.json").read_text()),
           "weights.safetensors": safetensors.torch.load((path / "weights.safetensors").read_bytes())}
    if (path / "replay.npz").exists():
        with np.load(path / "replay.npz") as npz:
            raw["replay.npz"] = {k: npz[k] for k in npz.files}
    return raw


DEEP = "__deep__"  # stands for JSON nested far deeper than any writer nests, spliced in as text


def _json_text(value) -> str:
    text = json.dumps(value)
    return text.replace(json.dumps(DEEP), "[" * 100_000 + "]" * 100_000)


def _write(path: Path, raw: dict) -> None:
    """Write ``raw`` as the checkpoint at ``path`` with every checksum recomputed."""
    header = raw["config.json"]
    blobs = {"state.json": _json_text(raw["state.json"]).encode(),
             "weights.safetensors": safetensors.torch.save(raw["weights.safetensors"])}
    if "replay.npz" in raw:
        buf = io.BytesIO()
        np.savez(buf, **raw["replay.npz"])
        blobs["replay.npz"] = buf.getvalue()
    for name, data in blobs.items():
        (path / name).write_bytes(data)
    if isinstance(header, dict) and isinstance(header.get("files"), dict):
        header["files"] = {name: hashlib.sha256(data).hexdigest() for name, data in blobs.items()
                           if name in header["files"] or name == "replay.npz"}
        if isinstance(header.get("config"), dict) and "config_sha256" in header:
            try:
                header["config_sha256"] = _config_digest(header["config"])
            except (ValueError, TypeError):
                pass
    (path / "config.json").write_text(_json_text(header))


def _same(a: dict, b: dict) -> bool:
    """Whether two checkpoints' state, tensors and arrays are equal (configs may differ: a valid
    config edit with its checksum recomputed is what a user asking for that config would save)."""
    # QARL does not save an episode in flight: a loaded agent has none, so it records 0 steps of one.
    state_a, state_b = ({k: v for k, v in c["state.json"].items() if k != "in_flight_steps"}
                        for c in (a, b))
    if json.dumps(state_a, sort_keys=True) != json.dumps(state_b, sort_keys=True):
        return False
    ta, tb = a["weights.safetensors"], b["weights.safetensors"]
    if set(ta) != set(tb) or not all(ta[k].dtype == tb[k].dtype and torch.equal(ta[k], tb[k])
                                     for k in ta):
        return False
    ra, rb = a.get("replay.npz", {}), b.get("replay.npz", {})
    return set(ra) == set(rb) and all(ra[k].dtype == rb[k].dtype and np.array_equal(ra[k], rb[k])
                                      for k in ra)


# --------------------------------------------------------------------------- agents under test


@cache
def _saved_bytes(kind: str) -> dict[str, bytes]:
    """The files of ``kind``'s checkpoint as first written."""
    return {p.name: p.read_bytes() for p in sorted(_saved(kind).iterdir()) if p.is_file()}


def _saved_raw(kind: str) -> dict:
    """``kind``'s checkpoint parsed, after checking that its files are still the ones first
    written: Hypothesis replays examples and needs every one to draw from the same fields, so a
    change on disk must fail here, by name, and never as a flaky strategy."""
    now = {p.name: p.read_bytes() for p in sorted(_saved(kind).iterdir()) if p.is_file()}
    first = _saved_bytes(kind)
    changed = sorted(name for name in first.keys() | now.keys() if first.get(name) != now.get(name))
    assert not changed, f"{kind}'s saved checkpoint changed on disk: {changed}"
    return _read(_saved(kind))


@cache
def _saved(kind: str) -> Path:
    """A checkpoint of a small trained agent of ``kind``, with optimiser state, replay buffer and
    an episode in flight where the agent has them; built once per session."""
    root = Path(tempfile.mkdtemp(prefix=f"trust-{kind}-"))
    if kind == "SAC":
        from maxent.agents import SAC

        agent = SAC("Pendulum-v1", seed=0, hidden_sizes=(8,), buffer_size=40, learning_starts=10,
                    batch_size=4, compile=False).learn(50)  # the ring is full and wrapped
    elif kind == "UCB1":
        from maxent.agents import UCB1

        agent = UCB1("maxent/HomeostaticBandit-v0").learn(30)
    elif kind == "QARL":
        from maxent.agents.qarl import QARL

        agent = QARL("InvertedPendulum-v5", seed=0, hidden_sizes=(8,), batch_size=8,
                     learning_starts=16, buffer_size=100, episodes_per_phase=1, samples_per_update=2,
                     max_episode_steps=10, log_interval=100).learn(60)
    else:
        raise ValueError(kind)
    agent.save(root / "ckpt")
    agent.close()
    return root / "ckpt"


@cache
def _fresh_state(kind: str) -> dict:
    """state.json of a freshly built agent of ``kind``: where it holds an empty list, the list is
    a history that grows as the agent learns."""
    root = Path(tempfile.mkdtemp(prefix=f"trust-fresh-{kind}-"))
    agent = _agent_class(kind).load(_saved(kind))
    fresh = type(agent)(agent.env_id, config=agent.config, seed=agent.seed)
    fresh.save(root / "ckpt")
    fresh.close()
    agent.close()
    return json.loads((root / "ckpt" / "state.json").read_text())


def _is_history(kind: str, path: tuple) -> bool:
    value = _fresh_state(kind)
    for k in path:
        if not isinstance(value, (dict, list)) or (isinstance(value, dict) and k not in value) \
                or (isinstance(value, list) and not -len(value) <= k < len(value)):
            return False
        value = value[k]
    return value == []


def _agent_class(kind: str):
    from maxent.agents import SAC, UCB1
    from maxent.agents.qarl import QARL

    return {"SAC": SAC, "UCB1": UCB1, "QARL": QARL}[kind]


def _load_edited(kind: str, edit) -> tuple[Exception | None, dict, dict]:
    """``(error or None, original raw files, raw files of the loaded agent saved again)`` after
    ``edit(raw)`` is applied to a copy of ``kind``'s checkpoint."""
    original = _saved_raw(kind)
    work = Path(tempfile.mkdtemp(prefix="trust-edit-"))
    try:
        path = work / "ckpt"
        shutil.copytree(_saved(kind), path)
        raw = copy.deepcopy(original)
        edit(raw)
        _write(path, raw)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                agent = _agent_class(kind).load(path)
        except CheckpointError as err:
            return err, original, {}
        agent.save(work / "again")
        agent.close()
        return None, original, _read(work / "again")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _refused(kind: str, edit, *words: str) -> str:
    err, _, _ = _load_edited(kind, edit)
    assert err is not None, f"the edit loaded: {words}"
    message = str(err)
    assert "\n" not in message
    for word in words:
        assert word in message, (word, message)
    return message


# --------------------------------------------------------------------------- the reported cases


def _set(file, *keys, value):
    def edit(raw):
        target = raw[file]
        for k in keys[:-1]:
            target = target[k]
        target[keys[-1]] = value(target[keys[-1]]) if callable(value) else value
    return edit


@pytest.mark.parametrize("dtype", [torch.float16, torch.int32, torch.float64])
def test_weights_of_another_dtype_are_refused(dtype):
    _refused("SAC", _set("weights.safetensors", "actor.net.0.weight", value=lambda t: t.to(dtype)),
             "weights.safetensors", "actor.net.0.weight", "dtype")


@pytest.mark.parametrize("name", ["optimizer.state.0.exp_avg", "temperature.log_alpha",
                                  "episode.actions.0"])
def test_optimiser_controller_and_episode_tensors_of_another_dtype_are_refused(name):
    _refused("SAC", _set("weights.safetensors", name, value=lambda t: t.half()),
             "weights.safetensors", name)


def test_optimiser_state_of_another_shape_is_refused():
    _refused("SAC", _set("weights.safetensors", "optimizer.state.0.exp_avg",
                         value=lambda t: t.reshape(-1)), "optimizer.state.0.exp_avg", "shape")
    _refused("SAC", _set("weights.safetensors", "optimizer.state.0.step", value=torch.tensor(-3.0)),
             "optimizer.state.0.step")


def test_a_format_1_downgrade_does_not_skip_the_config_checksum():
    def downgrade(raw):
        raw["config.json"]["config"]["gamma"] = 0.5
        raw["config.json"]["format_version"] = 1
        del raw["config.json"]["config_sha256"]
    _refused("SAC", downgrade, "config.json", "format_version 1", "maxent 0.2.0")

    def older(raw):  # a genuine format-1 header from maxent 0.1: read, as before
        raw["config.json"]["format_version"] = 1
        raw["config.json"]["maxent_version"] = "0.1.3"
        del raw["config.json"]["config_sha256"]
    err, original, again = _load_edited("SAC", older)
    assert err is None and _same(original, again)

    def mixed(raw):  # format 1 cannot hold a field only format-2 writers write
        raw["config.json"]["format_version"] = 1
        raw["config.json"]["maxent_version"] = "0.1.3"
        raw["config.json"]["config"]["gamma"] = 0.5
    _refused("SAC", mixed, "config.json", "config_sha256")


@pytest.mark.parametrize("value", [-5, 1e300, 2.5, "60", None, True])
def test_counters_out_of_range_are_refused(value):
    _refused("SAC", _set("state.json", "num_timesteps", value=value), "state.json", "num_timesteps")
    _refused("SAC", _set("state.json", "n_updates", value=value), "state.json", "n_updates")


@pytest.mark.parametrize("pos", [10**18, -1, 41])
def test_a_replay_position_out_of_range_is_refused(pos):
    _refused("SAC", _set("replay.npz", "pos", value=np.array(pos, dtype=np.int64)),
             "replay.npz", "'pos'")


def test_non_finite_replay_rows_are_refused():
    def nan_reward(raw):
        raw["replay.npz"]["data"][3, 4] = np.nan
    _refused("SAC", nan_reward, "replay.npz", "'data'", "NaN")


@pytest.mark.parametrize("edit", [
    _set("weights.safetensors", "rng.torch", value=lambda t: t[:-8]),
    _set("weights.safetensors", "rng.torch", value=lambda t: t.to(torch.int32)),
    _set("weights.safetensors", "rng.torch", value=lambda t: torch.zeros_like(t)),
])
def test_a_torch_generator_state_of_the_wrong_size_type_or_content_is_refused(edit):
    _refused("SAC", edit, "weights.safetensors", "rng.torch")


@pytest.mark.parametrize("value", [-5, "x", 1.5, [1, 2], None])
def test_a_numpy_generator_state_of_the_wrong_type_is_refused(value):
    _refused("SAC", _set("state.json", "rng_numpy", "state", "state", value=value),
             "state.json", "rng_numpy")
    _refused("SAC", _set("state.json", "rng_numpy", "bit_generator", value="MT19937"),
             "state.json", "rng_numpy")


@pytest.mark.parametrize("file", ["state.json", "config.json"])
def test_deeply_nested_json_is_one_line_not_a_recursion_error(file):
    key = "episode_returns" if file == "state.json" else "config"
    message = _refused("SAC", _set(file, key, value=DEEP), file, "nested")
    assert str(MAX_JSON_DEPTH) in message


def test_a_config_whose_buffer_would_need_terabytes_is_refused_before_allocating():
    _refused("SAC", _set("config.json", "config", "buffer_size", value=10**13),
             "config.json", "buffer_size")


@pytest.mark.parametrize("key,value", [("episode_returns", [-3.0]), ("episode_lengths", [1.5]),
                                       ("episode_seeds", [-1]), ("episode_return", [math.nan]),
                                       ("episode_length", [3]), ("in_flight", 1),
                                       ("episode_replayable", [True, True])])
def test_episodes_in_flight_that_no_save_could_write_are_refused(key, value):
    _refused("SAC", _set("state.json", key, value=value), "state.json", key)


def test_the_unedited_checkpoints_load_equal():
    for kind in ("SAC", "UCB1", "QARL"):
        err, original, again = _load_edited(kind, lambda raw: None)
        assert err is None and _same(original, again), kind


# --------------------------------------------------------------------------- every field, any edit


def _fields(raw: dict) -> list[tuple[str, tuple]]:
    """Every (file, key path) of a checkpoint: JSON leaves and containers (long lists by their
    ends), tensors and arrays by name."""
    out = []

    def walk(file, value, path):
        out.append((file, path))
        if isinstance(value, dict):
            for k, v in value.items():
                if (file, path) != ("config.json", ()) or k not in ("files", "config_sha256"):
                    walk(file, v, (*path, k))
        elif isinstance(value, list):
            for i in sorted({0, len(value) - 1} if len(value) > 4 else range(len(value))):
                walk(file, value[i], (*path, i))

    walk("config.json", raw["config.json"], ())
    # env_description is maxent.training.env_identity's record of how the env was built, checked
    # there; it is left out here.
    walk("state.json", {k: v for k, v in raw["state.json"].items() if k != "env_description"}, ())
    # Sorted: a safetensors file's tensors come back in no fixed order (a hash map's), and
    # Hypothesis replays an example by the index it drew, which must name the same tensor.
    out += [("weights.safetensors", (name,)) for name in sorted(raw["weights.safetensors"])]
    out += [("replay.npz", (name,)) for name in sorted(raw.get("replay.npz", {}))]
    return [f for f in out if f[1]]


def _json_edits(value, path=(), history=False) -> list:
    """Values that no field holding ``value`` can validly hold instead (or the same value). Null
    is a valid env id (the agent was trained on an env instance), so it is no edit there; a
    history one entry shorter or longer is another valid history unless another field fixes its
    length, so ``history`` lists get no length edits."""
    in_history = history == "entry"  # deleting an entry of a history is a length edit too
    common = ([] if in_history else ["delete"]) + ["x", {}, DEEP] + ([] if path == ("env_id",) else [None])
    if isinstance(value, bool):
        return common + [0, 1, "true", []]
    if isinstance(value, int):
        return common + [-5, 1e300, 2.5, math.nan, True, []]
    if isinstance(value, float):
        return common + [math.nan, math.inf, -math.inf, True, []]
    if isinstance(value, str):
        return common + [5, [], True]
    if isinstance(value, list):
        return common + ([] if history is True else ["drop last", "repeat last"]) + [3.5]
    if isinstance(value, dict):
        return common + ["add key", [], 3.5]
    return common + [0, []]


def _history(kind: str, file: str, path: tuple) -> bool | str:
    """True for a history list, "entry" for an entry of one, else False."""
    if file != "state.json":
        return False
    # SAC and QARL pair their episode returns with lengths, which fixes those lists' lengths.
    paired = kind in ("SAC", "QARL") and path[:1] in (("episode_returns",), ("episode_lengths",))
    if paired:
        return False
    if _is_history(kind, path):
        return True
    return "entry" if len(path) > 1 and isinstance(path[-1], int) and _is_history(kind, path[:-1]) \
        else False


def _tensor_edits(t: torch.Tensor) -> list:
    """Edits no tensor or array can take validly: another dtype or shape, NaN where floats are,
    a negative count where signed integers are (other values of a float or byte could be valid)."""
    edits = ["delete", "dtype float16", "dtype int32", "dtype float64", "flatten", "drop one",
             "add dim"]
    if t.is_floating_point():
        return edits + ["nan"]
    return edits + (["negate"] if t.dtype in (torch.int32, torch.int64) else [])


def _apply_json(raw, file, path, edit):
    parent = raw[file]
    for k in path[:-1]:
        parent = parent[k]
    key = path[-1]
    value = parent[key]
    if edit == "delete":
        del parent[key]
    elif edit == "drop last":
        if value:
            value.pop()
    elif edit == "repeat last":
        value.append(copy.deepcopy(value[-1]) if value else 0)
    elif edit == "add key":
        value["unexpected"] = 1
    else:
        parent[key] = edit


def _apply_tensor(table, name, edit, numpy=False):
    t = table[name]
    if edit == "delete":
        del table[name]
        return
    lib = np if numpy else torch
    if edit.startswith("dtype "):
        dtype = getattr(lib, edit.split()[1])
        t = t.astype(dtype) if numpy else t.to(dtype)
    elif edit == "flatten":
        t = t.reshape(-1)
    elif edit == "drop one":
        t = t.reshape(-1)[:-1] if t.size != 0 and (t.ndim if numpy else t.dim()) else t.reshape(-1)
    elif edit == "add dim":
        t = t[None]
    elif edit == "nan":
        t = t.copy() if numpy else t.clone()
        t.reshape(-1)[:1] = float("nan")
    elif edit == "negate":
        t = -t - 1
    table[name] = t


@st.composite
def _edits(draw, kind):
    raw = _saved_raw(kind)
    file, path = draw(st.sampled_from(_fields(raw)))
    if file in ("weights.safetensors", "replay.npz"):
        table = raw[file]
        t = table[path[0]]
        edit = draw(st.sampled_from(_tensor_edits(torch.as_tensor(t) if file == "replay.npz" else t)))
        return file, path, edit
    value = raw[file]
    for k in path:
        value = value[k]
    return file, path, draw(st.sampled_from(_json_edits(value, path, _history(kind, file, path))))


def _check_edit(kind, file, path, edit):
    def apply(raw):
        if file in ("weights.safetensors", "replay.npz"):
            _apply_tensor(raw[file], path[0], edit, numpy=file == "replay.npz")
        else:
            _apply_json(raw, file, path, edit)
    err, original, again = _load_edited(kind, apply)
    if err is None:
        if file == "config.json" and path[0] == "config":
            # A valid config (checked by its class) with its checksum recomputed is what a user
            # asking for that config gets: the agent follows it (a buffer_size, say).
            return
        assert _same(original, again), f"{kind}: {file} {path} edited ({edit!r}) loaded a different agent"
        return
    message = str(err)
    assert "\n" not in message
    assert any(f in message for f in FILES), message
    if file == "config.json" and path[0] == "config":
        # The agent's config is checked by its config class, then by what it builds: an edited
        # config that is valid is refused where it stops fitting the other files (a layer size
        # by the weights, a buffer size by the replay buffer), naming that file and field.
        return
    # The field is named: its key, or (for an edit that moved it) one of its parents' keys.
    names = [str(p) for p in path if not isinstance(p, int)]
    assert file in message, message
    assert any(n in message for n in names) or "nested" in message, message


_PROPERTY = settings(max_examples=60, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@_PROPERTY
@given(_edits("SAC"))
def test_any_edit_of_a_sac_checkpoint_is_refused_by_name_or_loads_equal(case):
    _check_edit("SAC", *case)


@_PROPERTY
@given(_edits("UCB1"))
def test_any_edit_of_a_bandit_checkpoint_is_refused_by_name_or_loads_equal(case):
    _check_edit("UCB1", *case)


@_PROPERTY
@given(_edits("QARL"))
def test_any_edit_of_a_qarl_checkpoint_is_refused_by_name_or_loads_equal(case):
    _check_edit("QARL", *case)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["SAC", "UCB1", "QARL"])
def test_every_field_of_every_file_under_every_edit(kind):
    raw = _read(_saved(kind))
    for file, path in _fields(raw):
        if file in ("weights.safetensors", "replay.npz"):
            t = raw[file][path[0]]
            edits = _tensor_edits(torch.as_tensor(t) if file == "replay.npz" else t)
        else:
            value = raw[file]
            for k in path:
                value = value[k]
            edits = _json_edits(value, path, _history(kind, file, path))
        for edit in edits:
            _check_edit(kind, file, path, edit)


# --------------------------------------------------------------------------- a full disk


@pytest.fixture
def tiny_disk(tmp_path):
    """A 2 MB tmpfs mounted for the test (root only), unmounted after it."""
    mount = tmp_path / "disk"
    mount.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as err:
        pytest.skip(f"cannot mount a small tmpfs to fill: {err}")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill: {done.stderr.strip() or done.returncode}")
    try:
        yield mount
    finally:
        gone = subprocess.run(["umount", str(mount)], capture_output=True, text=True, timeout=30)
        if gone.returncode != 0:  # busy while loaded tensors still map its files: detach it
            subprocess.run(["umount", "-l", str(mount)], capture_output=True, timeout=30)


def test_a_full_disk_is_one_line_naming_the_checkpoint_and_the_space_needed(tiny_disk):
    path = tiny_disk / "ckpt"
    save_checkpoint(path, kind="SAC", config={"v": 1}, tensors={"w": torch.ones(10)})
    with pytest.raises(CheckpointWriteError) as raised:
        save_checkpoint(path, kind="SAC", config={"v": 2}, tensors={"w": torch.ones(10)},
                        arrays={"big": np.zeros(1_000_000)})  # 8 MB on a 2 MB disk
    err = raised.value
    assert isinstance(err, OSError) and isinstance(err, CheckpointError)
    message = str(err)
    assert "\n" not in message
    assert str(path) in message and "no space left" in message
    assert "8 MB" in message and "previous checkpoint there is intact" in message
    ckpt = load_checkpoint(path)
    assert ckpt.config == {"v": 1} and torch.equal(ckpt.tensors["w"], torch.ones(10))
    assert sorted(p.name for p in tiny_disk.iterdir() if not p.name.endswith(".lock")) == ["ckpt"]


def test_a_full_disk_during_maxent_train_is_one_line(tiny_disk):
    run = tiny_disk / "run"
    done = subprocess.run(
        # The default networks and their Adam state take about 3 MB: more than the 2 MB disk.
        ["maxent", "train", "sac", "--env", "Pendulum-v1", "--total-steps", "120",
         "--config.learning-starts", "100", "--config.batch-size", "8", "--no-progress-bar",
         "--eval-episodes", "1", "--run-dir", str(run)], capture_output=True, text=True, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "no space left" in lines[-1] and "needs about" in lines[-1], done.stderr[-2000:]
