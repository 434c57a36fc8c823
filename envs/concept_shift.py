"""Image classification as a contextual bandit under concept shift: two random classes swap their
labels k times per epoch (Man, Damasio & Neven 2022, "Need is All You Need: Homeostatic Neural
Networks Adapt to Concept Shift"; the authors swap two random MNIST classes at evenly spaced
points of each epoch).

The default data are scikit-learn's 8×8 digits (``load_digits``, shipped offline, pixels 0..16);
MNIST-format arrays can be passed instead. The single env and the vector env draw random numbers in
the same order from one generator per copy, so copy ``i`` of the vector env seeded ``s`` replays
the single env seeded ``s + i``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from maxent.envs._vector import CopiesVectorEnv

__all__ = ["ConceptShiftClassification", "ConceptShiftClassificationVector", "ConceptShiftData",
           "load_digits_data"]


def load_digits_data() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits: images (1797, 8, 8) float64 in 0..16 and labels (1797,) in 0..9."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.images, d.target


def _check_images(images: Any, labels: Any, pixel_max: float | None
                  ) -> tuple[np.ndarray, np.ndarray, int]:
    """Validate MNIST-format data; return flat float32 images in [0, 1] (N, D), int64 labels (N,)
    and the number of classes."""
    x = np.asarray(images)
    y = np.asarray(labels)
    if x.ndim not in (2, 3):
        raise ValueError(f"images must have shape (N, H, W) or (N, H*W), got shape {x.shape}")
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)) \
            or x.dtype == np.bool_:
        raise ValueError(f"images must be uint8 or float, got dtype {x.dtype}")
    if x.shape[0] < 2:
        raise ValueError(f"need at least 2 images, got {x.shape[0]}")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"labels must have shape (N,) = ({x.shape[0]},) to match the images, "
                         f"got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
            y = y.astype(np.int64)
        else:
            raise ValueError(f"labels must be integers, got dtype {y.dtype}")
    if y.min() < 0:
        raise ValueError(f"labels must be >= 0, found {int(y.min())}")
    x = x.reshape(x.shape[0], -1).astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError("images must be finite")
    if pixel_max is None:
        if np.issubdtype(np.asarray(images).dtype, np.integer):
            pixel_max = 255.0
        elif x.max() <= 1.0:
            pixel_max = 1.0
        else:
            raise ValueError(f"float images reach {x.max():g} > 1; pass pixel_max (e.g. 255.0 for "
                             "MNIST, 16.0 for sklearn digits) to scale them into [0, 1]")
    if not pixel_max > 0:
        raise ValueError(f"pixel_max must be > 0, got {pixel_max!r}")
    if x.min() < 0 or x.max() > pixel_max:
        raise ValueError(f"pixels must lie in [0, pixel_max = {pixel_max:g}], got "
                         f"[{x.min():g}, {x.max():g}]")
    return (x / pixel_max).astype(np.float32), y.astype(np.int64), int(y.max()) + 1


class ConceptShiftData:
    """Validated data and schedule shared by the single and the vector env.

    Args:
        images, labels, pixel_max, n_classes, swaps_per_epoch, epochs, test_fraction,
        split_seed: see :class:`ConceptShiftClassification`.
    """

    def __init__(self, images, labels, pixel_max, n_classes, swaps_per_epoch, epochs,
                 test_fraction, split_seed):
        if images is None and labels is None:
            images, labels = load_digits_data()
            pixel_max = 16.0 if pixel_max is None else pixel_max
        elif images is None or labels is None:
            raise ValueError("pass both images and labels, or neither for sklearn's digits")
        x, y, found = _check_images(images, labels, pixel_max)
        if n_classes is None:
            n_classes = found
        if int(n_classes) != n_classes or n_classes < 2:
            raise ValueError(f"n_classes must be an integer >= 2, got {n_classes!r}")
        if found > n_classes:
            raise ValueError(f"labels reach {found - 1} but n_classes = {n_classes}")
        self.n_classes = int(n_classes)
        if not 0.0 <= test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction!r}")
        order = np.random.default_rng(split_seed).permutation(len(y))
        n_test = round(test_fraction * len(y))
        if len(y) - n_test < 1:
            raise ValueError(f"test_fraction {test_fraction} leaves no training images")
        test, train = order[:n_test], order[n_test:]
        self.images, self.labels = x[train], y[train]  # (N, D) the stream, (N,) original classes
        self.test_images, self.test_labels = x[test], y[test]
        self.n = len(self.labels)
        self.dim = x.shape[1]
        if callable(swaps_per_epoch):
            self._swaps: Callable[[int], int] | None = swaps_per_epoch
            self._swap_list = None
        elif np.ndim(swaps_per_epoch) == 0:
            self._swaps = None
            self._swap_list = [self._check_k(swaps_per_epoch, 0)]
        else:
            self._swaps = None
            self._swap_list = [self._check_k(k, e) for e, k in enumerate(swaps_per_epoch)]
            if not self._swap_list:
                raise ValueError("swaps_per_epoch as a sequence must not be empty")
        if epochs is not None and (int(epochs) != epochs or epochs < 1):
            raise ValueError(f"epochs must be a positive integer or None, got {epochs!r}")
        self.epochs = None if epochs is None else int(epochs)

    def _check_k(self, k: Any, epoch: int) -> int:
        if isinstance(k, bool) or int(k) != k or k < 0:
            raise ValueError(f"swaps_per_epoch must be a non-negative integer, got {k!r} "
                             f"(epoch {epoch})")
        if k > self.n:
            raise ValueError(f"swaps_per_epoch = {k} (epoch {epoch}) exceeds the {self.n} samples "
                             "of an epoch")
        return int(k)

    def swaps(self, epoch: int) -> int:
        """k, the number of label swaps in epoch ``epoch`` (a sequence holds its last value)."""
        if self._swaps is not None:
            return self._check_k(self._swaps(epoch), epoch)
        return self._swap_list[min(epoch, len(self._swap_list) - 1)]

    def swap_points(self, epoch: int) -> np.ndarray:
        """Served-sample counts within the epoch after which a swap happens: round(i·N/k),
        i = 1..k (sorted; equal entries mean several swaps at once)."""
        k = self.swaps(epoch)
        return np.round(np.arange(1, k + 1) * self.n / max(k, 1)).astype(np.int64)

    def swap(self, label_map: np.ndarray, rng: np.random.Generator) -> tuple[int, int]:
        """Exchange the labels of two random distinct classes, in place."""
        c1, c2 = rng.choice(self.n_classes, 2, replace=False)
        i1, i2 = label_map == c1, label_map == c2
        label_map[i1], label_map[i2] = c2, c1
        return int(c1), int(c2)


class _Copy:
    """The state of one stream: order, position, epoch, label map and generator."""

    def __init__(self, data: ConceptShiftData, rng: np.random.Generator):
        self.data, self.rng = data, rng
        self.reset()

    def reset(self) -> None:
        d = self.data
        self.label_map = np.arange(d.n_classes)  # original class -> label now
        self.epoch = 0
        self.pos = 0  # samples served this epoch
        self.order = self.rng.permutation(d.n)
        self.points = d.swap_points(0)
        self.next_point = 0

    def current(self) -> int:
        return int(self.order[self.pos])

    def advance(self) -> tuple[bool, int, bool]:
        """Serve the current sample; return (swapped, swaps done, episode over)."""
        d = self.data
        self.pos += 1
        swaps = 0
        while self.next_point < len(self.points) and self.points[self.next_point] == self.pos:
            d.swap(self.label_map, self.rng)
            self.next_point += 1
            swaps += 1
        done = False
        if self.pos == d.n:
            self.epoch += 1
            done = d.epochs is not None and self.epoch >= d.epochs
            if not done:
                self.pos = 0
                self.order = self.rng.permutation(d.n)
                self.points = d.swap_points(self.epoch)
                self.next_point = 0
        return swaps > 0, swaps, done


class ConceptShiftClassification(gym.Env):
    """Classify one image per step; the labels of two random classes swap k times per epoch.

    ==============  =================================================================
    Action          ``Discrete(C)``: the predicted label
    Observation     ``Box(0, 1, (D,), float32)``: the image, flattened and scaled to
                    [0, 1] (D = 64 for the default digits, 784 for MNIST)
    Reward          1.0 if the action equals the image's current label, else 0.0
    Termination     never; truncated after ``epochs`` passes over the data (None: never)
    Info            ``label``: the true current label of the image just classified
                    (the supervised signal a learner may train on; it is given after
                    acting, so it does not leak into the action), ``epoch``,
                    ``swapped`` (labels swapped after this step), ``label_map`` (C,)
                    (original class -> current label; ground truth for analysis)
    ==============  =================================================================

    An epoch serves the training images once in a fresh random order. In epoch e the labels
    swap after round(i·N/k) samples, i = 1..k, k = ``swaps_per_epoch`` for that epoch: exactly k
    swaps per epoch at evenly spaced points. ``reset`` restores the original labels.

    Args:
        images: (N, H, W) or (N, H*W) uint8 or float images; default None loads sklearn's
            8×8 digits.
        labels: (N,) integer labels; required with ``images``.
        pixel_max: the value of a white pixel, used to scale into [0, 1]; default None: 16 for
            the digits, 255 for uint8, 1 for float images already in [0, 1].
        n_classes: number of labels C; default max(label) + 1.
        swaps_per_epoch: k, an integer; or a sequence giving k for epochs 0, 1, ... (the last
            value holds after it); or a callable ``epoch -> k``; default 0 (stationary).
        epochs: epochs per episode; default 50 (as the authors); None never truncates.
        test_fraction: share of the data held out for :meth:`evaluation_set`; default 0.2.
        split_seed: seed of the train/test split (fixed, independent of ``reset`` seeds);
            default 0.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, images: Any = None, labels: Any = None, pixel_max: float | None = None,
                 n_classes: int | None = None,
                 swaps_per_epoch: int | Sequence[int] | Callable[[int], int] = 0,
                 epochs: int | None = 50, test_fraction: float = 0.2, split_seed: int = 0,
                 render_mode: str | None = None):
        if render_mode is not None:
            raise ValueError(f"ConceptShiftClassification does not render, got "
                             f"render_mode={render_mode!r}")
        self.render_mode = render_mode
        self.data = ConceptShiftData(images, labels, pixel_max, n_classes, swaps_per_epoch,
                                     epochs, test_fraction, split_seed)
        self.action_space = spaces.Discrete(self.data.n_classes)
        self.observation_space = spaces.Box(0.0, 1.0, shape=(self.data.dim,), dtype=np.float32)
        self._copy: _Copy | None = None

    @property
    def label_map(self) -> np.ndarray:
        """(C,) original class -> current label."""
        return self._require().label_map.copy()

    def _require(self) -> _Copy:
        if self._copy is None:
            raise RuntimeError("call reset() before step()")
        return self._copy

    def evaluation_set(self) -> tuple[np.ndarray, np.ndarray]:
        """Held-out images (M, D) and their labels under the current label map (M,)."""
        c = self._require()
        return self.data.test_images, c.label_map[self.data.test_labels]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._copy = _Copy(self.data, self.np_random)
        return self.data.images[self._copy.current()].copy(), {"epoch": 0}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        c = self._require()
        a = np.asarray(action)
        if a.size != 1 or not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"action must be an integer label in [0, {self.data.n_classes}), "
                             f"got {action!r}")
        a = int(a.reshape(()))
        if not 0 <= a < self.data.n_classes:
            raise ValueError(f"action must be a label in [0, {self.data.n_classes}), got {a}")
        label = int(c.label_map[self.data.labels[c.current()]])
        epoch = c.epoch
        swapped, _, done = c.advance()
        info = {"label": label, "epoch": epoch, "swapped": swapped,
                "label_map": c.label_map.copy()}
        obs = self.data.images[c.current() if not done else self._last_index(c)].copy()
        return obs, float(a == label), False, done, info

    @staticmethod
    def _last_index(c: _Copy) -> int:
        return int(c.order[-1])  # after the final epoch: repeat the last image as the final obs


class ConceptShiftClassificationVector(CopiesVectorEnv):
    """``num_envs`` concept-shift streams over one shared data set, stepped at once; same
    arguments as :class:`ConceptShiftClassification` plus ``num_envs``.

    Rewards are computed for all copies in one numpy operation; the per-copy bookkeeping (position,
    epoch, label map) is a few integers each. Autoreset is Gymnasium's NEXT_STEP mode: the step
    after a copy truncates resets it (action ignored, reward 0). ``reset(seed=s)`` seeds copy i
    with ``s + i``, and copy i then replays the single env seeded ``s + i``. Infos: ``label``,
    ``epoch``, ``swapped`` (num_envs,) and ``label_map`` (num_envs, C).
    """

    def __init__(self, num_envs: int = 1, **kwargs: Any):
        self._check_num_envs(num_envs)
        if kwargs.pop("render_mode", None) is not None:
            raise ValueError("ConceptShiftClassificationVector does not render")
        single = ConceptShiftClassification(**kwargs)
        self.data = single.data
        self._adopt(single, num_envs, self.data.n_classes)
        self._copies: list[_Copy] = []

    def reset(self, *, seed: int | Sequence[int | None] | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        self._seed_copies(seed)
        self._copies = [_Copy(self.data, r) for r in self._rngs]
        self._needs_reset[:] = False
        return self._obs(), {"epoch": np.zeros(self.num_envs, dtype=np.int64),
                             "_epoch": np.ones(self.num_envs, dtype=bool)}

    def _index(self) -> np.ndarray:
        return np.array([int(c.order[min(c.pos, self.data.n - 1)]) for c in self._copies])

    def _obs(self) -> np.ndarray:
        return self.data.images[self._index()]  # (num_envs, D)

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        if not self._copies:
            raise RuntimeError("call reset() before step()")
        a = np.asarray(actions)
        if a.shape != (self.num_envs,) or not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"actions must be {self.num_envs} integer labels, got {actions!r}")
        if np.any((a < 0) | (a >= self.data.n_classes)):
            raise ValueError(f"actions must be labels in [0, {self.data.n_classes}), "
                             f"got {a.tolist()}")
        live = ~self._needs_reset
        maps = np.stack([c.label_map for c in self._copies])  # (n, C)
        labels = maps[np.arange(self.num_envs), self.data.labels[self._index()]]  # (n,)
        rewards = np.where(live, (a == labels).astype(np.float64), 0.0)
        epochs = np.array([c.epoch for c in self._copies], dtype=np.int64)
        swapped = np.zeros(self.num_envs, dtype=bool)
        truncated = np.zeros(self.num_envs, dtype=bool)
        for i, c in enumerate(self._copies):
            if live[i]:
                swapped[i], _, truncated[i] = c.advance()
            else:
                c.reset()
        self._needs_reset = truncated.copy()
        infos = {"label": labels, "_label": live, "epoch": epochs, "_epoch": live,
                 "swapped": swapped, "_swapped": live,
                 "label_map": np.stack([c.label_map for c in self._copies]),
                 "_label_map": np.ones(self.num_envs, dtype=bool)}
        return self._obs(), rewards, np.zeros(self.num_envs, dtype=bool), truncated, infos
