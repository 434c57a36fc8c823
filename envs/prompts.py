"""A text task made from a user's dataset of prompts and reward functions, in TRL's convention
(``GRPOTrainer(train_dataset=..., reward_funcs=[...], reward_weights=[...])``), so that a TRL
user's data and reward functions work with maxent's GRPO unchanged.

The dataset is a ``datasets.Dataset``, a list of dicts, or a local file (``.jsonl``, ``.json``,
``.parquet``, ``.csv``) with a ``"prompt"`` column: plain text, or a conversation (a list of
``{"role", "content"}`` messages). Every other column is passed to the reward functions by name.
Each reward function is called once per batch as TRL calls it::

    fn(prompts=[...], completions=[...], completion_ids=[...], trainer_state=..., **columns)

and returns one float (or ``None``: no reward from this function for that sample) per completion;
for conversational prompts a completion is ``[{"role": "assistant", "content": text}]``. A
sample's reward is the weighted sum over functions of the rewards given (``None`` skipped, as
TRL's ``nansum``); a sample no function rewards is left out of the update and counted. Async
reward functions run concurrently.

:class:`PromptDataset` is the same protocol as :class:`maxent.envs.text.TextTaskEnv`
(``sample_prompts``, ``score``), not a Gymnasium env: its observations may be conversations, which
no Gymnasium space describes.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["PromptDataset", "RewardFunctions", "ScoredBatch", "TaskReward", "TrainerState",
           "import_function", "load_rows"]

PROMPT_COLUMN = "prompt"
RESERVED = ("prompts", "completions", "completion_ids", "trainer_state")
_FILE_TYPES = (".jsonl", ".json", ".parquet", ".csv")


def load_rows(source: Any) -> list[dict[str, Any]]:
    """Rows (dicts) of a ``datasets.Dataset``, a list of dicts, or a local data file."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"dataset file {path} does not exist; pass a local .jsonl, .json, "
                             ".parquet or .csv file (no hub downloads)")
        suffix = path.suffix.lower()
        if suffix == ".jsonl":
            rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
                    if line.strip()]
        elif suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            rows = data if isinstance(data, list) else data.get("data", data)
        elif suffix in (".parquet", ".csv"):
            import pandas as pd

            frame = pd.read_parquet(path) if suffix == ".parquet" else pd.read_csv(path)
            rows = frame.to_dict(orient="records")
        else:
            raise ValueError(f"dataset file {path} has an unknown type {suffix!r}; use one of "
                             f"{list(_FILE_TYPES)}")
    elif hasattr(source, "column_names") and hasattr(source, "__getitem__"):  # datasets.Dataset
        rows = [dict(source[i]) for i in range(len(source))]
    elif isinstance(source, Sequence) and not isinstance(source, (str, bytes)):
        rows = list(source)
    else:
        raise TypeError(f"a dataset must be a datasets.Dataset, a list of dicts or a file path, "
                        f"got {type(source).__name__}")
    if not rows or not all(isinstance(r, Mapping) for r in rows):
        raise ValueError("the dataset must be a non-empty collection of rows (dicts)")
    return [dict(r) for r in rows]


def import_function(spec: str) -> Callable:
    """``"module:function"`` (the module importable from here or the working directory)."""
    import importlib
    import sys

    if ":" not in spec:
        raise ValueError(f"a reward function is given as module:function, got {spec!r}")
    module_name, name = spec.split(":", 1)
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")  # the working directory, as `python -m` would
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"reward function {spec!r}: module {module_name!r} does not import "
                         f"({err}); run from the folder that holds it or install it") from None
    except Exception as err:  # the module itself is broken: a SyntaxError, or raising on import
        detail = " ".join(str(err).split())  # one line, whatever the module's message
        raise ValueError(f"reward function {spec!r}: importing module {module_name!r} raised "
                         f"{type(err).__name__}: {detail}; fix the module") from None
    try:
        fn = getattr(module, name)
    except AttributeError:
        public = sorted(n for n in vars(module) if callable(getattr(module, n)) and not n.startswith("_"))
        raise ValueError(f"reward function {spec!r}: {module_name} has no {name!r}; it defines "
                         f"{public}") from None
    if not callable(fn):
        raise ValueError(f"reward function {spec!r} is not callable")
    return fn


@dataclass
class TrainerState:
    """What a reward function receives as ``trainer_state`` (TRL passes its ``TrainerState``):
    the GRPO step and the completions scored so far."""

    global_step: int = 0
    num_completions: int = 0


@dataclass
class ScoredBatch:
    """Rewards of a batch: ``rewards`` (B,) weighted sums (NaN where no function rewarded),
    ``per_function`` (B, F) raw rewards (NaN for ``None``), and the functions' failures."""

    rewards: np.ndarray
    per_function: np.ndarray
    failures: list[str] = field(default_factory=list)


def _name(fn: Callable) -> str:
    return getattr(fn, "__name__", None) or type(fn).__name__


class RewardFunctions:
    """A list of reward functions in TRL's convention with their weights (see the module
    docstring). Signatures are checked up front: each must accept ``completions`` and either
    ``**kwargs`` or every other argument it is given by name."""

    def __init__(self, functions: Sequence[Callable] | Callable, weights: Sequence[float] | None = None):
        functions = [functions] if callable(functions) else list(functions)
        if not functions:
            raise ValueError("reward_funcs must name at least one reward function")
        for fn in functions:
            if not callable(fn):
                raise TypeError(f"every reward function must be callable, got {fn!r}")
        self.functions = functions
        self.names = [_name(fn) for fn in functions]
        if weights is None:
            weights = [1.0] * len(functions)
        weights = [float(w) for w in weights]
        if len(weights) != len(functions) or not all(math.isfinite(w) for w in weights):
            raise ValueError(f"reward_weights must be {len(functions)} finite numbers (one per reward "
                             f"function), got {weights}")
        self.weights = np.asarray(weights)

    def check_signatures(self, columns: Sequence[str]) -> None:
        """Refuse a function that cannot take the keyword arguments TRL's convention passes."""
        offered = {*RESERVED, *columns}
        for fn, name in zip(self.functions, self.names):
            try:
                params = inspect.signature(fn).parameters
            except (TypeError, ValueError):
                continue  # a builtin or C callable: let the call tell
            takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in params.values())
            named = {n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
            required = {n for n, p in params.items() if p.default is p.empty
                        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
            unknown = sorted(required - offered)
            if "completions" not in named and not takes_kwargs or unknown:
                raise ValueError(
                    f"reward function {name}{inspect.signature(fn)} does not fit TRL's convention: it "
                    f"is called as {name}(prompts=..., completions=..., completion_ids=..., "
                    f"trainer_state=..., **columns) with columns {sorted(columns)}"
                    + (f"; it requires {unknown}, which nothing provides" if unknown else "")
                    + ". Write it as def f(completions, **kwargs) (and take the columns you need)")

    def __call__(self, prompts: list, completions: list, completion_ids: list[list[int]],
                 columns: Mapping[str, list], state: TrainerState) -> ScoredBatch:
        n = len(completions)
        kwargs = {"prompts": prompts, "completions": completions, "completion_ids": completion_ids,
                  "trainer_state": state, **columns}
        per_function = np.full((n, len(self.functions)), np.nan)
        failures: list[str] = []
        outputs = self._call_all(kwargs, failures)
        for j, (name, out) in enumerate(zip(self.names, outputs)):
            if out is None:
                continue
            per_function[:, j] = self._check_output(name, out, n)
        finite = np.isfinite(per_function)
        rewards = np.where(finite, per_function * self.weights, 0.0).sum(axis=1)
        rewards[~finite.any(axis=1)] = np.nan
        return ScoredBatch(rewards, per_function, failures)

    def _call_all(self, kwargs: dict, failures: list[str]) -> list[Any]:
        outputs: list[Any] = [None] * len(self.functions)
        pending = {}
        for j, (fn, name) in enumerate(zip(self.functions, self.names)):
            try:
                out = fn(**kwargs)
            except Exception as err:  # noqa: BLE001 -- a user's function may fail in any way
                failures.append(f"{name} raised {type(err).__name__}: {err}")
                continue
            failures.extend(getattr(fn, "drain_failures", list)())
            if inspect.isawaitable(out):
                pending[j] = out
            else:
                outputs[j] = out
        if pending:
            async def gather():
                return await asyncio.gather(*pending.values(), return_exceptions=True)

            for j, out in zip(pending, asyncio.run(gather())):
                if isinstance(out, BaseException):
                    failures.append(f"{self.names[j]} raised {type(out).__name__}: {out}")
                else:
                    outputs[j] = out
        return outputs

    @staticmethod
    def _check_output(name: str, out: Any, n: int) -> np.ndarray:
        if isinstance(out, (str, bytes, Mapping)) or not hasattr(out, "__len__"):
            raise ValueError(f"reward function {name} must return a list of {n} floats (or None), "
                             f"one per completion; it returned {type(out).__name__} {out!r:.80}")
        if len(out) != n:
            raise ValueError(f"reward function {name} returned {len(out)} rewards for {n} "
                             "completions; return one float (or None) per completion")
        values = np.full(n, np.nan)
        for i, value in enumerate(out):
            if value is None:
                continue
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
                raise ValueError(f"reward function {name} returned {value!r} "
                                 f"({type(value).__name__}) for completion {i}; return floats or None")
            values[i] = float(value) if math.isfinite(float(value)) else np.nan
        return values


class TaskReward:
    """A ``fn(completion, target) -> float`` reward (a text task's, or a user's ``reward_fn``) in
    TRL's convention, scoring each completion on its own: one that raises or returns NaN/inf gets
    no reward (``None``), and the reason is kept for the warning."""

    def __init__(self, fn: Callable[[str, Any], float]):
        self.fn = fn
        self.__name__ = getattr(fn, "__name__", "task_reward")
        if self.__name__ == "<lambda>":
            self.__name__ = "reward_fn"
        self._failures: list[str] = []

    def __call__(self, completions: Sequence[str], target: Sequence[Any], **_: Any) -> list[float | None]:
        out: list[float | None] = []
        for completion, t in zip(completions, target):
            try:
                value = float(self.fn(completion, t))
            except Exception as err:  # noqa: BLE001 -- a user's reward function may fail in any way
                self._failures.append(f"{type(err).__name__}: {err} on {completion!r}")
                out.append(None)
                continue
            if not math.isfinite(value):
                self._failures.append(f"reward {value} on {completion!r}")
                out.append(None)
            else:
                out.append(value)
        return out

    def drain_failures(self) -> list[str]:
        failures, self._failures = self._failures, []
        return failures


class PromptDataset:
    """Prompts drawn from a dataset, scored by reward functions (see the module docstring).

    Args:
        dataset: a ``datasets.Dataset``, a list of dicts or a local file path.
        reward_funcs: reward functions (or one), TRL's convention.
        reward_weights: one weight per function; default all 1.
        prompt_column: the column holding the prompt.
    """

    def __init__(self, dataset: Any, reward_funcs: Sequence[Callable] | Callable,
                 reward_weights: Sequence[float] | None = None, prompt_column: str = PROMPT_COLUMN):
        self.rows = load_rows(dataset)
        columns = sorted(set().union(*(r.keys() for r in self.rows)))
        if prompt_column not in columns:
            raise ValueError(f"the dataset has no {prompt_column!r} column (it has {columns}); "
                             f"rename the prompt column to {prompt_column!r}")
        clash = sorted(set(columns) & set(RESERVED))
        if clash:
            raise ValueError(f"dataset columns {clash} clash with the arguments reward functions "
                             "receive; rename them")
        self.prompt_column = prompt_column
        self.columns = [c for c in columns if c != prompt_column]
        for i, row in enumerate(self.rows):
            _check_prompt(row.get(prompt_column), i)
        self.conversational = isinstance(self.rows[0][prompt_column], list)
        self.rewards = RewardFunctions(reward_funcs, reward_weights)
        self.rewards.check_signatures(self.columns)

    def __len__(self) -> int:
        return len(self.rows)

    def sample_prompts(self, n: int, rng: np.random.Generator) -> list[tuple[Any, dict]]:
        """``n`` (prompt, row) pairs drawn with ``rng``, without replacement while the dataset lasts."""
        index = rng.choice(len(self.rows), size=n, replace=n > len(self.rows))
        return [(self.rows[i][self.prompt_column], self.rows[i]) for i in index]

    def score(self, prompts: list, completions: Sequence[str], completion_ids: list[list[int]],
              rows: Sequence[dict], state: TrainerState) -> ScoredBatch:
        """Rewards of ``completions[i]`` for ``prompts[i]`` from ``rows[i]``."""
        if self.conversational:
            completions = [[{"role": "assistant", "content": c}] for c in completions]
        columns = {c: [r.get(c) for r in rows] for c in self.columns}
        return self.rewards(list(prompts), list(completions), list(completion_ids), columns, state)


def _check_prompt(prompt: Any, i: int) -> None:
    if isinstance(prompt, str):
        return
    if isinstance(prompt, list) and prompt and all(
            isinstance(m, Mapping) and {"role", "content"} <= set(m) for m in prompt):
        return
    raise ValueError(f"row {i}'s prompt must be a string or a list of {{'role', 'content'}} "
                     f"messages, got {prompt!r:.80}")
