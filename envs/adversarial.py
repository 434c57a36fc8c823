"""Two-player zero-sum MuJoCo tasks and a mass/friction perturbation wrapper, for QARL (Reddi et al.,
ICLR 2024, "Robust Adversarial RL via Bounded Rationality Curricula") and RARL (Pinto et al. 2017).

The adversary pushes named bodies of a Gymnasium MuJoCo task with bounded forces written to
``data.xfrc_applied`` before every step; its reward is minus the protagonist's. Each player sees the
game through an ordinary Gymnasium env (:meth:`AdversarialMujoco.protagonist_view`,
:meth:`AdversarialMujoco.adversary_view`) in which the other player is a fixed policy.
:class:`MassFrictionPerturbation` changes body masses and geom friction for robustness grids and
domain randomisation, always recomputing them from the pristine model so nothing drifts.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from maxent.training.vector import make_env

__all__ = [
    "TASKS",
    "AdversarialMujoco",
    "MassFrictionPerturbation",
    "PlayerView",
    "TaskDefaults",
    "task_defaults",
]


@dataclass(frozen=True)
class TaskDefaults:
    """Per-task settings from the QARL paper (forces) and its robustness grids.

    Args:
        bodies: bodies the adversary pushes (Fx, Fz on each).
        max_force: bound on each force component in newtons.
        torso: the body whose mass the robustness grid's ``mass`` axis sets.
        mass: (low, high) torso mass in kg of the paper's 11-point grid.
        friction: (low, high) tangential friction of all geoms of the grid.
        performance_bound: discounted protagonist return the self-paced teacher needs before it moves
            the curriculum. The paper's values (cheetah 10, walker 10, hopper 1) are for dm_control's
            [0, 1] rewards; these are rescaled by us to Gymnasium's reward scale (not from the paper).
    """

    bodies: tuple[str, ...]
    max_force: float
    torso: str
    mass: tuple[float, float]
    friction: tuple[float, float]
    performance_bound: float


TASKS: dict[str, TaskDefaults] = {
    "HalfCheetah-v5": TaskDefaults(("torso", "bfoot", "ffoot"), 1.0, "torso", (3.0, 9.0),
                                   (0.1, 1.9), 100.0),
    "Hopper-v5": TaskDefaults(("foot",), 1.0, "torso", (1.0, 9.0), (0.1, 1.9), 50.0),
    "Walker2d-v5": TaskDefaults(("foot", "foot_left"), 1.0, "torso", (5.0, 15.0), (0.1, 1.3), 50.0),
    # A cheap task for tests and smoke runs (not in the paper): a push on the pole.
    "InvertedPendulum-v5": TaskDefaults(("pole",), 1.0, "pole", (2.0, 10.0), (0.1, 1.9), 20.0),
}


def task_defaults(task: str) -> TaskDefaults:
    """The :class:`TaskDefaults` of a Gymnasium id; raises naming the known tasks otherwise."""
    if task in TASKS:
        return TASKS[task]
    raise ValueError(
        f"no adversary defaults for task {task!r}; known tasks: {sorted(TASKS)}. Pass bodies=... "
        "and max_force=... explicitly for another MuJoCo task")


def _mujoco_parts(env: gym.Env) -> tuple[Any, Any]:
    base = env.unwrapped
    model, data = getattr(base, "model", None), getattr(base, "data", None)
    if model is None or data is None or not hasattr(data, "xfrc_applied"):
        raise ValueError(
            f"{type(base).__name__} is not a Gymnasium MuJoCo env (no model/data); adversarial "
            "forces and mass/friction perturbations need one, e.g. gym.make('Hopper-v5')")
    return model, data


def _body_ids(model: Any, names: Sequence[str], what: str) -> np.ndarray:
    import mujoco

    valid = [model.body(i).name for i in range(1, model.nbody)]  # 0 is the world
    ids = []
    for name in names:
        index = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, name)
        if index <= 0:
            close = difflib.get_close_matches(name, valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown body {name!r} in {what}{hint}; valid bodies: {valid}")
        ids.append(index)
    if len(set(ids)) != len(ids):
        raise ValueError(f"{what} names a body twice: {list(names)}")
    return np.asarray(ids, dtype=np.int64)


def _task_id(env: gym.Env) -> str | None:
    spec = env.spec
    return None if spec is None else spec.id


# --------------------------------------------------------------------------- the two-player game


class AdversarialMujoco:
    """Zero-sum game on a MuJoCo task: the protagonist acts as usual, the adversary pushes bodies.

    ============  ==================================================================================
    observation   the task's observation, plus the adversary temperature alpha as a last entry when
                  ``temperature_in_obs`` (both players see the same vector)
    protagonist   the task's action space
    adversary     Box(-max_force, max_force) of shape (2 * n_bodies,): (Fx, Fz) per body in the world
                  frame, at the body's centre of mass; with ``torque`` also a torque about y per body
                  (bound ``max_torque``), giving (3 * n_bodies,): [Fx, Fz, Ty] per body
    reward        the task's reward for the protagonist, minus it for the adversary (zero-sum)
    termination   the task's (e.g. an unhealthy hopper); truncation by its time limit
    ============  ==================================================================================

    Forces are clipped to their bounds, written to ``data.xfrc_applied`` before each step and held
    over the task's frame skip; a reset clears them.

    Args:
        task: a Gymnasium MuJoCo env id (e.g. ``"Hopper-v5"``) or an env built from one (possibly
            wrapped, e.g. in :class:`MassFrictionPerturbation`).
        bodies: names of the pushed bodies; ``None`` uses the task's defaults (:data:`TASKS`).
        max_force: bound on each force component in N, > 0; ``None`` uses the task default (1.0).
        torque: also let the adversary apply a torque about the y axis (planar tasks).
        max_torque: bound on that torque in N m, > 0; ``None`` uses ``max_force``.
        temperature_in_obs: append the adversary temperature to observations (QARL's conditioning).
        max_episode_steps: time limit when ``task`` is an id; ``None`` keeps the task's (1000).
        **make_kwargs: passed to ``gymnasium.make`` when ``task`` is an id.
    """

    def __init__(self, task: str | gym.Env = "Hopper-v5", bodies: Sequence[str] | None = None,
                 max_force: float | None = None, torque: bool = False,
                 max_torque: float | None = None, temperature_in_obs: bool = False,
                 max_episode_steps: int | None = None, **make_kwargs: Any):
        if isinstance(task, str):
            if max_episode_steps is not None:
                make_kwargs["max_episode_steps"] = int(max_episode_steps)
            self.env = make_env(task, **make_kwargs)
        elif isinstance(task, gym.Env):
            if max_episode_steps is not None or make_kwargs:
                raise ValueError("max_episode_steps and make kwargs apply to an env id only; wrap "
                                 "the env instance in gymnasium.wrappers.TimeLimit yourself")
            self.env = task
        else:
            raise TypeError(f"task must be an env id or a gymnasium.Env, got {type(task).__name__}")
        self.model, self.data = _mujoco_parts(self.env)
        self.task_id = _task_id(self.env)
        defaults = TASKS.get(self.task_id or "")
        if bodies is None:
            if defaults is None:
                raise ValueError(f"task {self.task_id!r} has no default adversary bodies; pass "
                                 f"bodies=[...] (known defaults: {sorted(TASKS)})")
            bodies = defaults.bodies
        if isinstance(bodies, str):
            bodies = (bodies,)
        if len(bodies) == 0:
            raise ValueError("bodies must name at least one body for the adversary to push")
        self.bodies = tuple(bodies)
        self.body_ids = _body_ids(self.model, self.bodies, "bodies")
        if max_force is None:
            max_force = defaults.max_force if defaults is not None else 1.0
        if not np.isfinite(max_force) or max_force <= 0:
            raise ValueError(f"max_force must be a finite force > 0 N, got {max_force}")
        self.max_force = float(max_force)
        self.torque = bool(torque)
        max_torque = self.max_force if max_torque is None else max_torque
        if not np.isfinite(max_torque) or max_torque <= 0:
            raise ValueError(f"max_torque must be a finite torque > 0 N m, got {max_torque}")
        self.max_torque = float(max_torque)
        self.temperature_in_obs = bool(temperature_in_obs)
        self.temperature = 0.0

        per_body = [self.max_force, self.max_force] + ([self.max_torque] if self.torque else [])
        high = np.tile(np.asarray(per_body, dtype=np.float32), len(self.bodies))
        self.adversary_action_space = gym.spaces.Box(-high, high, dtype=np.float32)
        self.protagonist_action_space = self.env.action_space
        task_space = self.env.observation_space
        if not isinstance(task_space, gym.spaces.Box) or len(task_space.shape) != 1:
            raise ValueError(f"the task needs a flat Box observation space, got {task_space}")
        self.task_observation_space = task_space
        if self.temperature_in_obs:
            low = np.append(task_space.low, 0.0).astype(task_space.dtype)
            high_obs = np.append(task_space.high, np.inf).astype(task_space.dtype)
            self.observation_space = gym.spaces.Box(low, high_obs, dtype=task_space.dtype)
        else:
            self.observation_space = task_space
        self._obs: np.ndarray | None = None

    # ----------------------------------------------------------------------- game API

    def _observe(self, task_obs: np.ndarray) -> np.ndarray:
        if not self.temperature_in_obs:
            return task_obs
        return np.append(task_obs, self.temperature).astype(self.observation_space.dtype)

    def set_temperature(self, alpha: float) -> None:
        """Set the adversary temperature reported in observations (the adversary's own alpha)."""
        alpha = float(alpha)
        if not np.isfinite(alpha) or alpha < 0:
            raise ValueError(f"temperature must be a finite alpha >= 0, got {alpha}")
        self.temperature = alpha
        if self._obs is not None and self.temperature_in_obs:
            self._obs[-1] = alpha

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Reset the task; ``options={"temperature": alpha}`` sets the episode's temperature."""
        options = dict(options or {})
        if "temperature" in options:
            self.set_temperature(options.pop("temperature"))
        obs, info = self.env.reset(seed=seed, options=options or None)
        self.data.xfrc_applied[:] = 0.0
        self._obs = self._observe(obs)
        return self._obs.copy(), info

    def apply_force(self, adversary_action: np.ndarray) -> np.ndarray:
        """Clip the adversary action and write it to ``xfrc_applied``; returns the clipped action."""
        action = np.asarray(adversary_action, dtype=np.float64).reshape(-1)
        space = self.adversary_action_space
        if action.shape != space.shape:
            raise ValueError(f"adversary action must have shape {space.shape} "
                             f"({'Fx, Fz, Ty' if self.torque else 'Fx, Fz'} per body of "
                             f"{list(self.bodies)}), got {action.shape}")
        action = np.clip(action, space.low, space.high)
        per_body = action.reshape(len(self.bodies), -1)
        wrench = np.zeros((len(self.bodies), 6))
        wrench[:, 0] = per_body[:, 0]            # Fx
        wrench[:, 2] = per_body[:, 1]            # Fz
        if self.torque:
            wrench[:, 4] = per_body[:, 2]        # torque about y (the planar tasks' hinge axis)
        self.data.xfrc_applied[:] = 0.0
        self.data.xfrc_applied[self.body_ids] = wrench
        return action

    def step(self, protagonist_action: np.ndarray, adversary_action: np.ndarray | None = None):
        """One step of both players; ``None`` for the adversary means no force.

        Returns ``(obs, protagonist_reward, terminated, truncated, info)``; ``info`` holds
        ``adversary_reward`` (= -protagonist_reward) and ``adversary_action`` (clipped).
        """
        if self._obs is None:
            raise RuntimeError("call reset() before step()")
        if adversary_action is None:
            adversary_action = np.zeros(self.adversary_action_space.shape, np.float32)
        applied = self.apply_force(adversary_action)
        obs, reward, terminated, truncated, info = self.env.step(protagonist_action)
        reward = float(reward)
        info = dict(info, adversary_reward=-reward, adversary_action=applied)
        self._obs = self._observe(obs)
        return self._obs.copy(), reward, bool(terminated), bool(truncated), info

    def close(self) -> None:
        self.env.close()

    # ----------------------------------------------------------------------- single-player views

    def protagonist_view(self, adversary_policy: Callable[[np.ndarray], np.ndarray] | None = None,
                         ) -> PlayerView:
        """A Gymnasium env for the protagonist; ``adversary_policy(obs) -> force`` (None: no force)."""
        return PlayerView(self, "protagonist", adversary_policy)

    def adversary_view(self, protagonist_policy: Callable[[np.ndarray], np.ndarray] | None = None,
                       ) -> PlayerView:
        """A Gymnasium env for the adversary (reward = -protagonist's); ``protagonist_policy(obs)``
        acts for the protagonist (None: zero action)."""
        return PlayerView(self, "adversary", protagonist_policy)


class PlayerView(gym.Env):
    """One player's Gymnasium env over an :class:`AdversarialMujoco` game; the other player is the
    fixed policy ``opponent(obs) -> action`` (``None``: zero action / no force).

    Observation: the game's. Action: the player's space. Reward: the player's (zero-sum).
    Termination and truncation: the task's. ``reset(options={"temperature": a})`` passes through.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, game: AdversarialMujoco, player: str,
                 opponent: Callable[[np.ndarray], np.ndarray] | None = None):
        if player not in ("protagonist", "adversary"):
            raise ValueError(f"player must be 'protagonist' or 'adversary', got {player!r}")
        self.game, self.player, self.opponent = game, player, opponent
        self.observation_space = game.observation_space
        if player == "protagonist":
            self.action_space = game.protagonist_action_space
            self._other_space = game.adversary_action_space
        else:
            self.action_space = game.adversary_action_space
            self._other_space = game.protagonist_action_space
        self._obs: np.ndarray | None = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._obs, info = self.game.reset(seed=seed, options=options)
        return self._obs.copy(), info

    def _other_action(self) -> np.ndarray:
        if self.opponent is None:
            return np.zeros(self._other_space.shape, dtype=self._other_space.dtype)
        action = self.opponent(self._obs)
        if isinstance(action, tuple):  # an SB3 model's predict
            action = action[0]
        return np.asarray(action, dtype=np.float32)

    def step(self, action):
        other = self._other_action()
        if self.player == "protagonist":
            obs, reward, terminated, truncated, info = self.game.step(action, other)
        else:
            obs, reward, terminated, truncated, info = self.game.step(other, action)
            reward = -reward
        self._obs = obs
        return obs.copy(), reward, terminated, truncated, info

    def close(self) -> None:
        self.game.close()


# --------------------------------------------------------------------------- perturbations


class MassFrictionPerturbation(gym.Wrapper):
    """Scale body masses and geom friction of a MuJoCo task; the nominal model comes back exactly.

    Observation, action, reward and termination are the wrapped task's. The model's
    ``body_mass``, ``body_inertia`` and ``geom_friction`` are recomputed from a pristine copy each
    time a perturbation is set (so perturbations never compound) and restored bit for bit by
    :meth:`restore` and :meth:`close`.

    Args:
        env: a Gymnasium MuJoCo env.
        mass_scale: factor on the mass (and inertia) of ``bodies``, > 0.
        friction_scale: factor on the tangential friction of every geom, >= 0.
        bodies: ``"torso"`` (the task's torso, see :data:`TASKS`; else a body named "torso"),
            ``"all"`` (every body), or a list of body names.
        mass: absolute mass in kg for each of ``bodies`` (overrides ``mass_scale``), > 0.
        friction: absolute tangential friction of every geom (overrides ``friction_scale``), >= 0.
        randomize: domain randomisation: ``{"mass_scale": (lo, hi), "friction_scale": (lo, hi)}``;
            each reset draws the listed factors uniformly from the env's seeded ``np_random``.
    """

    _KEYS = ("mass_scale", "friction_scale", "mass", "friction")

    def __init__(self, env: gym.Env, mass_scale: float = 1.0, friction_scale: float = 1.0,
                 bodies: str | Sequence[str] = "torso", mass: float | None = None,
                 friction: float | None = None,
                 randomize: dict[str, tuple[float, float]] | None = None):
        super().__init__(env)
        self.model, _ = _mujoco_parts(env)
        task = TASKS.get(_task_id(env) or "")
        if bodies == "all":
            self.body_ids = np.arange(1, self.model.nbody)
        else:
            if bodies == "torso":
                bodies = (task.torso if task is not None else "torso",)
            elif isinstance(bodies, str):
                bodies = (bodies,)
            self.body_ids = _body_ids(self.model, list(bodies), "bodies")
        self._nominal = {
            "body_mass": self.model.body_mass.copy(),
            "body_inertia": self.model.body_inertia.copy(),
            "geom_friction": self.model.geom_friction.copy(),
        }
        self.randomize = dict(randomize or {})
        for key, bounds in self.randomize.items():
            if key not in ("mass_scale", "friction_scale"):
                raise ValueError(f"randomize keys must be 'mass_scale' or 'friction_scale', got {key!r}")
            lo, hi = (float(b) for b in bounds)
            if not 0 <= lo <= hi or (key == "mass_scale" and lo <= 0):
                raise ValueError(f"randomize[{key!r}] must be (lo, hi) with 0 < lo <= hi, got {bounds}")
        self.settings = {"mass_scale": 1.0, "friction_scale": 1.0, "mass": None, "friction": None}
        self.set_perturbation(mass_scale=mass_scale, friction_scale=friction_scale, mass=mass,
                              friction=friction)

    @property
    def nominal_mass(self) -> np.ndarray:
        """Unperturbed masses of the perturbed bodies, shape (n_bodies,)."""
        return self._nominal["body_mass"][self.body_ids].copy()

    def set_perturbation(self, mass_scale: float | None = None, friction_scale: float | None = None,
                         mass: float | None = None, friction: float | None = None) -> None:
        """Set the perturbation (arguments as in the constructor; ``None`` leaves one unchanged,
        except that ``mass``/``friction`` given override their scales) and apply it now."""
        new = dict(self.settings)
        if mass_scale is not None:
            new["mass_scale"], new["mass"] = float(mass_scale), None
        if friction_scale is not None:
            new["friction_scale"], new["friction"] = float(friction_scale), None
        if mass is not None:
            new["mass"] = float(mass)
        if friction is not None:
            new["friction"] = float(friction)
        for key, lowest, strict in (("mass_scale", 0.0, True), ("friction_scale", 0.0, False),
                                    ("mass", 0.0, True), ("friction", 0.0, False)):
            value = new[key]
            if value is None:
                continue
            if not np.isfinite(value) or value < lowest or (strict and value == lowest):
                bound = "> 0" if strict else ">= 0"
                raise ValueError(f"{key} must be finite and {bound}, got {value}")
        self.settings = new
        self._apply()

    def _apply(self) -> None:
        nominal, model, ids = self._nominal, self.model, self.body_ids
        body_mass = nominal["body_mass"].copy()
        body_inertia = nominal["body_inertia"].copy()
        if self.settings["mass"] is not None:
            scale = self.settings["mass"] / nominal["body_mass"][ids]
        else:
            scale = np.full(len(ids), self.settings["mass_scale"])
        body_mass[ids] *= scale
        body_inertia[ids] *= scale[:, None]  # same shape, denser material
        friction = nominal["geom_friction"].copy()
        if self.settings["friction"] is not None:
            friction[:, 0] = self.settings["friction"]
        else:
            friction[:, 0] *= self.settings["friction_scale"]
        model.body_mass[:] = body_mass
        model.body_inertia[:] = body_inertia
        model.geom_friction[:] = friction

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Reset the task; options may hold ``mass_scale``/``friction_scale``/``mass``/``friction``
        for this and later episodes; ``randomize`` draws new factors first."""
        options = dict(options or {})
        chosen = {k: options.pop(k) for k in self._KEYS if k in options}
        obs, info = self.env.reset(seed=seed, options=options or None)
        if self.randomize:
            for key, (lo, hi) in self.randomize.items():
                chosen.setdefault(key, float(self.env.unwrapped.np_random.uniform(lo, hi)))
        if chosen:
            self.set_perturbation(**chosen)
            # The reset state was computed under the old model; recompute derived quantities.
            import mujoco
            mujoco.mj_forward(self.model, self.env.unwrapped.data)
        return obs, dict(info, **{k: v for k, v in self.settings.items() if v is not None})

    def restore(self) -> None:
        """Put the nominal masses, inertias and friction back (bitwise) and forget the settings."""
        self.settings = {"mass_scale": 1.0, "friction_scale": 1.0, "mass": None, "friction": None}
        self.model.body_mass[:] = self._nominal["body_mass"]
        self.model.body_inertia[:] = self._nominal["body_inertia"]
        self.model.geom_friction[:] = self._nominal["geom_friction"]

    def close(self) -> None:
        self.restore()
        super().close()
