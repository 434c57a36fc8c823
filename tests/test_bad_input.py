"""Bad input gets one clear line naming the problem and the fix, before anything is allocated or
run: unavailable devices, sizes this machine cannot hold, envs that return a non-numeric reward or
resize their observation, complex observations, broken reward-function modules, hostile or broken
sweep files and ``--set`` values, and grid specs long enough to expose a quadratic parser."""

from __future__ import annotations

import sys
import uuid

import gymnasium as gym
import numpy as np
import pytest
import torch

from maxent.agents import SAC, SACConfig
from maxent.cli.config_files import MAX_DEPTH, check_nesting, parse_value
from maxent.cli.main import main
from maxent.cli.robustness import MAX_AXIS_VALUES, parse_grid
from maxent.cli.sweep.spec import SweepError, load_sweep_config
from maxent.envs.lsd import LSDBandit, random_lsd_table
from maxent.envs.prompts import import_function
from maxent.training.limits import (OutOfMemoryError, available_devices, check_device, check_memory,
                                    machine_memory)
from maxent.training.vector import InputError, make_vector_env

TINY = dict(hidden_sizes=(16, 16), batch_size=16, buffer_size=2000, learning_starts=20,
            log_interval=50)


def one_line(err: BaseException) -> str:
    text = str(err.code if isinstance(err, SystemExit) else err)
    assert "\n" not in text, text
    return text


# --------------------------------------------------------------------------- devices


@pytest.mark.skipif(torch.cuda.device_count() > 7, reason="this machine has a cuda:7")
def test_an_unavailable_device_is_refused_when_the_agent_is_built():
    config = SACConfig(device="cuda:7", **TINY)  # a config may name another machine's GPU
    assert SACConfig.from_json(config.to_json()) == config
    with pytest.raises(ValueError) as err:
        SAC("Pendulum-v1", config=config)
    text = one_line(err.value)
    assert "SACConfig.device is 'cuda:7'" in text and "available: cpu" in text and "device='cpu'" in text


def test_devices_this_machine_has_pass():
    for name in available_devices():
        check_device(name, "SACConfig.device")
    check_device("cpu", "SACConfig.device")
    check_device("not a device", "SACConfig.device")  # left to the config's own parse check
    assert available_devices()[0] == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_refused():
    with pytest.raises(ValueError, match=r"'cuda'.*does not have"):
        check_device("cuda", "QARLConfig.device")


# --------------------------------------------------------------------------- memory


def test_a_replay_buffer_this_machine_cannot_hold_is_refused_before_allocating():
    with pytest.raises(OutOfMemoryError) as err:
        SAC("Pendulum-v1", config=SACConfig(**{**TINY, "buffer_size": 10**13}))
    text = one_line(err.value)
    assert isinstance(err.value, MemoryError) and isinstance(err.value, ValueError)
    assert "10,000,000,000,000 transitions" in text and "360 TB" in text
    assert "available" in text and "buffer_size" in text


def test_the_command_line_reports_a_size_in_one_line(tmp_path):
    with pytest.raises(SystemExit) as err:
        main(["train", "sac", "--env", "Pendulum-v1", "--config.buffer-size", "10000000000000",
              "--total-steps", "10", "--run-dir", str(tmp_path / "run"), "--no-progress-bar"])
    text = one_line(err.value)
    assert text.startswith("maxent train:") and "buffer_size" in text


def test_check_memory_compares_with_the_machine():
    total, available = machine_memory()
    assert total >= available > 0
    check_memory(1024, "a table", "make it smaller")
    check_memory(available * 0.9 if available < total else 1, "a lazily filled buffer", "x", eager=False)
    with pytest.raises(OutOfMemoryError, match=r"a table needs about .* more than this machine's "
                                               r"RAM .* available\); make it smaller"):
        check_memory(2 * total, "a table", "make it smaller")
    with pytest.raises(OutOfMemoryError):
        check_memory(available + total, "a buffer", "lower it", eager=False)


def test_a_bandit_too_large_for_memory_is_refused_before_allocating():
    import maxent.envs  # noqa: F401  (registers maxent/... ids)

    with pytest.raises(MemoryError) as err:
        gym.make("maxent/RechargingBandit-v0", d=10**13)
    text = one_line(err.value)
    assert "d=10,000,000,000,000" in text and "smaller d" in text
    for build in (lambda: random_lsd_table(3, 10**13),
                  lambda: LSDBandit.random_recharging(n_arms=3, d=10**13),
                  lambda: LSDBandit([lambda tau: 0.5] * 2, d=10**13, form="lsd")):
        with pytest.raises(MemoryError, match="smaller d"):
            build()
    assert LSDBandit(d=50, form="recharging").d == 50  # ordinary sizes still build


# --------------------------------------------------------------------------- envs an agent steps


class _Env(gym.Env):
    """Box env whose reward and observation shape can go wrong at a chosen step."""

    def __init__(self, reward=0.5, resize_at=None):
        self.observation_space = gym.spaces.Box(-1, 1, (3,), np.float32)
        self.action_space = gym.spaces.Box(-1, 1, (1,), np.float32)
        self.reward, self.resize_at, self.t = reward, resize_at, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(3, np.float32), {}

    def step(self, action):
        self.t += 1
        size = 4 if self.resize_at is not None and self.t >= self.resize_at else 3
        reward = self.reward if self.t >= 3 else 0.0
        return np.zeros(size, np.float32), reward, False, self.t >= 50, {}


def _steps(envs, n):
    envs.reset(seed=0)
    for _ in range(n):
        envs.step(np.zeros((1, 1), np.float32))


def test_a_string_reward_names_the_env_and_the_step():
    envs = make_vector_env(_Env(reward="1.0"))
    with pytest.raises(InputError) as err:
        _steps(envs, 5)
    text = one_line(err.value)
    assert "env _Env returned a reward of type str ('1.0') at step 3 of its episode" in text
    assert isinstance(err.value, TypeError) and isinstance(err.value, ValueError)


def test_a_complex_reward_is_refused_and_real_rewards_of_every_kind_pass():
    with pytest.raises(InputError, match="type complex"):
        _steps(make_vector_env(_Env(reward=1 + 2j)), 4)
    with pytest.raises(InputError, match="type ndarray"):  # the vector env cannot store it
        _steps(make_vector_env(_Env(reward=np.array([0.5]))), 4)
    for reward in (1, 0.5, np.float32(0.5), np.int64(2), np.array(0.5), True):
        _steps(make_vector_env(_Env(reward=reward)), 4)


def test_an_observation_that_changes_shape_names_the_env_and_the_step():
    envs = make_vector_env(_Env(resize_at=7))
    with pytest.raises(InputError) as err:
        _steps(envs, 10)
    text = one_line(err.value)
    assert "env _Env returned an observation of shape (4,) at step 7 of its episode" in text
    assert "observation space has shape (3,)" in text


def test_sac_training_on_a_broken_env_stops_with_the_check():
    agent = SAC(_Env(reward="high"), config=SACConfig(**TINY))
    with pytest.raises(InputError, match="reward of type str"):
        agent.learn(30)


def test_an_env_id_trains_through_the_checks():
    agent = SAC("Pendulum-v1", config=SACConfig(**TINY)).learn(30)
    assert agent.num_timesteps == 30


def test_a_callable_that_returns_no_env_is_named():
    with pytest.raises(TypeError, match=r"returned 3 \(int\), not a gymnasium.Env"):
        make_vector_env(lambda: 3)


# --------------------------------------------------------------------------- predict


def test_complex_observations_are_refused_naming_the_dtype():
    agent = SAC("Pendulum-v1", config=SACConfig(**TINY))
    with pytest.raises(InputError) as err:
        agent.predict(np.array([1 + 1j, 0, 0]))
    assert "complex128" in one_line(err.value) and "SAC.predict" in str(err.value)
    with pytest.raises(InputError, match="complex64"):
        agent.predict(torch.zeros(3, dtype=torch.complex64))
    with pytest.raises(ValueError, match="complex"):  # a list fails float conversion by itself
        agent.predict([1j, 0.0, 0.0])


# --------------------------------------------------------------------------- reward functions


@pytest.mark.parametrize("source,error", [
    ("def reward(:\n    pass\n", "SyntaxError: invalid syntax"),
    ("raise RuntimeError('needs a GPU\\nsee the docs')\n", "RuntimeError: needs a GPU see the docs"),
])
def test_a_reward_module_that_raises_on_import_is_named(tmp_path, monkeypatch, source, error):
    name = f"broken_rewards_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with pytest.raises(ValueError) as err:
            import_function(f"{name}:reward")
    finally:
        sys.modules.pop(name, None)
    text = one_line(err.value)
    assert f"importing module {name!r} raised {error}" in text and "fix the module" in text


# --------------------------------------------------------------------------- sweep files


def _load(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(SweepError) as err:
        load_sweep_config(path)
    return one_line(err.value)


def test_yaml_python_tags_are_refused_without_running_anything(tmp_path):
    pytest.importorskip("yaml")
    marker = tmp_path / "ran"
    text = _load(tmp_path, "evil.yaml",
                 "methods: !!python/object/apply:pathlib.Path.touch "
                 f"[!!python/object/apply:pathlib.Path ['{marker}']]\n")
    assert not marker.exists()
    assert "evil.yaml (line 1)" in text and "python/object/apply" in text and "refused" in text


@pytest.mark.parametrize("name,text", [
    ("flow.yaml", "methods: " + "[" * 20_000 + "]" * 20_000 + "\n"),
    ("block.yaml", "".join(" " * i + f"k{i}:\n" for i in range(MAX_DEPTH + 5))),
    ("inline.toml", "methods = " + "[" * 20_000 + "]" * 20_000 + "\n"),
    ("dotted.toml", "common" + ".a" * 5_000 + " = 1\n"),
])
def test_deep_nesting_is_an_error_not_a_recursion_error(tmp_path, name, text):
    if name.endswith(".yaml"):
        pytest.importorskip("yaml")
    assert "nests tables or lists" in _load(tmp_path, name, text)


def test_a_yaml_alias_bomb_is_refused(tmp_path):
    pytest.importorskip("yaml")
    lines = ["a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 7)]
    assert "12,345,678 values once its YAML aliases are expanded" in _load(
        tmp_path, "bomb.yaml", "\n".join(lines) + "\n")


def test_invalid_files_name_the_place(tmp_path):
    pytest.importorskip("yaml")
    text = _load(tmp_path, "bad.yaml", "methods: [sac\ntasks: x\n")
    assert text.startswith(f"{tmp_path / 'bad.yaml'} is not valid YAML") and "line 2" in text
    assert "is not valid TOML" in _load(tmp_path, "bad.toml", "methods = [\n")
    assert "cannot read" in _load(tmp_path, "big.toml", "budgets = [" + "9" * 5000 + "]\n")
    path = tmp_path / "latin.toml"
    path.write_bytes("methods = ['\xe9']\n".encode("latin-1"))
    with pytest.raises(SweepError, match="is not UTF-8 text"):
        load_sweep_config(path)


def test_a_huge_budget_is_refused(tmp_path):
    assert "budgets must be below 2**63" in _load(tmp_path, "b.toml", "budgets = [1e300]\n")
    assert load_sweep_config(None, {"budgets": [2e4]}).budgets == (20_000,)


def test_set_values_are_bounded_and_tables_one_level_deep():
    with pytest.raises(SystemExit) as err:
        main(["sweep", "--set", "common.hidden_sizes=" + "[" * 20_000 + "]" * 20_000, "--dry-run"])
    assert "maxent sweep: --set value" in one_line(err.value) and "too deeply" in str(err.value.code)
    with pytest.raises(SweepError, match=r"--set qarl.max_force.x: tables are one level deep"):
        load_sweep_config(None, {"qarl.max_force.x": 1})
    deep: list = []
    for _ in range(MAX_DEPTH + 1):
        deep = [deep]
    with pytest.raises(SweepError, match=f"more than {MAX_DEPTH} levels"):
        load_sweep_config(None, {"common.hidden_sizes": deep})
    with pytest.raises(ValueError, match="more than"):
        parse_value("[" * 40 + "]" * 40)
    assert parse_value("[64, 64]") == [64, 64] and parse_value("plain") == "plain"


def test_check_nesting_counts_shared_parts_without_expanding_them():
    shared: list = [0] * 10
    for _ in range(4):
        shared = [shared] * 10
    check_nesting(shared, "x")  # 111,111 values once expanded: allowed
    with pytest.raises(ValueError, match="more than 1,000,000"):
        check_nesting([[shared] * 10] * 10, "x")


# --------------------------------------------------------------------------- grid specs


def test_half_a_megabyte_grid_parses_exactly():
    values = np.round(np.linspace(0.1, 9.9, 60_000), 6)
    spec = "mass=" + ",".join(repr(float(v)) for v in values)
    assert len(spec) > 500_000
    np.testing.assert_array_equal(parse_grid([spec])["mass"], values)
    grid = parse_grid([" mass = 3:9:" + "0" * 500_000 + "11 ", "friction=1e-1"])
    np.testing.assert_allclose(grid["mass"], np.linspace(3, 9, 11))


@pytest.mark.parametrize("spec,match", [
    ("mass=" + "1" * 500_000 + "x", "does not parse"),
    ("mass=" + "1" * 500_000 + ":", "does not parse"),
    ("mass=1" + " " * 500_000 + "x", "does not parse"),
    ("mass=1:2:" + "9" * 500_000, "at most 1,000,000"),
    ("mass=1:2:0", "N must be >= 1"),
    ("mass=" + ",".join(["1"] * (MAX_AXIS_VALUES + 1)), "at most 1,000,000 values"),
])
def test_long_bad_grid_specs_are_refused_with_a_short_message(spec, match):
    with pytest.raises(ValueError, match=match) as err:
        parse_grid([spec])
    assert len(one_line(err.value)) < 400


def test_the_command_line_refuses_a_long_grid_before_loading_runs(tmp_path):
    with pytest.raises(SystemExit) as err:
        main(["robustness", str(tmp_path / "none"), "--grid", "mass=" + "1" * 100_000 + "x"])
    assert one_line(err.value).startswith("maxent robustness: grid spec")


def test_numbers_are_recognised_exactly_as_the_grid_syntax_says():
    import itertools
    import re

    from maxent.cli.robustness import _is_number

    syntax = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
    for k in range(6):
        for chars in itertools.product("1.eE-+x\u0663", repeat=k):  # \u0663: an Arabic-Indic 3
            text = "".join(chars)
            assert _is_number(text) == bool(syntax.fullmatch(text)), text
