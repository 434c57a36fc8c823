"""A Gaussian multi-armed bandit played in text, as in EAST (Rahn, D'Oro & Bellemare 2024,
arXiv 2406.00244): arms are named buttons, every round's (button, reward) is written into the
prompt, and the action is parsed from the model's completion ("Action: I choose Button 1.").

Parsing is a regular expression over the first ``Action:`` line: model output is never evaluated.
It is linear-time and reads only a completion's first ``MAX_ACTION_CHARS`` characters.
``TextBanditVector`` holds N episodes at once so that one batched ``generate`` call serves them all.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv

from maxent.envs.text import CHARSET

__all__ = ["MAX_ACTION_CHARS", "TextBandit", "TextBanditVector", "parse_action"]

INVALID_OUTCOMES = ("end", "random")

_INSTRUCTIONS = (
    "You are playing a game with {k} buttons: {names}. Each press of a button gives points drawn "
    "from that button's own fixed distribution, unknown to you. Your goal is to collect as many "
    "points as possible over {horizon} rounds.\n"
)
_FORMAT = "Reply with one line: Action: I choose <button>.\n"
_HISTORY_EMPTY = "No buttons have been pressed yet.\n"
_ROUND = "Round {t}: {name}, {reward:.1f} points.\n"
_ASK = "Round {t} of {horizon}: which button do you press?\n"

# The action line must start within a completion's first MAX_ACTION_CHARS characters: the parser
# reads only that prefix, so its work is bounded whatever the model writes (a ReAct answer puts
# its action after a short thought; the default action space allows 1024 characters).
MAX_ACTION_CHARS = 16_384

# "Action:" line: an optional verb phrase, then the button name, then optional "." / whitespace.
# Whitespace and the optional markdown stars are matched as "\s*(?:\*+\s*)?", not
# "\s*\**\s*": with two adjacent "\s*" a line of n spaces is split between them in n ways
# before the match fails, quadratic time.
_ACTION_LINE = re.compile(r"^\s*(?:\*+\s*)?action\s*(?:\*+\s*)?:\s*(.*)$", re.IGNORECASE)
_VERBS = re.compile(r"^(?:i\s+)?(?:will\s+)?(?:choose|press|pick|select)\s+", re.IGNORECASE)


def _check_names(names: Sequence[str]) -> tuple[str, ...]:
    names = tuple(names)
    if len(names) < 1:
        raise ValueError("button_names must name at least one button")
    for name in names:
        if not isinstance(name, str) or not name.strip() or name != name.strip() or "\n" in name:
            raise ValueError(f"button name {name!r} must be a non-empty single-line string "
                             "without leading or trailing spaces")
        bad = sorted(set(name) - set(CHARSET))
        if bad:
            raise ValueError(f"button name {name!r} has characters outside printable ASCII: {bad}")
    lowered = [n.lower() for n in names]
    if len(set(lowered)) != len(names):
        raise ValueError(f"button names must differ (ignoring case), got {list(names)}")
    return names


def parse_action(completion: str, names: Sequence[str]) -> int | None:
    """Index of the button chosen by a completion, or None when the answer is malformed.

    The FIRST line that starts with ``Action:`` (case-insensitive, markdown bold allowed) is the
    action line, as a ReAct agent stops at its action; later lines are ignored. After
    ``Action:`` an optional "I choose" / "I press" / "pick" / "select" must be followed directly
    by a button name (case-insensitive) that ends at a non-alphanumeric character ("Button 1."
    and "Button 1, because ..." are read as Button 1; "Button 10" is not "Button 1"). Rejected:
    no action line, an unknown button, other words before the name, or a line that names a
    second, different button. Only regular expressions and string comparison are used, in
    linear time; only the first ``MAX_ACTION_CHARS`` characters of the completion are read.
    """
    if not isinstance(completion, str):
        return None
    rest = None
    for line in completion[:MAX_ACTION_CHARS].splitlines():
        m = _ACTION_LINE.match(line)
        if m:
            rest = m.group(1)
            break
    if rest is None:
        return None
    rest = _VERBS.sub("", rest.strip()).lstrip("*\"'` ")
    lowered = rest.lower()
    # Longest names first, so that "Button 10" wins over "Button 1" when both exist.
    for i in sorted(range(len(names)), key=lambda j: -len(names[j])):
        name = names[i].lower()
        if lowered.startswith(name) and not lowered[len(name):len(name) + 1].isalnum():
            tail = lowered[len(name):]
            others = [n.lower() for j, n in enumerate(names) if j != i]
            if any(re.search(rf"(?<![a-z0-9]){re.escape(o)}(?![a-z0-9])", tail) for o in others):
                return None
            return i
    return None


class TextBandit(gym.Env):
    """K Gaussian arms behind named buttons, played through text prompts and completions.

    ==============  =================================================================
    Observation     ``Text(max_length, charset=printable ASCII)``: instructions, the list of
                    buttons, the history "Round t: <button>, <reward> points." of every past
                    round, and the question for the current round. ``max_length`` is the longest
                    prompt the horizon allows (``observation_space.max_length``).
    Action          ``Text(max_completion_chars)``: the model's completion; the button is parsed
                    from its first ``Action:`` line (:func:`parse_action`).
    Reward          points ~ Normal(means[arm], sigma) for the parsed arm; 0 for an invalid answer.
    Termination     ``terminated=True`` on an invalid answer when ``invalid_action="end"``
                    (the paper's rule: an invalid action ends the episode); otherwise never.
                    ``truncated=True`` after ``horizon`` rounds.
    Info            reset: ``means`` (after shuffling), ``best_arm``. step: ``arm`` (parsed
                    index, -1 if invalid), ``pulled`` (the arm actually pulled, -1 if none),
                    ``invalid`` (bool), ``regret`` (best mean − pulled mean; 0 when nothing is
                    pulled), ``n_invalid`` (invalid answers so far this episode), ``round``.
    ==============  =================================================================

    Invalid answers: ``invalid_action="end"`` (default, as in EAST) ends the episode with reward 0
    and no arm pulled; ``"random"`` pulls a uniformly random arm instead and the episode goes on.
    Either way the answer is counted in ``info["n_invalid"]``.

    Args:
        means: arm means; default ``(95.0, 105.0)`` (one of the paper's two-armed settings).
        sigma: reward standard deviation; default 10.
        horizon: rounds per episode; default 50 (as in the paper).
        button_names: names of the arms; default ``"Button 1" ... "Button K"``.
        shuffle: permute the means at every reset (drawn from the env's seeded generator) so
            that a name never tells which arm is best; default True.
        invalid_action: ``"end"`` or ``"random"``; see above.
        max_completion_chars: action space length bound; default 1024.
        show_format: add the "Reply with one line: Action: I choose <button>." instruction; default
            True (an agent that asks for a thought first gives its own instructions).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, means: Sequence[float] = (95.0, 105.0), sigma: float = 10.0,
                 horizon: int = 50, button_names: Sequence[str] | None = None,
                 shuffle: bool = True, invalid_action: str = "end",
                 max_completion_chars: int = 1024, show_format: bool = True,
                 render_mode: str | None = None) -> None:
        means = np.asarray(means, dtype=np.float64)
        if means.ndim != 1 or len(means) < 2:
            raise ValueError(f"means must list at least 2 arm means, got {means.tolist()}")
        if not np.all(np.isfinite(means)):
            raise ValueError(f"means must be finite, got {means.tolist()}")
        if not (np.isfinite(sigma) and sigma >= 0):
            raise ValueError(f"sigma must be finite and >= 0, got {sigma}")
        if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 1:
            raise ValueError(f"horizon must be an int >= 1, got {horizon!r}")
        if invalid_action not in INVALID_OUTCOMES:
            raise ValueError(f"invalid_action must be one of {INVALID_OUTCOMES}, got {invalid_action!r}")
        k = len(means)
        names = _check_names(button_names if button_names is not None
                             else [f"Button {i + 1}" for i in range(k)])
        if len(names) != k:
            raise ValueError(f"{len(names)} button names for {k} arms; give one name per mean")
        self.base_means = means
        self.sigma = float(sigma)
        self.horizon = int(horizon)
        self.names = names
        self.n_arms = k
        self.shuffle = bool(shuffle)
        self.invalid_action = invalid_action
        self.show_format = bool(show_format)
        self.render_mode = render_mode
        self.header = _INSTRUCTIONS.format(k=k, names=", ".join(names), horizon=self.horizon) + \
            (_FORMAT if show_format else "")
        self.observation_space = spaces.Text(self._max_prompt_chars(), charset=CHARSET)
        self.action_space = spaces.Text(int(max_completion_chars), charset=CHARSET)
        self.means = means.copy()
        self._history: list[tuple[int, float]] = []
        self._t = 0
        self._n_invalid = 0
        self._done = True

    # ------------------------------------------------------------------ prompts

    def _max_prompt_chars(self) -> int:
        # Rewards are printed with one decimal; 6 sigma beyond the extreme means bounds them for
        # all practical draws, and the prompt builder clips to that bound to keep the space exact.
        self._reward_bound = float(np.max(np.abs(self.base_means)) + 6 * self.sigma + 1)
        widest_reward = len(f"{-self._reward_bound:.1f}")
        widest_round = len(_ROUND.format(t=self.horizon, name=max(self.names, key=len), reward=0.0)) \
            - len("0.0") + widest_reward
        ask = len(_ASK.format(t=self.horizon, horizon=self.horizon))
        return len(self.header) + len(_HISTORY_EMPTY) + self.horizon * widest_round + ask

    def prompt(self, history: Sequence[tuple[int, float]] | None = None) -> str:
        """The prompt for the round after ``history`` (default: this episode's history)."""
        history = self._history if history is None else history
        lines = [self.header]
        if not history:
            lines.append(_HISTORY_EMPTY)
        for t, (arm, reward) in enumerate(history):
            r = float(np.clip(reward, -self._reward_bound, self._reward_bound))
            lines.append(_ROUND.format(t=t + 1, name=self.names[arm], reward=r))
        lines.append(_ASK.format(t=len(history) + 1, horizon=self.horizon))
        return "".join(lines)

    def parse_action(self, completion: str) -> int | None:
        """The arm a completion chooses, or None (see :func:`parse_action`)."""
        return parse_action(completion, self.names)

    @property
    def best_arm(self) -> int:
        return int(np.argmax(self.means))

    # ------------------------------------------------------------------ gym API

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.means = self.np_random.permutation(self.base_means) if self.shuffle \
            else self.base_means.copy()
        self._history = []
        self._t = 0
        self._n_invalid = 0
        self._done = False
        return self.prompt(), {"means": self.means.copy(), "best_arm": self.best_arm}

    def step(self, action: str):
        if self._done:
            raise RuntimeError("the episode is over (or reset() was never called); call reset()")
        if not isinstance(action, str):
            raise TypeError(f"action must be a str (the completion), got {type(action).__name__}")
        arm = self.parse_action(action)
        invalid = arm is None
        terminated = False
        pulled = -1 if arm is None else arm
        if invalid:
            self._n_invalid += 1
            if self.invalid_action == "end":
                terminated = True
            else:
                pulled = int(self.np_random.integers(self.n_arms))
        reward = 0.0
        regret = 0.0
        if pulled >= 0:
            reward = float(self.means[pulled] + self.sigma * self.np_random.standard_normal())
            regret = float(self.means.max() - self.means[pulled])
            self._history.append((pulled, reward))
        self._t += 1
        truncated = not terminated and self._t >= self.horizon
        self._done = terminated or truncated
        info = {"arm": -1 if arm is None else arm, "pulled": pulled, "invalid": invalid,
                "regret": regret, "n_invalid": self._n_invalid, "round": self._t}
        return self.prompt(), reward, terminated, truncated, info

    def __repr__(self) -> str:
        return (f"TextBandit(means={self.base_means.tolist()}, sigma={self.sigma}, "
                f"horizon={self.horizon}, names={list(self.names)})")


class TextBanditVector(VectorEnv):
    """N independent :class:`TextBandit` episodes stepped together: rewards are drawn for all of
    them in one numpy call, and one batch of completions (one batched ``generate``) serves all.

    Autoreset is gymnasium's ``SAME_STEP`` mode (``metadata["autoreset_mode"]``): an episode that
    ends is reset inside the same ``step``, which returns the new episode's first prompt, with
    the last prompt in ``infos["final_obs"]`` and the last info in ``infos["final_info"]``. Unlike
    NEXT_STEP, no batched LLM call is spent on an action that would be ignored.

    Args:
        num_envs: number of episodes N.
        **kwargs: :class:`TextBandit` arguments, shared by all copies.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": [],
                                          "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, num_envs: int = 1, **kwargs: Any) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be an int >= 1, got {num_envs!r}")
        kwargs.pop("render_mode", None)
        self.num_envs = int(num_envs)
        self.template = TextBandit(**kwargs)  # validates the arguments, builds prompts
        t = self.template
        self.names, self.n_arms, self.horizon = t.names, t.n_arms, t.horizon
        self.single_observation_space = t.observation_space
        self.single_action_space = t.action_space
        self.observation_space = gym.vector.utils.batch_space(t.observation_space, self.num_envs)
        self.action_space = gym.vector.utils.batch_space(t.action_space, self.num_envs)
        self.means = np.tile(t.base_means, (self.num_envs, 1))  # (N, K)
        self.t = np.zeros(self.num_envs, dtype=np.int64)
        self.n_invalid = np.zeros(self.num_envs, dtype=np.int64)
        self.histories: list[list[tuple[int, float]]] = [[] for _ in range(self.num_envs)]
        self._np_random, _ = gym.utils.seeding.np_random(None)
        self._started = False

    def parse_action(self, completion: str) -> int | None:
        return parse_action(completion, self.names)

    def _reset_rows(self, rows: np.ndarray) -> None:
        base = self.template.base_means
        for i in rows:
            self.means[i] = self._np_random.permutation(base) if self.template.shuffle else base
            self.histories[i] = []
        self.t[rows] = 0
        self.n_invalid[rows] = 0

    def _prompts(self) -> tuple[str, ...]:
        return tuple(self.template.prompt(h) for h in self.histories)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self._np_random, _ = gym.utils.seeding.np_random(seed)
        self._reset_rows(np.arange(self.num_envs))
        self._started = True
        return self._prompts(), {"means": self.means.copy(),
                                 "best_arm": self.means.argmax(axis=1)}

    def step(self, actions: Sequence[str]):
        if not self._started:
            raise RuntimeError("call reset() before step()")
        actions = list(actions)
        if len(actions) != self.num_envs:
            raise ValueError(f"expected {self.num_envs} completions, got {len(actions)}")
        n = self.num_envs
        arms = np.array([(-1 if (a := self.parse_action(c if isinstance(c, str) else "")) is None
                          else a) for c in actions], dtype=np.int64)
        invalid = arms < 0
        self.n_invalid += invalid
        pulled = arms.copy()
        terminated = np.zeros(n, dtype=bool)
        if self.template.invalid_action == "end":
            terminated = invalid.copy()
        else:
            pulled[invalid] = self._np_random.integers(self.n_arms, size=int(invalid.sum()))
        noise = self._np_random.standard_normal(n)
        rows = np.arange(n)
        ok = pulled >= 0
        safe = np.where(ok, pulled, 0)
        rewards = np.where(ok, self.means[rows, safe] + self.template.sigma * noise, 0.0)
        regret = np.where(ok, self.means.max(axis=1) - self.means[rows, safe], 0.0)
        for i in np.flatnonzero(ok):
            self.histories[i].append((int(pulled[i]), float(rewards[i])))
        self.t += 1
        truncated = ~terminated & (self.t >= self.horizon)
        infos: dict[str, Any] = {"arm": arms, "pulled": np.where(ok, pulled, -1), "invalid": invalid,
                                 "regret": regret, "n_invalid": self.n_invalid.copy(),
                                 "round": self.t.copy()}
        infos.update({f"_{k}": np.ones(n, dtype=bool) for k in list(infos)})
        done = terminated | truncated
        if done.any():
            final_obs = np.array([None] * n, dtype=object)
            for i in np.flatnonzero(done):
                final_obs[i] = self.template.prompt(self.histories[i])
            infos["final_obs"], infos["_final_obs"] = final_obs, done.copy()
            infos["final_info"] = {k: v.copy() for k, v in infos.items()
                                   if not k.startswith("_") and k != "final_obs"}
            infos["_final_info"] = done.copy()
            self._reset_rows(np.flatnonzero(done))
        return self._prompts(), rewards, terminated, truncated, infos
