"""Uncertainty sets of physical parameters for Gymnasium's MuJoCo tasks, the wrapper that applies
them, meshes over them and domain randomisation: the evaluation protocol of RRLS (Zouitine et al.
2024, "RRLS: Robust Reinforcement Learning Suite"), whose 1D/2D/3D sets come from M2TD3 (Tanabe et
al., NeurIPS 2022). A method is scored by its worst case, mean and 10th percentile over a mesh of
the set; our mesh includes both ends of every range (RRLS's ``np.arange`` mesh leaves out the upper).

A parameter is named ``KIND:TARGET``:

=================  ========  ===================================================================
kind               target    what is set (``*``: every target of that kind)
=================  ========  ===================================================================
``mass``           body      ``body_mass`` in kg (inertia scaled by the same factor, see below)
``mass_scale``     body      factor on the nominal mass (and inertia)
``friction``       geom      tangential (sliding) friction ``geom_friction[:, 0]``
``friction_scale`` geom      factor on the nominal tangential friction
``damping``        joint     ``dof_damping`` of the joint's degrees of freedom (free joints: none)
``damping_scale``  joint     factor on the nominal damping
=================  ========  ===================================================================

Every setting is recomputed from a pristine copy of the model, so settings never compound and
:meth:`PhysicsPerturbation.restore` brings back the nominal model bit for bit.
"""

from __future__ import annotations

import difflib
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from maxent.training.vector import make_env

__all__ = [
    "KINDS",
    "UNCERTAINTY_SETS",
    "DomainRandomization",
    "PhysicsPerturbation",
    "UncertaintySet",
    "default_uncertainty_set",
    "domain_randomized_id",
    "make_domain_randomized",
    "mesh",
    "mesh_axes",
    "parse_parameter",
    "register_domain_randomized",
    "set_of_domain_randomized_id",
    "uncertainty_set",
]

# kind -> (model element it targets, lowest allowed value, whether the lowest is excluded)
KINDS: dict[str, tuple[str, float, bool]] = {
    "mass": ("body", 0.0, True),
    "mass_scale": ("body", 0.0, True),
    "friction": ("geom", 0.0, False),
    "friction_scale": ("geom", 0.0, False),
    "damping": ("joint", 0.0, False),
    "damping_scale": ("joint", 0.0, False),
}
_FIELDS = ("body_mass", "body_inertia", "body_subtreemass", "geom_friction", "dof_damping")


def parse_parameter(name: str) -> tuple[str, str]:
    """Split ``"mass:torso"`` into ``("mass", "torso")``; raises naming the valid kinds."""
    kind, sep, target = str(name).partition(":")
    if not sep or not target or kind not in KINDS:
        raise ValueError(f"parameter {name!r} is not KIND:TARGET with KIND one of {list(KINDS)} "
                         "(e.g. 'mass:torso', 'friction:floor', 'friction:*', 'damping:thigh_joint')")
    return kind, target


def _check_value(name: str, value: float) -> float:
    kind, _ = parse_parameter(name)
    _, lowest, strict = KINDS[kind]
    value = float(value)
    if not math.isfinite(value) or value < lowest or (strict and value == lowest):
        raise ValueError(f"{name} must be finite and {'>' if strict else '>='} {lowest:g}, got {value}")
    return value


# --------------------------------------------------------------------------- uncertainty sets


@dataclass(frozen=True)
class UncertaintySet:
    """A box of physical parameters of one task: ``ranges`` is ``((parameter, low, high), ...)``.

    Args:
        name: how the set is looked up (e.g. ``"hopper-2d"``).
        task: the Gymnasium id it applies to (e.g. ``"Hopper-v5"``).
        ranges: ordered (parameter, low, high); each low <= high, values valid for the kind.
        source: where the ranges come from.
    """

    name: str
    task: str
    ranges: tuple[tuple[str, float, float], ...]
    source: str = ""

    def __post_init__(self) -> None:
        ranges = tuple((str(p), float(lo), float(hi)) for p, lo, hi in self.ranges)
        if not ranges:
            raise ValueError(f"uncertainty set {self.name!r} needs at least one parameter range")
        seen = set()
        for param, low, high in ranges:
            if param in seen:
                raise ValueError(f"uncertainty set {self.name!r} lists {param!r} twice")
            seen.add(param)
            _check_value(param, low)
            _check_value(param, high)
            if low > high:
                raise ValueError(f"uncertainty set {self.name!r}: range of {param} has low {low:g} "
                                 f"> high {high:g}; write it as ({high:g}, {low:g})")
        object.__setattr__(self, "ranges", ranges)

    @classmethod
    def custom(cls, task: str, bounds: Mapping[str, Sequence[float]], name: str | None = None,
               source: str = "custom") -> UncertaintySet:
        """A set from ``{"mass:torso": (1.0, 9.0), ...}`` (order kept)."""
        ranges = []
        for param, bound in bounds.items():
            if len(bound) != 2:
                raise ValueError(f"range of {param} must be (low, high), got {bound!r}")
            ranges.append((param, bound[0], bound[1]))
        return cls(name or f"{task}-custom", task, tuple(ranges), source)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p for p, _, _ in self.ranges)

    @property
    def low(self) -> np.ndarray:
        return np.array([lo for _, lo, _ in self.ranges])

    @property
    def high(self) -> np.ndarray:
        return np.array([hi for _, _, hi in self.ranges])

    @property
    def dim(self) -> int:
        return len(self.ranges)

    def bounds(self) -> dict[str, tuple[float, float]]:
        return {p: (lo, hi) for p, lo, hi in self.ranges}

    def contains(self, params: Mapping[str, float]) -> bool:
        """Whether ``params`` names exactly this set's parameters, each within its range."""
        return set(params) == set(self.names) and all(
            lo <= params[p] <= hi for p, lo, hi in self.ranges)

    def sample(self, rng: np.random.Generator) -> dict[str, float]:
        """One uniform draw from the box (in ``ranges`` order, one ``rng.uniform`` per parameter)."""
        return {p: float(rng.uniform(lo, hi)) if hi > lo else lo for p, lo, hi in self.ranges}

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "task": self.task,
                "ranges": [[p, lo, hi] for p, lo, hi in self.ranges], "source": self.source}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> UncertaintySet:
        return cls(data["name"], data["task"], tuple(tuple(r) for r in data["ranges"]),
                   data.get("source", ""))


def _rrls(name: str, task: str, source: str, *ranges: tuple[str, float, float]) -> UncertaintySet:
    return UncertaintySet(name, task, ranges, f"RRLS {source} (SuReLI/RRLS@0c43dc9)")


# RRLS's parameter ranges (SuReLI/RRLS, rrls/envs/*.py, the *ParamsBound enums, commit 0c43dc9,
# 2024-12-24), as absolute values. RRLS's names -> ours: worldfriction -> friction of the floor geom
# (Hopper, Walker2d write geom_friction[0, 0]) or of every geom (HalfCheetah writes geom_friction[:, 0]);
# <body>mass -> mass:<Gymnasium body name> (same body index RRLS writes). Nominal values (v5 models):
# Hopper torso 3.67 and thigh 4.06 kg lie above their sets' upper bounds, as in RRLS.
_SETS = [
    _rrls("halfcheetah-1d", "HalfCheetah-v5", "half_cheetah.py ONE_DIM",
          ("friction:*", 0.1, 3.0)),
    _rrls("halfcheetah-2d", "HalfCheetah-v5", "half_cheetah.py TWO_DIM",
          ("friction:*", 0.1, 4.0), ("mass:torso", 0.1, 7.0)),
    _rrls("halfcheetah-3d", "HalfCheetah-v5", "half_cheetah.py THREE_DIM",
          ("friction:*", 0.1, 4.0), ("mass:torso", 0.1, 7.0), ("mass:bthigh", 0.1, 3.0)),
    _rrls("hopper-1d", "Hopper-v5", "hopper.py ONE_DIM", ("friction:floor", 0.1, 3.0)),
    _rrls("hopper-2d", "Hopper-v5", "hopper.py TWO_DIM",
          ("friction:floor", 0.1, 3.0), ("mass:torso", 0.1, 3.0)),
    _rrls("hopper-3d", "Hopper-v5", "hopper.py THREE_DIM",
          ("friction:floor", 0.1, 3.0), ("mass:torso", 0.1, 3.0), ("mass:thigh", 0.1, 4.0)),
    _rrls("walker2d-1d", "Walker2d-v5", "walker.py ONE_DIM", ("friction:floor", 0.1, 4.0)),
    _rrls("walker2d-2d", "Walker2d-v5", "walker.py TWO_DIM",
          ("friction:floor", 0.1, 4.0), ("mass:torso", 0.1, 5.0)),
    _rrls("walker2d-3d", "Walker2d-v5", "walker.py THREE_DIM",
          ("friction:floor", 0.1, 4.0), ("mass:torso", 0.1, 5.0), ("mass:thigh", 0.1, 6.0)),
    _rrls("ant-1d", "Ant-v5", "ant.py ONE_DIM", ("mass:torso", 0.1, 3.0)),
    _rrls("ant-2d", "Ant-v5", "ant.py TWO_DIM",
          ("mass:torso", 0.1, 3.0), ("mass:front_left_leg", 0.01, 3.0)),
    _rrls("ant-3d", "Ant-v5", "ant.py THREE_DIM", ("mass:torso", 0.1, 3.0),
          ("mass:front_left_leg", 0.01, 3.0), ("mass:front_right_leg", 0.01, 3.0)),
    _rrls("invertedpendulum-1d", "InvertedPendulum-v5", "pendulum.py ONE_DIM",
          ("mass:pole", 1.0, 31.0)),
    _rrls("invertedpendulum-2d", "InvertedPendulum-v5", "pendulum.py TWO_DIM",
          ("mass:pole", 1.0, 31.0), ("mass:cart", 1.0, 11.0)),
    _rrls("humanoidstandup-1d", "HumanoidStandup-v5", "humanoid.py ONE_DIM",
          ("mass:torso", 0.1, 16.0)),
    _rrls("humanoidstandup-2d", "HumanoidStandup-v5", "humanoid.py TWO_DIM",
          ("mass:torso", 0.1, 16.0), ("mass:right_foot", 0.1, 8.0)),
    _rrls("humanoidstandup-3d", "HumanoidStandup-v5", "humanoid.py THREE_DIM",
          ("mass:torso", 0.1, 16.0), ("mass:left_thigh", 0.1, 5.0), ("mass:right_foot", 0.1, 8.0)),
]
UNCERTAINTY_SETS: dict[str, UncertaintySet] = {s.name: s for s in _SETS}


def uncertainty_set(which: str | UncertaintySet) -> UncertaintySet:
    """The named set (or ``which`` itself); raises listing the valid names."""
    if isinstance(which, UncertaintySet):
        return which
    if which in UNCERTAINTY_SETS:
        return UNCERTAINTY_SETS[which]
    close = difflib.get_close_matches(str(which), list(UNCERTAINTY_SETS), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"unknown uncertainty set {which!r}{hint}; valid sets: {sorted(UNCERTAINTY_SETS)}")


def default_uncertainty_set(task: str, dim: int = 2) -> UncertaintySet:
    """The task's RRLS set of ``dim`` dimensions (the largest it has when ``dim`` exceeds them)."""
    sets = sorted((s for s in _SETS if s.task == task), key=lambda s: s.dim)
    if not sets:
        tasks = sorted({s.task for s in _SETS})
        raise ValueError(f"no uncertainty set for task {task!r}; tasks with sets: {tasks}. Give one "
                         "with UncertaintySet.custom(task, {'mass:torso': (low, high)})")
    fitting = [s for s in sets if s.dim <= dim]
    return fitting[-1] if fitting else sets[0]


def mesh_axes(uset: str | UncertaintySet, points_per_dim: int = 10) -> dict[str, np.ndarray]:
    """``{parameter: values}``: ``points_per_dim`` evenly spaced values from low to high, both
    included (a range with low == high gives its one value)."""
    uset = uncertainty_set(uset)
    if int(points_per_dim) != points_per_dim or points_per_dim < 2:
        raise ValueError(f"points_per_dim must be an integer >= 2 so that the mesh holds both bounds "
                         f"of every range, got {points_per_dim!r}")
    return {p: np.array([lo]) if lo == hi else np.linspace(lo, hi, int(points_per_dim))
            for p, lo, hi in uset.ranges}


def mesh(uset: str | UncertaintySet, points_per_dim: int = 10) -> list[dict[str, float]]:
    """Every point of the mesh (``points_per_dim ** dim`` of them), the last parameter varying
    fastest; each point is ``{parameter: value}``. Unlike RRLS's mesh, both bounds are in it."""
    axes = mesh_axes(uset, points_per_dim)
    return [dict(zip(axes, map(float, values))) for values in itertools.product(*axes.values())]


# --------------------------------------------------------------------------- the wrapper


def _mujoco_model(env: gym.Env) -> tuple[Any, Any]:
    base = env.unwrapped
    model, data = getattr(base, "model", None), getattr(base, "data", None)
    if model is None or data is None or not hasattr(model, "body_mass"):
        raise ValueError(f"{type(base).__name__} is not a Gymnasium MuJoCo env (no model/data); "
                         "physical parameters can be set on one only, e.g. gym.make('Hopper-v5')")
    return model, data


def _names(model: Any, element: str) -> list[str]:
    count = {"body": model.nbody, "geom": model.ngeom, "joint": model.njnt}[element]
    first = 1 if element == "body" else 0  # body 0 is the world
    getter = getattr(model, element)
    return [getter(i).name for i in range(first, count)]


def _resolve(model: Any, name: str) -> tuple[str, np.ndarray]:
    """(kind, indices into the field the kind writes) for a parameter of this model."""
    import mujoco

    kind, target = parse_parameter(name)
    element = KINDS[kind][0]
    obj = {"body": mujoco.mjtObj.mjOBJ_BODY, "geom": mujoco.mjtObj.mjOBJ_GEOM,
           "joint": mujoco.mjtObj.mjOBJ_JOINT}[element]
    if target == "*":
        count = {"body": model.nbody, "geom": model.ngeom, "joint": model.njnt}[element]
        found = list(range(1 if element == "body" else 0, count))
    else:
        index = mujoco.mj_name2id(model, obj, target)
        if index < 0 or (element == "body" and index == 0):
            valid = [n for n in _names(model, element) if n]
            close = difflib.get_close_matches(target, valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            plural = "bodies" if element == "body" else f"{element}s"
            raise ValueError(f"parameter {name!r}: no {element} named {target!r} in this model{hint};"
                             f" valid {plural}: {valid} (or '*' for all)")
        found = [index]
    if element != "joint":
        return kind, np.asarray(found, dtype=np.int64)
    free = int(mujoco.mjtJoint.mjJNT_FREE)
    if target != "*" and int(model.jnt_type[found[0]]) == free:
        raise ValueError(f"parameter {name!r}: joint {target!r} is a free joint; damping applies "
                         "to hinge, slide and ball joints")
    width = {int(mujoco.mjtJoint.mjJNT_BALL): 3, int(mujoco.mjtJoint.mjJNT_SLIDE): 1,
             int(mujoco.mjtJoint.mjJNT_HINGE): 1}
    dofs = [int(model.jnt_dofadr[j]) + k for j in found if int(model.jnt_type[j]) != free
            for k in range(width[int(model.jnt_type[j])])]
    return kind, np.asarray(dofs, dtype=np.int64)


class PhysicsPerturbation(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Set named physical parameters (``KIND:TARGET``, see the module docstring) of a MuJoCo task.

    Observation, action, reward and termination are the wrapped task's. The model's ``body_mass``,
    ``body_inertia``, ``body_subtreemass``, ``geom_friction`` and ``dof_damping`` are recomputed
    from a pristine copy at every change, so only the named elements differ from nominal, and
    :meth:`restore` (also run by :meth:`close`) puts them back bit for bit. Derived constants that
    MuJoCo computes once at compile time (``body_invweight0``, used to scale constraint softness)
    stay nominal, as in RRLS and dm_control.

    Args:
        env: a Gymnasium MuJoCo env.
        params: ``{parameter: value}`` to apply now (``None``: nominal).
        scale_inertia: a mass change scales the body's inertia by the same factor (same shape,
            denser material), as :class:`~maxent.envs.adversarial.MassFrictionPerturbation` does;
            ``False`` changes the mass alone, as RRLS does.

    ``reset(options={"params": {...}})`` sets parameters before the episode starts (they stay for
    later episodes); ``info["params"]`` holds the values in force.
    """

    def __init__(self, env: gym.Env, params: Mapping[str, float] | None = None,
                 scale_inertia: bool = True):
        gym.utils.RecordConstructorArgs.__init__(self, params=dict(params or {}),
                                                 scale_inertia=scale_inertia)
        gym.Wrapper.__init__(self, env)
        self.model, self.data = _mujoco_model(env)
        self.scale_inertia = bool(scale_inertia)
        self._pristine = {f: getattr(self.model, f).copy() for f in _FIELDS}
        self._resolved: dict[str, tuple[str, np.ndarray]] = {}
        self.params: dict[str, float] = {}
        self.set_params(params or {})

    def resolve(self, names: Iterable[str]) -> None:
        """Check that every parameter names elements of this model (raises naming the valid ones)
        and that no two of them set the same element."""
        owner: dict[tuple[str, int], str] = {}
        for name in names:
            if name not in self._resolved:
                kind, ids = _resolve(self.model, name)
                if kind.startswith("mass") and np.any(self._pristine["body_mass"][ids] <= 0):
                    raise ValueError(f"parameter {name!r} covers a massless body; set named bodies")
                self._resolved[name] = (kind, ids)
            kind, ids = self._resolved[name]
            field = KINDS[kind][0]
            for i in ids.tolist():
                other = owner.setdefault((field, i), name)
                if other != name:
                    raise ValueError(f"parameters {other!r} and {name!r} both set {field} {i}; "
                                     "give each element one parameter")

    def nominal(self, name: str) -> np.ndarray:
        """The pristine values that parameter ``name`` replaces (kg, friction or damping), per element."""
        self.resolve([name])
        kind, ids = self._resolved[name]
        field = {"body": "body_mass", "geom": "geom_friction", "joint": "dof_damping"}[KINDS[kind][0]]
        values = self._pristine[field][ids]
        return values[:, 0].copy() if field == "geom_friction" else values.copy()

    def set_params(self, params: Mapping[str, float] | None = None, **kwargs: float) -> None:
        """Make the model nominal except for ``params`` (a mapping or keywords are both accepted;
        keywords cannot hold the colon, so use the mapping for ``KIND:TARGET`` names)."""
        new = {**(params or {}), **kwargs}
        checked = {name: _check_value(name, value) for name, value in new.items()}
        self.resolve(checked)
        self.params = checked
        self._apply()

    def get_params(self) -> dict[str, float]:
        return dict(self.params)

    def _apply(self) -> None:
        pristine, model = self._pristine, self.model
        mass = pristine["body_mass"].copy()
        inertia = pristine["body_inertia"].copy()
        friction = pristine["geom_friction"].copy()
        damping = pristine["dof_damping"].copy()
        for name, value in self.params.items():
            kind, ids = self._resolved[name]
            if kind in ("mass", "mass_scale"):
                new = np.full(len(ids), value) if kind == "mass" else pristine["body_mass"][ids] * value
                if self.scale_inertia:
                    inertia[ids] = pristine["body_inertia"][ids] * (new / pristine["body_mass"][ids])[:, None]
                mass[ids] = new
            elif kind == "friction":
                friction[ids, 0] = value
            elif kind == "friction_scale":
                friction[ids, 0] = pristine["geom_friction"][ids, 0] * value
            elif kind == "damping":
                damping[ids] = value
            else:
                damping[ids] = pristine["dof_damping"][ids] * value
        if any(KINDS[self._resolved[n][0]][0] == "body" for n in self.params):
            subtree = mass.copy()  # as MuJoCo's compiler: each body's mass plus its descendants'
            for i in range(model.nbody - 1, 0, -1):
                subtree[model.body_parentid[i]] += subtree[i]
        else:
            subtree = pristine["body_subtreemass"]
        model.body_mass[:] = mass
        model.body_inertia[:] = inertia
        model.body_subtreemass[:] = subtree
        model.geom_friction[:] = friction
        model.dof_damping[:] = damping

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Reset the task; ``options["params"]`` (a mapping) is applied first."""
        options = dict(options or {})
        if "params" in options:
            self.set_params(options.pop("params"))
        obs, info = self.env.reset(seed=seed, options=options or None)
        return obs, dict(info, params=self.get_params())

    def restore(self) -> None:
        """Put every field this wrapper writes back to its pristine value (bitwise)."""
        self.params = {}
        for field in _FIELDS:
            getattr(self.model, field)[:] = self._pristine[field]

    def close(self) -> None:
        self.restore()
        super().close()


# --------------------------------------------------------------------------- domain randomisation


class DomainRandomization(PhysicsPerturbation):
    """Domain randomisation over an uncertainty set: each reset draws every parameter uniformly in
    its range from the env's own seeded ``np_random`` (after the task's reset, so ``reset(seed=s)``
    always gives the same parameters and start state, and a resumed run replays them exactly).

    Args:
        env: a Gymnasium MuJoCo env, or its id (then ``make_kwargs`` go to ``gymnasium.make``).
        uncertainty: an :class:`UncertaintySet`, a set name (:data:`UNCERTAINTY_SETS`), or
            ``{parameter: (low, high)}``.
        scale_inertia: as in :class:`PhysicsPerturbation`.

    ``reset(options={"params": {...}})`` plays those parameters instead of a draw (evaluation);
    ``info["params"]`` holds the episode's values.
    """

    def __init__(self, env: gym.Env | str, uncertainty: str | UncertaintySet | Mapping[str, Sequence[float]],
                 scale_inertia: bool = True, **make_kwargs: Any):
        if isinstance(env, str):
            env = make_env(env, **make_kwargs)
        elif make_kwargs:
            raise ValueError("make kwargs apply to an env id only")
        task = env.spec.id if env.spec is not None else None
        if isinstance(uncertainty, Mapping) and "ranges" in uncertainty:
            uncertainty = UncertaintySet.from_json(uncertainty)  # as recorded in the env's spec
        elif isinstance(uncertainty, Mapping):
            uncertainty = UncertaintySet.custom(task or "custom", uncertainty)
        self.uncertainty = uncertainty_set(uncertainty)
        if task is not None and self.uncertainty.task != task:
            raise ValueError(f"uncertainty set {self.uncertainty.name!r} is for "
                             f"{self.uncertainty.task}, but the env is {task}")
        # Recorded first: the first call wins, and the spec must rebuild this class, not its base.
        gym.utils.RecordConstructorArgs.__init__(self, uncertainty=self.uncertainty.to_json(),
                                                 scale_inertia=scale_inertia)
        super().__init__(env, scale_inertia=scale_inertia)
        self.resolve(self.uncertainty.names)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        import mujoco

        options = dict(options or {})
        chosen = options.pop("params", None)
        obs, info = self.env.reset(seed=seed, options=options or None)
        if chosen is None:
            chosen = self.uncertainty.sample(self.env.unwrapped.np_random)
        self.set_params(chosen)
        # The start state was computed under the old parameters: recompute what derives from them.
        mujoco.mj_forward(self.model, self.data)
        base = self.env.unwrapped
        if hasattr(base, "_get_obs") and self.env.observation_space == base.observation_space:
            obs = base._get_obs()
        return obs, dict(info, params=self.get_params())


DR_ID_PREFIX = "maxent/DomainRandomized-"


def domain_randomized_id(name: str) -> str:
    """The registered id of domain randomisation over a named set, registering it when missing:
    ``"hopper-2d"`` -> ``"maxent/DomainRandomized-hopper-2d-v0"``."""
    uncertainty_set(name)
    env_id = f"{DR_ID_PREFIX}{name}-v0"
    if env_id not in gym.registry:
        gym.register(env_id, entry_point="maxent.envs.uncertainty:make_domain_randomized",
                     kwargs={"uncertainty": name})
    return env_id


def register_domain_randomized() -> list[str]:
    """Register one domain-randomised id per named set (idempotent); returns the ids."""
    return [domain_randomized_id(name) for name in UNCERTAINTY_SETS]


def set_of_domain_randomized_id(env_id: str | None) -> UncertaintySet | None:
    """The set behind a domain-randomised id, ``None`` for any other id."""
    if not env_id or not env_id.startswith(DR_ID_PREFIX) or not env_id.endswith("-v0"):
        return None
    return UNCERTAINTY_SETS.get(env_id[len(DR_ID_PREFIX):-len("-v0")])


def make_domain_randomized(uncertainty: str = "hopper-2d", max_episode_steps: int | None = None,
                           **make_kwargs: Any) -> DomainRandomization:
    """Entry point of the domain-randomised ids: the set's task, randomised over the set."""
    uset = uncertainty_set(uncertainty)
    if max_episode_steps is not None:
        make_kwargs["max_episode_steps"] = int(max_episode_steps)
    return DomainRandomization(make_env(uset.task, **make_kwargs), uset)
