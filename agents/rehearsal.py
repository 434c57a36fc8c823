"""Continual learners for rehearsal streams (Gandhi et al. 2024, arXiv 2401.10393): an MLP
classifier trained on a :class:`~maxent.envs.continual.PermutedTaskStream` batch by batch, so the
stream's rehearsal schedule (none, uniform, exponential or power-law recency) decides what it
revisits; and elastic weight consolidation (Kirkpatrick et al. 2017, PNAS 114:3521) with a
diagonal Fisher, the regularisation baseline.

Read top to bottom: config, network, the EWC penalty and Fisher, the learner (one gradient step
per batch; at each phase end the accuracy on every task), save/load.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from maxent.training.agent import Agent, AgentConfig
from maxent.training.checkpoint import CheckpointError
from maxent.training.saved import Array, Generator, Module, Optimizer, Value
from maxent.envs.continual import PermutedTaskStream

__all__ = ["EWC", "EWCConfig", "RehearsalConfig", "RehearsalLearner", "diagonal_fisher",
           "ewc_penalty"]

# lambda = 500, as in the public course project's EWC baseline that the power-law rehearsal study
# compares against.
EWC_LAMBDA = 500.0
CLASSIFICATION_LOSS = "train/classification_loss"
MEAN_TASK_ACCURACY = "eval/mean_task_accuracy"


# --------------------------------------------------------------------------- config


@dataclass
class RehearsalConfig(AgentConfig):
    """Settings of :class:`RehearsalLearner`.

    Attributes:
        hidden_sizes: widths of the MLP's hidden layers; default (256, 256).
        dropout: dropout probability after each hidden layer, in [0, 1); default 0.0.
        learning_rate: Adam step size; default 1e-3.
        ewc_lambda: strength λ of the EWC penalty (λ/2) Σ_k Σ_i F_k,i (θ_i - θ*_k,i)^2, >= 0;
            default 0.0 (off). :class:`EWC` defaults it to 500.
        fisher_samples: training inputs per task used to estimate the diagonal Fisher, >= 1;
            default 256.
        facilitation_batches: record the new task's test accuracy after this many of its
            batches (forward facilitation: does a later task start faster?), >= 1; default 5.
        eval_batch_size: inputs per forward pass when evaluating; default 2048.
        torch_threads: intra-op threads for torch on CPU, set when the learner is built; ``None``
            leaves torch's setting. Default 1: these MLPs are too small to gain from more.
    """

    hidden_sizes: tuple[int, ...] = (256, 256)
    dropout: float = 0.0
    learning_rate: float = 1e-3
    ewc_lambda: float = 0.0
    fisher_samples: int = 256
    facilitation_batches: int = 5
    eval_batch_size: int = 2048
    torch_threads: int | None = 1

    def __post_init__(self) -> None:
        name = type(self).__name__
        self.hidden_sizes = tuple(self.hidden_sizes)
        if not self.hidden_sizes or any(int(h) != h or h < 1 for h in self.hidden_sizes):
            raise ValueError(f"{name}.hidden_sizes must be positive integers, got "
                             f"{self.hidden_sizes!r}")
        self.hidden_sizes = tuple(int(h) for h in self.hidden_sizes)
        if not 0 <= self.dropout < 1:
            raise ValueError(f"{name}.dropout must be in [0, 1), got {self.dropout!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"{name}.learning_rate must be > 0, got {self.learning_rate!r}")
        if not (self.ewc_lambda >= 0 and np.isfinite(self.ewc_lambda)):
            raise ValueError(f"{name}.ewc_lambda must be a finite number >= 0, got "
                             f"{self.ewc_lambda!r}")
        for f in ("fisher_samples", "facilitation_batches", "eval_batch_size"):
            v = getattr(self, f)
            if isinstance(v, bool) or int(v) != v or v < 1:
                raise ValueError(f"{name}.{f} must be an integer >= 1, got {v!r}")
            setattr(self, f, int(v))
        if self.torch_threads is not None and (int(self.torch_threads) != self.torch_threads
                                               or self.torch_threads < 1):
            raise ValueError(f"{name}.torch_threads must be an integer >= 1 or None, got "
                             f"{self.torch_threads!r}")


@dataclass
class EWCConfig(RehearsalConfig):
    """Settings of :class:`EWC`: those of :class:`RehearsalConfig` with ``ewc_lambda`` = 500."""

    ewc_lambda: float = field(default=EWC_LAMBDA)


# --------------------------------------------------------------------------- network


class MLP(nn.Module):
    """ReLU MLP ``in -> hidden... -> n_classes``; dropout draws from the learner's generator so a
    run is reproducible and resumable exactly."""

    def __init__(self, n_in: int, hidden: Sequence[int], n_out: int, dropout: float):
        super().__init__()
        sizes = [n_in, *hidden]
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        self.out = nn.Linear(sizes[-1], n_out)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        for layer in self.hidden:
            x = torch.relu(layer(x))
            if self.training and self.dropout > 0 and generator is not None:
                keep = torch.rand(x.shape, generator=generator) >= self.dropout
                x = x * keep / (1.0 - self.dropout)
        return self.out(x)  # (batch, n_classes) logits


# --------------------------------------------------------------------------- EWC


def ewc_penalty(params: dict[str, torch.Tensor], anchors: Sequence[dict[str, torch.Tensor]],
                fishers: Sequence[dict[str, torch.Tensor]], lam: float) -> torch.Tensor:
    """EWC penalty (Kirkpatrick et al. 2017, eq. 3, one term per earlier task k):
    ``(λ/2) Σ_k Σ_i F_k,i (θ_i - θ*_k,i)^2``.

    Args:
        params: name -> current parameter θ.
        anchors: per earlier task, name -> θ*_k (the weights after learning task k).
        fishers: per earlier task, name -> diagonal Fisher F_k (same shapes).
        lam: λ >= 0.

    Returns:
        A scalar tensor (0 with no earlier task); differentiable in ``params``.
    """
    if len(anchors) != len(fishers):
        raise ValueError(f"need one Fisher per anchor, got {len(anchors)} anchors and "
                         f"{len(fishers)} Fishers")
    if not lam >= 0:
        raise ValueError(f"lam must be >= 0, got {lam!r}")
    total = torch.zeros(())
    for anchor, fisher in zip(anchors, fishers):
        for name, p in params.items():
            total = total + (fisher[name] * (p - anchor[name]).pow(2)).sum()
    return 0.5 * lam * total


def diagonal_fisher(model: nn.Module, X: torch.Tensor, generator: torch.Generator
                    ) -> dict[str, torch.Tensor]:
    """Diagonal Fisher of ``model`` at inputs X (n, D): ``mean_x E_{y~p(y|x)} (∂ log p(y|x)/∂θ)^2``,
    with one label sampled from the model per input (unbiased; per-sample gradients by vmap)."""
    params = {k: v.detach() for k, v in model.named_parameters()}
    was_training = model.training
    model.eval()
    with torch.no_grad():
        probs = torch.softmax(model(X), dim=-1)
        y = torch.multinomial(probs, 1, generator=generator).squeeze(1)  # (n,)
    onehot = nn.functional.one_hot(y, probs.shape[1]).to(X.dtype)  # (n, C): no indexing in vmap

    def log_lik(p: dict[str, torch.Tensor], x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = functional_call(model, p, (x.unsqueeze(0),))  # (1, C)
        return (torch.log_softmax(logits, dim=-1)[0] * target).sum()

    per_sample = vmap(grad(log_lik), in_dims=(None, 0, 0))(params, X, onehot)  # name -> (n, ...)
    model.train(was_training)
    return {k: g.pow(2).mean(0) for k, g in per_sample.items()}


# --------------------------------------------------------------------------- learner


class RehearsalLearner(Agent):
    """MLP classifier trained on a task stream, one Adam step per batch (cross-entropy, plus the
    EWC penalty when ``config.ewc_lambda > 0``).

    One learning step is one batch of the stream. After each phase (new task and its rehearsal)
    the learner evaluates every task's test set into ``accuracy[phase]``, so
    ``accuracy[i, j]`` is the accuracy on task ``j`` after phase ``i``; ``early_accuracy[t]`` is
    task ``t``'s test accuracy after its first ``facilitation_batches`` batches. ``learn`` stops
    at the end of the stream (``finished`` becomes True).

    Args:
        stream: a :class:`~maxent.envs.continual.PermutedTaskStream`; ``None`` builds the default
            one (10 permuted-digit tasks, power-law rehearsal).
        config: a :class:`RehearsalConfig`; default ``RehearsalConfig()``.
        seed: seeds the initial weights, dropout and Fisher sampling; default 0.
    """

    config_cls: type = RehearsalConfig
    default_log_interval = 100
    env_kind = "none"  # a task stream, not an env

    def __init__(self, stream: PermutedTaskStream | None = None, config: Any = None,
                 seed: int = 0, log_dir: str | Path | None = None):
        self.stream = PermutedTaskStream() if stream is None else stream
        if not isinstance(self.stream, PermutedTaskStream):
            raise TypeError(f"stream must be a PermutedTaskStream, got {type(stream).__name__}")
        super().__init__(None, config, seed, log_dir)
        s = self.stream
        with torch.random.fork_rng(devices=[]):  # seeded initial weights; global RNG untouched
            torch.manual_seed(self.seed)
            self.model = MLP(s.n_features, self.config.hidden_sizes, s.n_classes,
                             self.config.dropout)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.config.learning_rate)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.anchors: list[dict[str, torch.Tensor]] = []
        self.fishers: list[dict[str, torch.Tensor]] = []
        n = s.n_tasks
        self.accuracy = np.full((n, n), np.nan)  # (phase, task)
        self.early_accuracy = np.full(n, np.nan)  # (task,)
        self.losses: list[float] = []
        self.phase = 0
        self.batch_index = 0  # next batch within the phase
        self._batches = None

    @property
    def finished(self) -> bool:
        """True once every phase of the stream has been trained."""
        return self.phase >= self.stream.n_tasks

    # -- evaluation
    @torch.no_grad()
    def logits(self, X: np.ndarray) -> torch.Tensor:
        """Logits for inputs X (n, D) in eval mode, (n, n_classes)."""
        was_training = self.model.training
        self.model.eval()
        x = torch.as_tensor(np.asarray(X, dtype=np.float32))
        out = torch.cat([self.model(x[i:i + self.config.eval_batch_size])
                         for i in range(0, len(x), self.config.eval_batch_size)])
        self.model.train(was_training)
        return out

    def task_accuracy(self, task: int) -> float:
        """Test accuracy on task ``task``."""
        X, y = self.stream.test_set(task)
        return float((self.logits(X).argmax(1).numpy() == y).mean())

    def evaluate_tasks(self) -> np.ndarray:
        """Test accuracy on every task of the stream, shape (n_tasks,)."""
        return np.array([self.task_accuracy(t) for t in range(self.stream.n_tasks)])

    def predict(self, observation: Any, deterministic: bool = True) -> np.ndarray:
        """Class of one input (D,) or of a batch (n, D); ``deterministic=False`` samples it from
        the softmax."""
        x = np.asarray(observation, dtype=np.float32)
        if x.ndim not in (1, 2) or x.shape[-1] != self.stream.n_features:
            raise ValueError(f"observation must have shape ({self.stream.n_features},) or "
                             f"(n, {self.stream.n_features}), got {x.shape}")
        logits = self.logits(x.reshape(-1, x.shape[-1]))
        if deterministic:
            out = logits.argmax(1)
        else:
            out = torch.multinomial(torch.softmax(logits, 1), 1, generator=self.generator)[:, 0]
        out = out.numpy().astype(np.int64)
        return out[0] if x.ndim == 1 else out

    # -- the update
    def _train_step(self, X: np.ndarray, y: np.ndarray) -> float:
        self.model.train()
        logits = self.model(torch.as_tensor(X), generator=self.generator)
        loss = nn.functional.cross_entropy(logits, torch.as_tensor(y))
        if self.config.ewc_lambda > 0 and self.anchors:
            loss = loss + self._consolidated_penalty()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def _task_learned(self, task: int) -> None:
        """After a new task's own batches: EWC anchors the weights with that task's Fisher."""
        if self.config.ewc_lambda <= 0:
            return
        X, _ = self.stream.train_set(task)
        idx = torch.randperm(len(X), generator=self.generator)[:self.config.fisher_samples]
        fisher = diagonal_fisher(self.model, torch.as_tensor(X[idx.numpy()]), self.generator)
        self.fishers.append(fisher)
        self.anchors.append({k: v.detach().clone() for k, v in self.model.named_parameters()})
        self._consolidate()

    def _consolidate(self) -> None:
        # Σ_k F_k (θ - θ*_k)^2 = A (θ - m)^2 + c with A = Σ_k F_k, m = Σ_k F_k θ*_k / A: one
        # quadratic per parameter whatever the number of tasks (c is constant in θ; kept so the
        # value equals ewc_penalty's). Sums in float64 to keep the cancellation exact enough.
        self._ewc_A, self._ewc_m, c = {}, {}, 0.0
        for name, p in self.model.named_parameters():
            F = torch.stack([f[name] for f in self.fishers]).double()  # (k, ...)
            th = torch.stack([a[name] for a in self.anchors]).double()
            A = F.sum(0)
            m = torch.where(A > 0, (F * th).sum(0) / A.clamp_min(1e-300), th[-1])
            c += float((F * (th - m).pow(2)).sum())
            self._ewc_A[name], self._ewc_m[name] = A.to(p.dtype), m.to(p.dtype)
        self._ewc_c = c

    def _consolidated_penalty(self) -> torch.Tensor:
        total = sum((self._ewc_A[k] * (p - self._ewc_m[k]).pow(2)).sum()
                    for k, p in self.model.named_parameters())
        return 0.5 * self.config.ewc_lambda * (total + self._ewc_c)

    # -- the loop
    def _finished(self) -> bool:
        return self.finished

    def _learn_step(self) -> None:
        """One batch of the stream; after a phase's last batch, every task's test accuracy."""
        if self._batches is None:
            self._batches = self.stream.phase_batches(self.phase)
        n_new = self.stream.n_new_batches()
        batch = self._batches[self.batch_index]
        loss = self._train_step(batch.X, batch.y)
        self.losses.append(loss)
        self.logger.record(CLASSIFICATION_LOSS, loss)
        self.batch_index += 1
        self.num_timesteps += 1
        if self.batch_index == min(self.config.facilitation_batches, n_new):
            self.early_accuracy[self.phase] = self.task_accuracy(self.phase)
        if self.batch_index == n_new:
            self._task_learned(self.phase)
        if self.batch_index == len(self._batches):
            self.accuracy[self.phase] = self.evaluate_tasks()
            self.logger.record(MEAN_TASK_ACCURACY, float(np.nanmean(self.accuracy[self.phase])))
            self.phase += 1
            self.batch_index = 0
            self._batches = None

    def _headline(self) -> dict[str, str]:
        return {"phase": f"{min(self.phase + 1, self.stream.n_tasks)}/{self.stream.n_tasks}"}

    def evaluate(self, n_episodes: int = 10, env: Any = None, seed: int = 0,
                 deterministic: bool = True) -> np.ndarray:
        """Test accuracy on every task of the stream, shape (n_tasks,) (the stream has no
        episodes: ``n_episodes``, ``env`` and ``seed`` are ignored)."""
        return self.evaluate_tasks()

    # -- checkpoints
    def _saved(self):
        """Weights, optimizer, stream position, accuracy records and RNG state. The stream is
        saved as its configuration (a stream built from user data needs ``env=stream`` again at
        load)."""
        return [
            Module("model", self.model),
            Optimizer("optim", self.optimizer, key="optimizer"),
            Generator("rng.torch", self.generator),
            Value("phase", self, "phase", load=int),
            Value("batch_index", self, "batch_index", load=int),
            Array("accuracy", self, "accuracy", required=True),
            Array("early_accuracy", self, "early_accuracy", required=True),
            Array("losses", self, "losses", required=True),
        ]

    def _checkpoint(self):
        """The declared contents and the EWC anchors and Fishers (as many as tasks consolidated)."""
        tensors, state, arrays = super()._checkpoint()
        for i, (anchor, fisher) in enumerate(zip(self.anchors, self.fishers)):
            tensors.update({f"ewc.{i}.anchor.{k}": v for k, v in anchor.items()})
            tensors.update({f"ewc.{i}.fisher.{k}": v for k, v in fisher.items()})
        state.update({"n_ewc": len(self.anchors), "stream": self.stream.to_config()})
        return tensors, state, arrays

    @classmethod
    def _saved_env(cls, ckpt: Any) -> PermutedTaskStream:
        return PermutedTaskStream.from_config(ckpt.state["stream"])

    def _restore(self, ckpt: Any, path: Path) -> None:
        if self.stream.to_config() != ckpt.state["stream"]:
            raise CheckpointError(f"the learner in {path} was trained on a different stream "
                                  f"({ckpt.state['stream']}); pass the same one")
        super()._restore(ckpt, path)
        tensors = ckpt.tensors
        names = [k for k, _ in self.model.named_parameters()]
        for i in range(int(ckpt.state["n_ewc"])):
            self.anchors.append({k: tensors[f"ewc.{i}.anchor.{k}"].clone() for k in names})
            self.fishers.append({k: tensors[f"ewc.{i}.fisher.{k}"].clone() for k in names})
        if self.anchors:
            self._consolidate()


class EWC(RehearsalLearner):
    """Elastic weight consolidation (Kirkpatrick et al. 2017): :class:`RehearsalLearner` with
    ``ewc_lambda`` = 500 by default. After each new task's batches it stores the weights θ*_k and
    a diagonal Fisher F_k from ``fisher_samples`` of that task's inputs; later steps add
    ``(λ/2) Σ_k Σ_i F_k,i (θ_i - θ*_k,i)^2``. Use it on a stream with schedule ``"none"`` for the
    pure baseline (or with rehearsal, to combine them). Same arguments as
    :class:`RehearsalLearner`, with an :class:`EWCConfig`."""

    config_cls = EWCConfig
