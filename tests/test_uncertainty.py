"""Uncertainty sets and physical perturbations (envs/uncertainty.py): a parameter changes exactly the
model elements it names and nothing else, everything comes back bit for bit, the mesh holds both
bounds of every range, domain randomisation draws inside the set from the env's seeded RNG (so
runs replay), the RRLS sets resolve on their tasks, and bad input is named."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from maxent.envs.uncertainty import (
    UNCERTAINTY_SETS,
    DomainRandomization,
    PhysicsPerturbation,
    UncertaintySet,
    default_uncertainty_set,
    domain_randomized_id,
    mesh,
    mesh_axes,
    uncertainty_set,
)


def model_arrays(model) -> dict[str, np.ndarray]:
    """Every numeric array of an MjModel, copied."""
    out = {}
    for name in dir(model):
        if name.startswith("_"):
            continue
        value = getattr(model, name)
        if isinstance(value, np.ndarray) and value.dtype != object:
            out[name] = value.copy()
    return out


def changed(before: dict, model) -> dict[str, np.ndarray]:
    """field -> indices of rows that differ from ``before``."""
    out = {}
    for name, old in before.items():
        new = getattr(model, name)
        if not np.array_equal(old, new):
            diff = (old != new).reshape(len(old), -1).any(axis=1) if old.ndim else np.array([True])
            out[name] = np.flatnonzero(diff)
    return out


def test_named_parameters_change_exactly_their_elements_and_restore_bitwise():
    env = PhysicsPerturbation(gym.make("Hopper-v5"))
    model = env.model
    before = model_arrays(model)
    torso, floor = model.body("torso").id, model.geom("floor").id
    thigh_dof = model.jnt_dofadr[model.joint("thigh_joint").id]
    env.set_params({"mass:torso": 1.0, "friction:floor": 0.3, "damping:thigh_joint": 2.5})
    diff = changed(before, model)
    assert set(diff) == {"body_mass", "body_inertia", "body_subtreemass", "geom_friction", "dof_damping"}
    assert diff["body_mass"].tolist() == [torso]
    assert diff["body_inertia"].tolist() == [torso]
    assert diff["body_subtreemass"].tolist() == [0, torso]       # the torso and its ancestor
    assert diff["geom_friction"].tolist() == [floor]
    assert diff["dof_damping"].tolist() == [thigh_dof]
    assert model.body_mass[torso] == 1.0 and model.geom_friction[floor, 0] == 0.3
    assert model.geom_friction[floor, 1] == before["geom_friction"][floor, 1]  # torsional kept
    ratio = 1.0 / before["body_mass"][torso]
    np.testing.assert_allclose(model.body_inertia[torso], before["body_inertia"][torso] * ratio)
    np.testing.assert_allclose(model.body_subtreemass[0], before["body_subtreemass"][0] - 1 / ratio + 1)

    # Setting other parameters puts the first ones back exactly (nothing compounds).
    env.set_params({"mass:thigh": 2.0})
    diff = changed(before, model)
    assert diff["body_mass"].tolist() == [model.body("thigh").id]
    assert "geom_friction" not in diff and "dof_damping" not in diff
    # A reset with no parameters, restore() and close() all give the pristine model bitwise.
    env.reset(seed=0, options={"params": {}})
    assert changed(before, model) == {}
    env.set_params({"friction_scale:*": 2.0, "damping_scale:*": 0.5, "mass_scale:*": 3.0})
    np.testing.assert_allclose(model.geom_friction[:, 0], 2 * before["geom_friction"][:, 0])
    np.testing.assert_allclose(model.dof_damping, 0.5 * before["dof_damping"])
    np.testing.assert_allclose(model.body_subtreemass, 3 * before["body_subtreemass"])
    env.restore()
    assert changed(before, model) == {}
    env.set_params({"mass:torso": 9.0})
    env.close()
    assert changed(before, model) == {}


def test_parameters_change_the_dynamics_and_reset_info_reports_them():
    env = PhysicsPerturbation(gym.make("Hopper-v5"))

    def rollout(params):
        obs, info = env.reset(seed=0, options={"params": params})
        states = [obs]
        for _ in range(40):
            states.append(env.step(np.full(3, 0.5))[0])
        return np.array(states), info

    nominal, info = rollout({})
    assert info["params"] == {}
    heavy, info = rollout({"mass:torso": 8.0})
    assert info["params"] == {"mass:torso": 8.0}
    assert np.abs(heavy - nominal).max() > 1e-2
    again, _ = rollout({})
    assert np.array_equal(again, nominal)   # back to nominal: the same trajectory bit for bit
    env.close()


def test_mesh_holds_both_bounds_of_every_range():
    uset = uncertainty_set("hopper-2d")
    points = mesh(uset, 3)
    assert len(points) == 9
    assert points[0] == {"friction:floor": 0.1, "mass:torso": 0.1}
    assert points[-1] == {"friction:floor": 3.0, "mass:torso": 3.0}
    axes = mesh_axes("invertedpendulum-2d", 10)
    for (param, low, high), values in zip(UNCERTAINTY_SETS["invertedpendulum-2d"].ranges, axes.values()):
        assert values[0] == low and values[-1] == high and len(values) == 10
    # RRLS's np.arange(low, high, (high - low) / 10) would stop short of the upper bound:
    assert np.arange(1.0, 31.0, 3.0).max() < 31.0 <= max(p["mass:pole"] for p in mesh("invertedpendulum-1d"))
    single = UncertaintySet.custom("Hopper-v5", {"mass:torso": (2.0, 2.0), "friction:floor": (0.5, 1.5)})
    assert mesh(single, 4) == [{"mass:torso": 2.0, "friction:floor": f} for f in np.linspace(0.5, 1.5, 4)]
    with pytest.raises(ValueError, match="points_per_dim must be an integer >= 2"):
        mesh(uset, 1)


def test_rrls_sets_resolve_on_their_tasks():
    tasks = {"HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Ant-v5", "InvertedPendulum-v5",
             "HumanoidStandup-v5"}
    assert {s.task for s in UNCERTAINTY_SETS.values()} == tasks
    assert len(UNCERTAINTY_SETS) == 17   # 1-D, 2-D, 3-D each; InvertedPendulum has 1-D and 2-D
    for task in sorted(tasks):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            env = PhysicsPerturbation(gym.make(task))
        for uset in (s for s in UNCERTAINTY_SETS.values() if s.task == task):
            env.resolve(uset.names)
            env.set_params(dict(zip(uset.names, uset.high)))
            env.reset(seed=0)
        env.close()
    assert uncertainty_set("hopper-3d").bounds() == {"friction:floor": (0.1, 3.0),
                                                   "mass:torso": (0.1, 3.0), "mass:thigh": (0.1, 4.0)}
    assert uncertainty_set("halfcheetah-2d").bounds() == {"friction:*": (0.1, 4.0), "mass:torso": (0.1, 7.0)}
    assert default_uncertainty_set("Walker2d-v5").name == "walker2d-2d"
    assert default_uncertainty_set("InvertedPendulum-v5", dim=3).name == "invertedpendulum-2d"


def test_domain_randomization_draws_inside_the_set_reproducibly():
    env = DomainRandomization("Hopper-v5", "hopper-3d")
    uset = env.uncertainty
    torso = env.model.body("torso").id
    draws = []
    for seed in range(40):
        _, info = env.reset(seed=seed)
        assert uset.contains(info["params"]), info["params"]
        assert env.model.body_mass[torso] == info["params"]["mass:torso"]
        draws.append(list(info["params"].values()))
    draws = np.array(draws)
    assert np.all(draws.min(axis=0) < uset.low + 0.3 * (uset.high - uset.low))
    assert np.all(draws.max(axis=0) > uset.high - 0.3 * (uset.high - uset.low))
    first, info = env.reset(seed=3)
    again, info_again = env.reset(seed=3)
    assert info["params"] == info_again["params"] and np.array_equal(first, again)
    _, unseeded = env.reset()            # continues the seeded stream: a new draw
    assert unseeded["params"] != info["params"]
    _, fixed = env.reset(seed=0, options={"params": {"mass:torso": 2.0}})
    assert fixed["params"] == {"mass:torso": 2.0}     # evaluation: the given values, no draw
    env.close()


def test_wrappers_pass_gymnasiums_env_checker():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unbounded Box observations are the task's own
        check_env(PhysicsPerturbation(gym.make("Hopper-v5"), {"mass:torso": 2.0}),
                  skip_render_check=True)
        check_env(DomainRandomization("InvertedPendulum-v5", "invertedpendulum-2d"),
                  skip_render_check=True)
        made = gym.make(domain_randomized_id("invertedpendulum-1d"), max_episode_steps=20)
        assert isinstance(made.unwrapped.model, object)
        _, info = made.reset(seed=0)
        assert uncertainty_set("invertedpendulum-1d").contains(info["params"])


@pytest.mark.parametrize("make,match", [
    (lambda: uncertainty_set("hopper-4d"), r"unknown uncertainty set 'hopper-4d'.*valid sets: \["),
    (lambda: UncertaintySet.custom("Hopper-v5", {"mass:torso": (3.0, 1.0)}),
     r"range of mass:torso has low 3 > high 1"),
    (lambda: UncertaintySet.custom("Hopper-v5", {"gravity:torso": (1.0, 2.0)}),
     r"parameter 'gravity:torso' is not KIND:TARGET with KIND one of \['mass'"),
    (lambda: UncertaintySet.custom("Hopper-v5", {"mass:torso": (0.0, 2.0)}), r"mass:torso must be finite and > 0"),
    (lambda: PhysicsPerturbation(gym.make("Hopper-v5"), {"mass:torsoo": 1.0}),
     r"no body named 'torsoo'.*did you mean 'torso'.*valid bodies: \['torso', 'thigh', 'leg', 'foot'\]"),
    (lambda: PhysicsPerturbation(gym.make("Hopper-v5"), {"friction:*": 1.0, "friction:floor": 0.5}),
     r"both set geom 0"),
    (lambda: PhysicsPerturbation(gym.make("Ant-v5"), {"damping:root": 1.0}), r"'root' is a free joint"),
    (lambda: DomainRandomization("Walker2d-v5", "hopper-2d"), r"'hopper-2d' is for Hopper-v5, but the env is Walker2d-v5"),
    (lambda: default_uncertainty_set("Pendulum-v1"), r"no uncertainty set for task 'Pendulum-v1'"),
])
def test_bad_input_is_named(make, match):
    with pytest.raises(ValueError, match=match):
        make()
