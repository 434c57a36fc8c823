"""Text versions of environments for language-model agents: :class:`TextActions` renders any env
with a discrete action space as a ``Text`` env (observations described in words, the action read
from an ``Action: <name>`` line as in EAST's text bandit), and :class:`TextBanditChat` plays the
text bandit as a conversation, one short message per round instead of the whole history.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from maxent.envs.text import CHARSET
from maxent.envs.text_bandit import INVALID_OUTCOMES, TextBandit, parse_action

__all__ = ["TextActions", "TextBanditChat", "make_text_recharging"]


def _describe(observation: Any) -> str:
    values = np.asarray(observation).ravel().tolist()
    return "Observation: " + ", ".join(str(v) for v in values) + "."


class TextActions(gym.Env):
    """Any env with a ``Discrete`` action space as a ``Text`` env.

    ==============  =================================================================
    Observation     ``Text(max_observation_chars)``: the instructions (on reset), then
                    ``describe(obs)``, the last reward, and the question; cut to the bound.
    Action          ``Text(max_action_chars)``: a reply whose first ``Action:`` line names an
                    action (:func:`maxent.envs.text_bandit.parse_action`).
    Reward          the wrapped env's; 0 for an invalid reply.
    Termination     the wrapped env's, or an invalid reply with ``invalid_action="end"``.
    Info            the wrapped env's, plus ``action`` (-1 when invalid) and ``invalid``.
    ==============  =================================================================

    Args:
        env: an env (or its id) with a ``Discrete`` action space.
        action_names: one name per action; default ``"Arm 1"`` ... ``"Arm K"``.
        describe: ``obs -> str``; default lists the observation's numbers.
        instructions: the text that opens each episode.
        invalid_action: ``"end"`` (the episode ends, reward 0) or ``"random"`` (a uniformly
            random action is taken instead).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, env: gym.Env | str, action_names: Sequence[str] | None = None,
                 describe: Callable[[Any], str] = _describe, instructions: str = "",
                 invalid_action: str = "end", max_observation_chars: int = 2048,
                 max_action_chars: int = 1024):
        self.env = gym.make(env) if isinstance(env, str) else env
        if not isinstance(self.env.action_space, spaces.Discrete):
            raise ValueError(f"TextActions needs a Discrete action space, got "
                             f"{self.env.action_space}; discretise the actions first (e.g. a list "
                             "of named choices)")
        if invalid_action not in INVALID_OUTCOMES:
            raise ValueError(f"invalid_action must be one of {INVALID_OUTCOMES}, got "
                             f"{invalid_action!r}")
        n = int(self.env.action_space.n)
        self.names = tuple(action_names) if action_names is not None else \
            tuple(f"Arm {i + 1}" for i in range(n))
        if len(self.names) != n:
            raise ValueError(f"{len(self.names)} action names for {n} actions; give one per action")
        self.describe, self.invalid_action = describe, invalid_action
        self.instructions = instructions or (
            f"Choose one of {', '.join(self.names)} each round to collect as much reward as "
            "possible. Reply with one line: Action: <name>\n")
        self.observation_space = spaces.Text(int(max_observation_chars), charset=CHARSET)
        self.action_space = spaces.Text(int(max_action_chars), charset=CHARSET)
        self._done = True

    def _text(self, head: str, obs: Any) -> str:
        text = head + self.describe(obs) + "\nWhich action?\n"
        return "".join(c if c in CHARSET else "?" for c in text)[:self.observation_space.max_length]

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        obs, info = self.env.reset(seed=seed, options=options)
        self._done = False
        return self._text(self.instructions, obs), dict(info)

    def step(self, action: str):
        if self._done:
            raise RuntimeError("the episode is over (or reset() was never called); call reset()")
        if not isinstance(action, str):
            raise TypeError(f"action must be a str (the reply), got {type(action).__name__}")
        index = parse_action(action, self.names)
        if index is None and self.invalid_action == "end":
            self._done = True
            return "Invalid answer: the episode is over.\n", 0.0, True, False, {"action": -1,
                                                                            "invalid": True}
        invalid = index is None
        if invalid:
            index = int(self.np_random.integers(len(self.names)))
        obs, reward, terminated, truncated, info = self.env.step(index)
        self._done = bool(terminated or truncated)
        head = f"You chose {self.names[index]}: reward {float(reward):.3g}.\n"
        return self._text(head, obs), float(reward), bool(terminated), bool(truncated), \
            {**info, "action": -1 if invalid else index, "invalid": invalid}

    def close(self) -> None:
        self.env.close()


def make_text_recharging(horizon: int = 8, invalid_action: str = "end",
                         **kwargs: Any) -> TextActions:
    """Entry point of ``maxent/TextRechargingBandit-v0``: the recharging bandit
    (``maxent/RechargingBandit-v0``) of ``horizon`` pulls in text; the observation lists every
    arm's counter (rounds since it was last pulled)."""
    from maxent.envs.lsd import make_recharging

    env = make_recharging(horizon=horizon, **kwargs)

    def describe(counters: Any) -> str:
        return "Rounds since each arm was pulled: " + ", ".join(
            f"Arm {i + 1}: {int(c)}" for i, c in enumerate(np.asarray(counters).ravel())) + "."

    return TextActions(env, describe=describe, invalid_action=invalid_action)


class TextBanditChat(TextBandit):
    """The text bandit (:class:`maxent.envs.text_bandit.TextBandit`) as a conversation: the
    first observation is its whole prompt, each later one only the round just played and the next
    question, so a multi-turn transcript holds every round once. Same arguments, rewards and
    info as :class:`TextBandit`; default horizon 5."""

    def __init__(self, horizon: int = 5, **kwargs: Any):
        super().__init__(horizon=horizon, **kwargs)

    def step(self, action: str):
        full, reward, terminated, truncated, info = super().step(action)
        lines = full.splitlines(keepends=True)
        delta = "".join(lines[-2:]) if info["pulled"] >= 0 else \
            f"That is not a valid answer.\n{lines[-1]}"
        return delta, reward, terminated, truncated, info
