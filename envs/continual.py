"""Domain-incremental task streams with rehearsal schedules, after Gandhi et al. 2024 ("Natural
Mitigation of Catastrophic Interference", arXiv 2401.10393): after each new task, earlier tasks
are rehearsed with a probability that falls as a power law of the time since each was last seen
(Anderson & Schooler 1991's need odds), against no, uniform and exponentially decaying rehearsal
with the same sample budget.

Two pieces, each usable alone:

* :class:`RehearsalSchedule` -- pure and seeded: given the number of tasks it returns which past
  tasks are rehearsed after each new one, and with how many samples (:class:`RehearsalPlan`).
* :class:`PermutedTaskStream` -- the data: task ``k`` is a fixed pixel permutation of a base
  classification set (scikit-learn's 8x8 digits by default, or MNIST-format arrays a user
  supplies). It yields, phase by phase, shuffled mini-batches of the new task and then of the
  rehearsal samples the schedule asked for.

Time is counted in phases: phase ``t`` trains new task ``t`` and then rehearses tasks ``j < t``.
The age of task ``j`` at phase ``t`` is ``t - last_seen[j]`` (>= 1), where ``last_seen[j]`` is the
phase it was introduced or, with ``age_from="last_seen"``, last rehearsed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "SCHEDULES",
    "Batch",
    "PermutedTaskStream",
    "RehearsalPlan",
    "RehearsalSchedule",
    "average_accuracy",
    "fit_power_law_exponent",
    "forgetting",
    "load_base_digits",
]

SCHEDULES = ("none", "uniform", "exponential", "power")
AGE_FROM = ("last_seen", "introduced")


def _check_number(name: str, value: Any, *, positive: bool = False) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {value!r}") from None
    if not np.isfinite(out) or (positive and out <= 0):
        need = "a finite number > 0" if positive else "finite"
        raise ValueError(f"{name} must be {need}, got {value!r}")
    return out


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer, float, np.floating)) \
            or int(value) != value:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if int(value) < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


# --------------------------------------------------------------------------- the schedule


@dataclass(frozen=True)
class RehearsalPlan:
    """What a :class:`RehearsalSchedule` decided for a stream of ``n_tasks`` tasks.

    Attributes:
        counts: (n_tasks, n_tasks) int64; ``counts[t, j]`` samples of task ``j`` rehearsed after
            new task ``t`` (zero unless ``j < t``). Every row ``t >= 1`` sums to the budget
            (zero for ``"none"``).
        ages: (n_tasks, n_tasks) int64; ``ages[t, j]`` the age of task ``j`` when phase ``t``'s
            draws were made (``j < t``; 0 elsewhere).
        visits: (n_tasks, n_visits) int64; the task drawn by each visit of phase ``t``, -1 where
            nothing was drawn (phase 0, or schedule ``"none"``).
        visit_sizes: (n_visits,) int64; samples per visit (the budget split as evenly as possible).
    """

    counts: np.ndarray
    ages: np.ndarray
    visits: np.ndarray
    visit_sizes: np.ndarray

    def samples_rehearsed(self) -> int:
        """Total rehearsal samples over the whole stream."""
        return int(self.counts.sum())


class RehearsalSchedule:
    """Which earlier tasks to rehearse after each new task, and with how many samples.

    After new task ``t`` the budget is split into ``visits`` equal chunks; each chunk goes to one
    earlier task ``j < t`` drawn independently with probability proportional to ``w(age_j)``:

    ==============  ==================================  ========================================
    kind            ``w(a)``                            meaning
    ==============  ==================================  ========================================
    ``"power"``     ``a ** -exponent``                  Anderson-Schooler power-law recency
    ``"exponential"`` ``exp(-a / decay)``               exponentially decaying recency
    ``"uniform"``   ``1``                               every earlier task alike
    ``"none"``      --                                  no rehearsal (spends nothing)
    ==============  ==================================  ========================================

    Every rehearsing kind spends exactly ``budget`` samples per phase from phase 1 on, so they
    compare at equal cost. The plan depends only on the arguments (``seed`` included).

    Args:
        kind: one of :data:`SCHEDULES`; default ``"power"``.
        budget: rehearsal samples per phase, an integer >= 0; default 256. Must be 0 or at least
            ``visits``, so each visit rehearses at least one sample.
        exponent: power-law exponent, > 0; default 1.0 (the paper does not state its value). Used by ``"power"`` only, but always validated.
        decay: time constant of ``"exponential"`` in phases, > 0; default 2.0.
        visits: draws per phase, an integer >= 1; default 8. More visits spread the budget over
            more tasks; one visit gives all of it to a single task.
        age_from: ``"last_seen"`` (default: a rehearsal visit resets the task's age, as the paper's
            "time since it was last performed") or ``"introduced"`` (age since the task was new).
        seed: seeds the draws; default 0.
    """

    def __init__(self, kind: str = "power", budget: int = 256, exponent: float = 1.0,
                 decay: float = 2.0, visits: int = 8, age_from: str = "last_seen", seed: int = 0):
        if kind not in SCHEDULES:
            raise ValueError(f"unknown rehearsal schedule {kind!r}; choose one of {SCHEDULES}")
        if age_from not in AGE_FROM:
            raise ValueError(f"age_from must be one of {AGE_FROM}, got {age_from!r}")
        self.kind = kind
        self.exponent = _check_number("exponent", exponent, positive=True)
        self.decay = _check_number("decay", decay, positive=True)
        self.budget = _check_int("budget", budget, 0)
        self.visits = _check_int("visits", visits, 1)
        if 0 < self.budget < self.visits:
            raise ValueError(f"budget ({self.budget}) must be 0 or >= visits ({self.visits}) so "
                             "that every visit rehearses at least one sample; lower visits")
        self.age_from = age_from
        self.seed = _check_int("seed", seed, 0)

    def weights(self, ages: np.ndarray) -> np.ndarray:
        """Unnormalised rehearsal weight of tasks with the given ages (each >= 1), same shape."""
        ages = np.asarray(ages, dtype=np.float64)
        if np.any(ages < 1):
            raise ValueError(f"ages must be >= 1 (phases since last seen), got {ages.min()}")
        if self.kind == "power":
            return ages ** -self.exponent
        if self.kind == "exponential":
            return np.exp(-(ages - 1.0) / self.decay)  # shifted by 1: same ratios, no underflow
        if self.kind == "uniform":
            return np.ones_like(ages)
        return np.zeros_like(ages)

    def probabilities(self, ages: np.ndarray) -> np.ndarray:
        """Probability that one visit picks each task, shape of ``ages`` (sums to 1)."""
        w = self.weights(ages)
        total = w.sum()
        if total <= 0:  # "none", or every weight underflowed: fall back to the most recent
            if self.kind == "none":
                return w
            w = (np.asarray(ages) == np.min(ages)).astype(np.float64)
            total = w.sum()
        return w / total

    def plan(self, n_tasks: int) -> RehearsalPlan:
        """Draw the rehearsal of a stream of ``n_tasks`` tasks (>= 1); pure in the arguments."""
        n_tasks = _check_int("n_tasks", n_tasks, 1)
        rng = np.random.default_rng([self.seed, 0x5EED])
        sizes = np.array([len(c) for c in np.array_split(np.arange(self.budget), self.visits)],
                         dtype=np.int64)  # (visits,)
        counts = np.zeros((n_tasks, n_tasks), dtype=np.int64)
        ages = np.zeros((n_tasks, n_tasks), dtype=np.int64)
        visits = np.full((n_tasks, self.visits), -1, dtype=np.int64)
        last_seen = np.arange(n_tasks)  # task j is new at phase j
        rehearse = self.kind != "none" and self.budget > 0
        for t in range(1, n_tasks):
            age = t - last_seen[:t]  # (t,)
            ages[t, :t] = age
            if not rehearse:
                continue
            chosen = rng.choice(t, size=self.visits, p=self.probabilities(age))
            visits[t] = chosen
            np.add.at(counts[t], chosen, sizes)
            if self.age_from == "last_seen":
                last_seen[np.unique(chosen)] = t
        return RehearsalPlan(counts=counts, ages=ages, visits=visits, visit_sizes=sizes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able arguments; ``RehearsalSchedule(**d)`` rebuilds an equal schedule."""
        return {"kind": self.kind, "budget": self.budget, "exponent": self.exponent,
                "decay": self.decay, "visits": self.visits, "age_from": self.age_from,
                "seed": self.seed}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items())
        return f"RehearsalSchedule({args})"


def fit_power_law_exponent(plan: RehearsalPlan, bounds: tuple[float, float] = (1e-3, 20.0)) -> float:
    """Maximum-likelihood exponent of the visits of a plan under ``p(j) ∝ age_j ** -alpha``.

    Every visit of phase ``t`` chose one of tasks ``0..t-1`` whose ages are ``plan.ages[t, :t]``;
    the log-likelihood is ``Σ_visits [-alpha log a_chosen - log Σ_j a_j ** -alpha]`` (a
    conditional logit on ``-log age``), maximised over ``alpha`` in ``bounds``.
    """
    from scipy.optimize import minimize_scalar

    rows = [t for t in range(plan.visits.shape[0]) if plan.visits[t, 0] >= 0 and t >= 2]
    if not rows:
        raise ValueError("the plan has no phase with two or more candidate tasks to fit on")
    log_ages = [np.log(plan.ages[t, :t].astype(np.float64)) for t in rows]
    chosen = [np.log(plan.ages[t, plan.visits[t]].astype(np.float64)).sum() for t in rows]
    n_visits = plan.visits.shape[1]

    def nll(alpha: float) -> float:
        total = 0.0
        for la, c in zip(log_ages, chosen):
            z = -alpha * la
            m = z.max()
            total += -alpha * c - n_visits * (m + np.log(np.exp(z - m).sum()))
        return -total

    return float(minimize_scalar(nll, bounds=bounds, method="bounded").x)


# --------------------------------------------------------------------------- the data


def load_base_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits (ships offline): X (1797, 64) float32 in [0, 1], y (1797,) int64."""
    from sklearn.datasets import load_digits

    data = load_digits()
    return (data.data / 16.0).astype(np.float32), data.target.astype(np.int64)


def _validate_data(X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """Check user arrays and return X as (N, D) float32 in a [0, 1]-like range and y as int64."""
    if not isinstance(X, np.ndarray) or not isinstance(y, np.ndarray):
        raise TypeError(f"data must be a pair of numpy arrays (X, y), got "
                        f"({type(X).__name__}, {type(y).__name__})")
    if X.ndim not in (2, 3):
        raise ValueError(f"X must have shape (N, D) or MNIST's (N, H, W), got {X.shape}")
    if X.dtype == np.uint8:  # MNIST format: 0..255
        X = X.astype(np.float32) / 255.0
    elif np.issubdtype(X.dtype, np.floating):
        X = X.astype(np.float32)
        if not np.all(np.isfinite(X)):
            raise ValueError("X contains NaN or inf; clean it before building the stream")
    else:
        raise TypeError(f"X must be uint8 (MNIST format, 0..255) or floating point, got dtype "
                        f"{X.dtype}; convert it, e.g. X.astype(np.float32) / X.max()")
    X = X.reshape(X.shape[0], -1)
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise ValueError(f"y must have shape (N,) = ({X.shape[0]},) to match X, got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"y must hold integer class labels, got dtype {y.dtype}")
    if y.size and y.min() < 0:
        raise ValueError(f"y must hold class labels >= 0, got {y.min()}")
    if X.shape[0] < 10 or X.shape[1] < 2:
        raise ValueError(f"need at least 10 samples of at least 2 features, got X {X.shape}")
    return X, y.astype(np.int64)


class Batch(NamedTuple):
    """One mini-batch of a :class:`PermutedTaskStream`.

    Attributes:
        task_id: (batch,) int64, the task of each sample.
        X: (batch, D) float32 permuted inputs.
        y: (batch,) int64 labels.
        phase: the phase (= index of the newest task) the batch belongs to.
        rehearsal: False for the new task's batches, True for rehearsal batches.
    """

    task_id: np.ndarray
    X: np.ndarray
    y: np.ndarray
    phase: int
    rehearsal: bool


class PermutedTaskStream:
    """Permuted-input tasks, one new task per phase, each followed by scheduled rehearsal.

    Task ``k`` applies a fixed random pixel permutation to every input of the base set (task 0
    keeps the identity when ``identity_first``); labels are unchanged, so every task is the same
    10-way problem in a new input domain (domain-incremental). The base set is split once into
    train and test parts; each task's test set is the permuted test part.

    Phase ``t`` yields ``epochs`` shuffled passes over task ``t``'s training set in batches of
    ``batch_size``, then the rehearsal samples of ``schedule.plan(n_tasks).counts[t]`` (drawn
    without replacement from each task's training set when they fit), shuffled together into
    mixed-task batches. Iterating yields every phase in order; :meth:`phase_batches` gives one
    phase, so a learner can resume mid-stream.

    Args:
        n_tasks: number of tasks, >= 1; default 10.
        schedule: a schedule name from :data:`SCHEDULES` (built with ``rehearsal_fraction``,
            ``exponent``, ``decay``, ``visits``, ``age_from`` and ``seed``) or a
            :class:`RehearsalSchedule`; default ``"power"``.
        rehearsal_fraction: rehearsal budget per phase as a fraction of one task's training set,
            in [0, 1]; default 0.25. Ignored when ``schedule`` is an object (its budget is used,
            and must not exceed one task's training set).
        exponent, decay, visits, age_from: passed to :class:`RehearsalSchedule` when
            ``schedule`` is a name; defaults 1.0, 2.0, 8, ``"last_seen"``.
        epochs: passes over each new task's training set; default 3.
        batch_size: samples per batch, >= 1; default 32.
        data: ``(X, y)`` numpy arrays to use instead of scikit-learn's digits: X of shape (N, D)
            or MNIST's (N, H, W), uint8 (scaled by 1/255) or floating; y of shape (N,), integer.
        test_fraction: share of the base set held out for testing, in (0, 1); default 0.2.
        identity_first: task 0 uses the unpermuted inputs; default True.
        seed: seeds the split, the permutations, the schedule and the shuffles; default 0.
    """

    def __init__(self, n_tasks: int = 10, schedule: str | RehearsalSchedule = "power",
                 rehearsal_fraction: float = 0.25, exponent: float = 1.0, decay: float = 2.0,
                 visits: int = 8, age_from: str = "last_seen", epochs: int = 3,
                 batch_size: int = 32, data: tuple[np.ndarray, np.ndarray] | None = None,
                 test_fraction: float = 0.2, identity_first: bool = True, seed: int = 0):
        self.n_tasks = _check_int("n_tasks", n_tasks, 1)
        self.epochs = _check_int("epochs", epochs, 1)
        self.batch_size = _check_int("batch_size", batch_size, 1)
        self.seed = _check_int("seed", seed, 0)
        self.identity_first = bool(identity_first)
        self.test_fraction = _check_number("test_fraction", test_fraction)
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction!r}")
        self.custom_data = data is not None
        if data is None:
            X, y = load_base_digits()
        else:
            if not isinstance(data, (tuple, list)) or len(data) != 2:
                raise TypeError("data must be a pair (X, y) of numpy arrays, got "
                                f"{type(data).__name__}")
            X, y = _validate_data(*data)
        self.n_classes = int(y.max()) + 1
        self.n_features = int(X.shape[1])
        from sklearn.model_selection import train_test_split

        counts = np.bincount(y)
        stratify = y if counts[counts > 0].min() >= 2 else None
        self.X_train, self.X_test, self.y_train, self.y_test = train_test_split(
            X, y, test_size=self.test_fraction, random_state=self.seed, stratify=stratify)
        self.n_train = int(self.X_train.shape[0])

        rng = np.random.default_rng([self.seed, 1])
        perms = [rng.permutation(self.n_features) for _ in range(self.n_tasks)]
        if self.identity_first:
            perms[0] = np.arange(self.n_features)
        self.permutations = np.stack(perms)  # (n_tasks, D)

        if isinstance(schedule, RehearsalSchedule):
            self.schedule = schedule
        elif isinstance(schedule, str):
            fraction = _check_number("rehearsal_fraction", rehearsal_fraction)
            if fraction < 0:
                raise ValueError(f"rehearsal_fraction must be >= 0, got {rehearsal_fraction!r}")
            if fraction > 1:
                raise ValueError(f"rehearsal_fraction {rehearsal_fraction!r} > 1 would rehearse "
                                 f"more than one task's training set ({self.n_train} samples) "
                                 "per phase; use a value in [0, 1]")
            budget = round(fraction * self.n_train)
            if schedule == "none":
                budget = 0
            self.schedule = RehearsalSchedule(schedule, budget=budget, exponent=exponent,
                                              decay=decay, visits=visits, age_from=age_from,
                                              seed=self.seed)
        else:
            raise TypeError(f"schedule must be a name from {SCHEDULES} or a RehearsalSchedule, "
                            f"got {type(schedule).__name__}")
        if self.schedule.budget > self.n_train:
            raise ValueError(f"rehearsal budget {self.schedule.budget} exceeds one task's "
                             f"training set ({self.n_train} samples); lower it")
        self.plan = self.schedule.plan(self.n_tasks)

    # -- tasks
    def task_inputs(self, task: int, X: np.ndarray) -> np.ndarray:
        """Apply task ``task``'s permutation to base inputs X (N, D)."""
        return X[:, self.permutations[task]]

    def test_set(self, task: int) -> tuple[np.ndarray, np.ndarray]:
        """Task ``task``'s test inputs (N_test, D) float32 and labels (N_test,) int64."""
        self._check_task(task)
        return self.task_inputs(task, self.X_test), self.y_test

    def train_set(self, task: int) -> tuple[np.ndarray, np.ndarray]:
        """Task ``task``'s training inputs (N_train, D) and labels (N_train,)."""
        self._check_task(task)
        return self.task_inputs(task, self.X_train), self.y_train

    def _check_task(self, task: int) -> None:
        if not 0 <= int(task) < self.n_tasks:
            raise IndexError(f"task must be in [0, {self.n_tasks}), got {task}")

    # -- batches
    def n_new_batches(self) -> int:
        """Batches of the new task in every phase."""
        return self.epochs * -(-self.n_train // self.batch_size)

    def n_batches(self, phase: int) -> int:
        """All batches of phase ``phase`` (new task, then rehearsal)."""
        return self.n_new_batches() + -(-int(self.plan.counts[phase].sum()) // self.batch_size)

    def total_batches(self) -> int:
        """Batches in the whole stream."""
        return sum(self.n_batches(t) for t in range(self.n_tasks))

    def phase_batches(self, phase: int) -> list[Batch]:
        """Every batch of phase ``phase``, deterministic in ``(seed, phase)``."""
        self._check_task(phase)
        rng = np.random.default_rng([self.seed, 2, phase])
        X_new, y_new = self.train_set(phase)
        batches = []
        for _ in range(self.epochs):
            order = rng.permutation(self.n_train)
            for s in range(0, self.n_train, self.batch_size):
                idx = order[s:s + self.batch_size]
                batches.append(Batch(np.full(len(idx), phase, dtype=np.int64), X_new[idx],
                                     y_new[idx], phase, False))
        tasks, rows = [], []
        for j, n in enumerate(self.plan.counts[phase]):
            if n > 0:
                rows.append(rng.choice(self.n_train, size=int(n), replace=bool(n > self.n_train)))
                tasks.append(np.full(int(n), j, dtype=np.int64))
        if rows:
            task_id, row = np.concatenate(tasks), np.concatenate(rows)
            order = rng.permutation(len(row))
            task_id, row = task_id[order], row[order]
            # (n, D): each sample permuted by its own task
            X_reh = np.take_along_axis(self.X_train[row], self.permutations[task_id], axis=1)
            y_reh = self.y_train[row]
            for s in range(0, len(row), self.batch_size):
                sl = slice(s, s + self.batch_size)
                batches.append(Batch(task_id[sl], X_reh[sl], y_reh[sl], phase, True))
        return batches

    def __iter__(self):
        for t in range(self.n_tasks):
            yield from self.phase_batches(t)

    def samples_rehearsed(self) -> int:
        """Rehearsal samples over the whole stream (the budget actually spent)."""
        return self.plan.samples_rehearsed()

    # -- JSON form, so a learner's checkpoint can rebuild its stream
    def to_config(self) -> dict[str, Any]:
        """JSON-able constructor arguments (without ``data``; see :meth:`from_config`)."""
        return {"n_tasks": self.n_tasks, "schedule": self.schedule.to_dict(),
                "epochs": self.epochs, "batch_size": self.batch_size,
                "test_fraction": self.test_fraction, "identity_first": self.identity_first,
                "seed": self.seed, "custom_data": self.custom_data}

    @classmethod
    def from_config(cls, config: dict[str, Any], data: tuple[np.ndarray, np.ndarray] | None = None
                    ) -> PermutedTaskStream:
        """Rebuild a stream from :meth:`to_config`; a custom-data stream needs ``data`` again."""
        config = dict(config)
        if config.pop("custom_data", False) and data is None:
            raise ValueError("this stream was built from user-supplied data; pass data=(X, y) "
                             "(or the stream itself) to rebuild it")
        schedule = RehearsalSchedule(**config.pop("schedule"))
        return cls(schedule=schedule, data=data, **config)


# --------------------------------------------------------------------------- metrics


def _check_matrix(R: np.ndarray) -> np.ndarray:
    R = np.asarray(R, dtype=np.float64)
    if R.ndim != 2 or R.shape[0] != R.shape[1] or R.shape[0] < 1:
        raise ValueError(f"accuracy matrix must be square (n_tasks, n_tasks), got {R.shape}")
    return R


def average_accuracy(R: np.ndarray) -> float:
    """Mean accuracy over all tasks after the last phase: ``mean_j R[T-1, j]``.

    ``R[i, j]`` is the test accuracy on task ``j`` after phase ``i`` (new task ``i`` and its
    rehearsal)."""
    R = _check_matrix(R)
    return float(R[-1].mean())


def forgetting(R: np.ndarray) -> float:
    """Mean forgetting over tasks ``j < T-1`` (Chaudhry et al. 2018):
    ``mean_j max_{j <= i < T-1} R[i, j] - R[T-1, j]``; 0 for a single task."""
    R = _check_matrix(R)
    T = R.shape[0]
    if T == 1:
        return 0.0
    drops = [R[j:T - 1, j].max() - R[T - 1, j] for j in range(T - 1)]
    return float(np.mean(drops))
