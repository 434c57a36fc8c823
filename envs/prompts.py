"""A text task made from a user's dataset of prompts and reward functions, in TRL's convention
(``GRPOTrainer(train_dataset=..., reward_funcs=[...], reward_weights=[...])``), so that a TRL
user's data and reward functions work with maxent's GRPO unchanged.

The dataset is a ``datasets.Dataset``, a list of dicts, or a local file (``.jsonl``, ``.json``,
``.parquet``, ``.csv``) with a ``"prompt"`` column: plain text, or a conversation (a list of
``{"role", "content"}`` messages). Every other column is passed to the reward functions by name.
Each reward function is called once per batch as TRL calls it::

    fn(prompts=[...], completions=[...], completion_ids=[...], trainer_state=...,
       log_metric=..., log_extra=..., **columns)

and returns one reward per completion: a float, a bool, a tensor element, or ``None`` (no
reward from this function for that sample; NaN likewise), or a tensor of them; for
conversational prompts a completion is ``[{"role": "assistant", "content": text}]``. A sample's
reward is the weighted sum over functions of the rewards given (``None`` skipped, as TRL's
``nansum``); a sample no function rewards is left out of the update and counted. Async reward
functions run concurrently. ``trainer_state`` has the fields of transformers' ``TrainerState``
that reward functions read; ``log_metric(name, value)`` adds a scalar to the step's log row and
``log_extra(column, values)`` a column to the completions table, as in TRL. A function that
raises stops the run naming it, the sample and the cause, unless failures are to be skipped
(``on_failure="skip"``). Reward models stand in for functions (:mod:`maxent.envs.reward_models`).

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

from maxent.training.config import check_choice

__all__ = ["FAILURE_POLICIES", "PromptDataset", "RewardFunctionError", "RewardFunctions",
           "ScoredBatch", "TaskReward", "TrainerState", "import_function", "load_rows"]

PROMPT_COLUMN = "prompt"
RESERVED = ("prompts", "completions", "completion_ids", "trainer_state", "log_metric", "log_extra")
_FILE_TYPES = (".jsonl", ".json", ".parquet", ".csv")


def load_rows(source: Any, split: str | None = None) -> list[dict[str, Any]]:
    """Rows (dicts) of a ``datasets.Dataset``, a ``DatasetDict`` (its ``split``), an
    ``IterableDataset`` (read once into memory: prompts are drawn at random), a list of dicts, or a
    local data file."""
    if _is_dataset_dict(source):
        splits = sorted(source.keys())
        if split is None or split not in splits:
            what = "names no split" if split is None else f"names split {split!r}, which it lacks"
            raise ValueError(f"the dataset is a DatasetDict with splits {splits} and the call {what}; "
                             f"pass one split, e.g. dataset[{splits[0]!r}] (or split={splits[0]!r})")
        source = source[split]
    elif split is not None:
        raise ValueError(f"split={split!r} applies to a DatasetDict only; this dataset is a "
                         f"{type(source).__name__}")
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
    elif hasattr(source, "column_names") and hasattr(source, "__getitem__") and \
            hasattr(source, "__len__"):  # datasets.Dataset
        rows = [dict(source[i]) for i in range(len(source))]
    elif isinstance(source, Sequence) and not isinstance(source, (str, bytes)):
        rows = list(source)
    elif hasattr(source, "__iter__") and not isinstance(source, (str, bytes, Mapping)):
        rows = list(source)  # an IterableDataset or a generator of rows
    else:
        raise TypeError(f"a dataset must be a datasets.Dataset, a list of dicts or a file path, "
                        f"got {type(source).__name__}")
    if not rows or not all(isinstance(r, Mapping) for r in rows):
        raise ValueError("the dataset must be a non-empty collection of rows (dicts)")
    return [dict(r) for r in rows]


def _is_dataset_dict(source: Any) -> bool:
    """A ``datasets.DatasetDict`` (or ``IterableDatasetDict``): named splits of rows."""
    return isinstance(source, Mapping) and bool(source) and all(
        hasattr(v, "column_names") or hasattr(v, "features") for v in source.values())


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
    """What a reward function receives as ``trainer_state``: the fields of transformers'
    ``TrainerState`` (which TRL passes) that reward functions and callbacks read, kept current by
    GRPO, plus ``num_completions`` (completions scored so far). Steps are optimiser steps, as in
    TRL: ``global_step`` and ``max_steps`` (where the current ``learn`` call ends) count
    ``num_epochs`` per GRPO step; ``epoch`` counts passes over the dataset's prompts."""

    global_step: int = 0
    num_completions: int = 0
    max_steps: int = 0
    epoch: float = 0.0
    num_train_epochs: int = 0
    logging_steps: int = 1
    eval_steps: int | None = None
    save_steps: int | None = None
    train_batch_size: int | None = None
    num_input_tokens_seen: int = 0
    total_flos: float = 0.0
    log_history: list[dict[str, float]] = field(default_factory=list)
    best_metric: float | None = None
    best_global_step: int | None = None
    best_model_checkpoint: str | None = None
    is_local_process_zero: bool = True
    is_world_process_zero: bool = True
    is_hyper_param_search: bool = False
    trial_name: str | None = None
    trial_params: dict[str, Any] | None = None


class RewardFunctionError(RuntimeError):
    """A reward function raised or returned something unusable; the message names the function,
    the sample and the cause."""


@dataclass
class ScoredBatch:
    """Rewards of a batch: ``rewards`` (B,) weighted sums (NaN where no function rewarded),
    ``per_function`` (B, F) raw rewards (NaN for ``None``), and the functions' failures."""

    rewards: np.ndarray
    per_function: np.ndarray
    failures: list[str] = field(default_factory=list)


def _name(fn: Callable) -> str:
    return getattr(fn, "__name__", None) or type(fn).__name__


def _one_line(err: BaseException) -> str:
    return f"{type(err).__name__}: {' '.join(str(err).split())}"[:300]


FAILURE_POLICIES = ("raise", "skip")


class RewardFunctions:
    """A list of reward functions in TRL's convention with their weights (see the module
    docstring). Signatures are checked up front: each must accept ``completions`` and either
    ``**kwargs`` or every other argument it is given by name.

    A reward model (a ``PreTrainedModel`` sequence classifier, or the path of one) may stand in
    for a function, as in TRL; ``processing_classes`` gives each model its tokenizer (``None``
    entries for functions). ``on_failure="raise"`` (default) stops on a function that raises,
    naming it, the first sample it fails on and the cause; ``"skip"`` gives that function no
    reward for the batch (NaN, as ``None``) and records the failure.
    """

    def __init__(self, functions: Sequence[Callable] | Callable, weights: Sequence[float] | None = None,
                 on_failure: str = "raise", processing_classes: Sequence[Any] | Any = None):
        functions = [functions] if callable(functions) or isinstance(functions, (str, Path)) \
            else list(functions)
        if not functions:
            raise ValueError("reward_funcs must name at least one reward function")
        check_choice("", "on_failure", on_failure, FAILURE_POLICIES)
        from maxent.envs.reward_models import as_reward_functions

        functions = as_reward_functions(functions, processing_classes)
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
        self.on_failure = on_failure
        for fn in functions:
            if isinstance(fn, TaskReward):
                fn.on_failure = on_failure
        self.pending_metrics: dict[str, list[float]] = {}
        self.pending_extras: dict[str, list[Any]] = {}

    def log_metric(self, name: str, value: float) -> None:
        """TRL's ``log_metric`` argument: a scalar for this step's log row (averaged per step)."""
        self.pending_metrics.setdefault(str(name), []).append(float(value))

    def log_extra(self, column: str, values: Sequence[Any]) -> None:
        """TRL's ``log_extra`` argument: a column of the completions table, one value per sample."""
        self.pending_extras.setdefault(str(column), []).extend(list(values))

    def drain_logs(self) -> tuple[dict[str, float], dict[str, list[Any]]]:
        """The metrics (mean per name) and table columns the functions logged since the last call."""
        metrics = {k: float(np.mean(v)) for k, v in self.pending_metrics.items() if v}
        extras = self.pending_extras
        self.pending_metrics, self.pending_extras = {}, {}
        return metrics, extras

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
                    f"trainer_state=..., log_metric=..., log_extra=..., **columns) with columns "
                    f"{sorted(columns)}"
                    + (f"; it requires {unknown}, which nothing provides" if unknown else "")
                    + ". Write it as def f(completions, **kwargs) (and take the columns you need)")

    def __call__(self, prompts: list, completions: list, completion_ids: list[list[int]],
                 columns: Mapping[str, list], state: TrainerState) -> ScoredBatch:
        n = len(completions)
        kwargs = {"prompts": prompts, "completions": completions, "completion_ids": completion_ids,
                  "trainer_state": state, "log_metric": self.log_metric,
                  "log_extra": self.log_extra, **columns}
        per_function = np.full((n, len(self.functions)), np.nan)
        failures: list[str] = []
        outputs = self._call_all(kwargs, failures)
        for j, (name, out) in enumerate(zip(self.names, outputs)):
            if out is None:
                continue
            per_function[:, j] = self._check_output(name, out, n, kwargs)
        finite = np.isfinite(per_function)
        rewards = np.where(finite, per_function * self.weights, 0.0).sum(axis=1)
        rewards[~finite.any(axis=1)] = np.nan
        return ScoredBatch(rewards, per_function, failures)

    def _failed(self, j: int, err: BaseException, kwargs: dict, failures: list[str]) -> None:
        """Raise (naming the sample) or record a function's failure on a batch."""
        if isinstance(err, RewardFunctionError):
            if self.on_failure == "raise":
                raise err
            failures.append(str(err))
            return
        name = self.names[j]
        if self.on_failure == "skip":
            failures.append(f"{name} raised {_one_line(err)}")
            return
        where = _first_failing_sample(self.functions[j], kwargs)
        raise RewardFunctionError(
            f"reward function {name} raised {_one_line(err)} {where}; fix the function, or set "
            "reward_failures='skip' to train on without the batches it fails on") from err

    def _call_all(self, kwargs: dict, failures: list[str]) -> list[Any]:
        outputs: list[Any] = [None] * len(self.functions)
        pending = {}
        for j, fn in enumerate(self.functions):
            try:
                out = fn(**kwargs)
            except Exception as err:  # noqa: BLE001 -- a user's function may fail in any way
                self._failed(j, err, kwargs, failures)
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
                    self._failed(j, out, kwargs, failures)
                else:
                    outputs[j] = out
        return outputs

    @staticmethod
    def _check_output(name: str, out: Any, n: int, kwargs: Mapping[str, Any] | None = None) -> np.ndarray:
        """The rewards as floats: numbers, bools (1/0) and tensors or arrays are taken as TRL's
        ``torch.tensor(rewards)`` takes them; ``None`` and NaN mean "not applicable"."""
        if hasattr(out, "detach"):  # a torch tensor of rewards
            out = out.detach().cpu().numpy()
        if isinstance(out, np.ndarray):
            if out.ndim != 1:
                raise ValueError(f"reward function {name} returned an array of shape {out.shape}; "
                                 f"return {n} rewards, one per completion")
            out = out.tolist()
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
            if hasattr(value, "detach") and getattr(value, "numel", lambda: 0)() == 1:
                value = value.detach().cpu().item()
            if isinstance(value, np.generic):
                value = value.item()
            if not isinstance(value, (bool, int, float)):
                completion = kwargs["completions"][i] if kwargs else None
                raise ValueError(f"reward function {name} returned {value!r:.60} "
                                 f"({type(value).__name__}) for sample {i} (completion "
                                 f"{completion!r:.60}); return floats, bools or None")
            values[i] = float(value) if math.isfinite(float(value)) else np.nan
        return values


def _first_failing_sample(fn: Callable, kwargs: dict) -> str:
    """Where a batch call failed: the first sample on which the function, called on that sample
    alone, raises too (its prompt and completion), or the batch when none does alone."""
    n = len(kwargs["completions"])
    for i in range(n):
        single = {k: [v[i]] if isinstance(v, list) and len(v) == n else v for k, v in kwargs.items()}
        try:
            out = fn(**single)
            if inspect.isawaitable(out):
                asyncio.run(_awaited(out))
        except Exception:  # noqa: BLE001 -- this is the sample
            return (f"on sample {i} (prompt {kwargs['prompts'][i]!r:.60}, completion "
                    f"{kwargs['completions'][i]!r:.60})")
    return f"on the batch of {n} samples (no single sample fails alone)"


async def _awaited(out: Any) -> Any:
    return await out


class TaskReward:
    """A ``fn(completion, target) -> float`` reward (a text task's, or a user's ``reward_fn``) in
    TRL's convention, scoring each completion on its own. One that returns NaN/inf gets no reward
    (``None``), the reason kept for the warning; one that raises stops the run naming the sample
    (``on_failure="raise"``, set by :class:`RewardFunctions`) or gets no reward (``"skip"``)."""

    on_failure = "raise"

    def __init__(self, fn: Callable[[str, Any], float]):
        self.fn = fn
        self.__name__ = getattr(fn, "__name__", "task_reward")
        if self.__name__ == "<lambda>":
            self.__name__ = "reward_fn"
        self._failures: list[str] = []

    def __call__(self, completions: Sequence[str], target: Sequence[Any], **_: Any) -> list[float | None]:
        out: list[float | None] = []
        for i, (completion, t) in enumerate(zip(completions, target)):
            try:
                value = float(self.fn(completion, t))
            except Exception as err:  # noqa: BLE001 -- a user's reward function may fail in any way
                if self.on_failure == "raise":
                    raise RewardFunctionError(
                        f"reward function {self.__name__} raised {_one_line(err)} on sample {i} "
                        f"(completion {completion!r:.60}, target {t!r:.40}); fix the function, or "
                        "set reward_failures='skip' to train on without the samples it fails on"
                    ) from err
                self._failures.append(f"{self.__name__} raised {_one_line(err)} on {completion!r}")
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
        dataset: a ``datasets.Dataset``, ``DatasetDict`` (with ``split``), ``IterableDataset``, a
            list of dicts or a local file path.
        reward_funcs: reward functions (or one), TRL's convention; reward models allowed (see
            :class:`RewardFunctions`).
        reward_weights: one weight per function; default all 1.
        prompt_column: the column holding the prompt; reward functions receive it as ``prompts``.
        on_failure: ``"raise"`` or ``"skip"`` (see :class:`RewardFunctions`).
        reward_processing_classes: one tokenizer per reward model (TRL's argument).
        split: the split of a ``DatasetDict``.
    """

    def __init__(self, dataset: Any, reward_funcs: Sequence[Callable] | Callable,
                 reward_weights: Sequence[float] | None = None, prompt_column: str = PROMPT_COLUMN,
                 on_failure: str = "raise", reward_processing_classes: Any = None,
                 split: str | None = None):
        self.rows = load_rows(dataset, split)
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
        self.rewards = RewardFunctions(reward_funcs, reward_weights, on_failure,
                                       reward_processing_classes)
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
