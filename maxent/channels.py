"""Exact discrete probability as string diagrams, and causal effects by surgery on them
(Jacobs, Kissinger & Zanasi 2019, "Causal Inference by String Diagram Surgery").

States are distributions over products of finite sets, channels are stochastic matrices, both
held as numpy arrays with one named axis per variable. Sequential and parallel composition,
marginalisation, copying and disintegration (conditionals) are exact array operations. Comb
disintegration of an observational joint over (S, T, C) followed by surgery on the S wire gives
the interventional channel do(S) -> C of the front-door model S -> T -> C with a hidden
confounder of S and C. A quantity that the data do not identify raises ``ValueError``; no
function here returns a number it cannot justify.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Channel",
    "Comb",
    "State",
    "comb_disintegrate",
    "front_door_formula",
    "interventional_from_mechanisms",
    "surgery_front_door",
    "surgery_front_door_joint",
]

# Tolerance on normalisation: |sum - 1| <= TOL.
TOL = 1e-9


def _as_names(names: Sequence[str] | str, what: str) -> tuple[str, ...]:
    if isinstance(names, str):
        names = (names,)
    names = tuple(names)
    for n in names:
        if not isinstance(n, str):
            raise TypeError(f"{what}: variable names must be strings, got {n!r}")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"{what}: duplicate variable names {dup} in {names}")
    return names


def _check_known(names: Sequence[str], known: Sequence[str], what: str) -> None:
    missing = [n for n in names if n not in known]
    if missing:
        raise ValueError(
            f"{what}: unknown variable(s) {missing}; the existing names are {tuple(known)}"
        )


def _check_nonnegative(a: np.ndarray, what: str) -> None:
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{what}: entries must be finite, got NaN or inf")
    if np.any(a < 0):
        idx = tuple(int(i) for i in np.argwhere(a < 0)[0])
        raise ValueError(f"{what}: negative entries are not probabilities, e.g. {a[idx]} at {idx}")


def _fmt(names: Sequence[str], idx: Sequence[int]) -> str:
    return ", ".join(f"{n}={int(i)}" for n, i in zip(names, idx))


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=np.float64, copy=True)
    a.setflags(write=False)
    return a


class State:
    """A distribution over the product of finite sets, one numpy axis per named variable.

    Args:
        probs: array of probabilities, shape ``dims``. A flat array of ``prod(dims)`` entries is
            reshaped in C order (the paper lists joints as 000, 001, ..., 111).
        names: one distinct name per axis.
        dims: the cardinalities; defaults to ``probs.shape``.
    """

    def __init__(self, probs, names: Sequence[str] | str, dims: Sequence[int] | None = None):
        names = _as_names(names, "State")
        p = np.asarray(probs, dtype=np.float64)
        if dims is not None:
            dims = tuple(int(d) for d in dims)
            if p.shape != dims:
                if p.ndim == 1 and p.size == int(np.prod(dims)):
                    p = p.reshape(dims)
                else:
                    raise ValueError(f"State: probs of shape {p.shape} does not match dims {dims}")
        if p.ndim != len(names):
            raise ValueError(
                f"State: probs has {p.ndim} axes of shape {p.shape} but {len(names)} names {names}"
            )
        _check_nonnegative(p, "State")
        total = float(p.sum())
        if abs(total - 1.0) > TOL:
            raise ValueError(f"State: probabilities must sum to 1 (tol {TOL}), got {total!r}")
        self.probs = _frozen(p)
        self.names = names

    @property
    def dims(self) -> tuple[int, ...]:
        return self.probs.shape

    def dim(self, name: str) -> int:
        _check_known([name], self.names, "State.dim")
        return self.probs.shape[self.names.index(name)]

    def __repr__(self) -> str:
        return f"State(names={self.names}, dims={self.dims})"

    def marginal(self, *names: str) -> State:
        """Sum out every other variable; axes come back in the requested order."""
        names = _as_names(names, "State.marginal")
        _check_known(names, self.names, "State.marginal")
        drop = tuple(i for i, n in enumerate(self.names) if n not in names)
        p = self.probs.sum(axis=drop)
        kept = [n for n in self.names if n in names]
        p = np.transpose(p, [kept.index(n) for n in names])
        return State(p, names)

    def conditional(
        self,
        target: Sequence[str] | str,
        given: Sequence[str] | str = (),
        on_zero: str = "raise",
    ) -> Channel:
        """Disintegration: the channel ``given -> target`` with entries P(target | given).

        Where a ``given`` configuration has probability 0 the conditional is not determined:
        raise naming it, or with ``on_zero="uniform"`` fill that row uniformly.
        """
        target = _as_names(target, "State.conditional target")
        given = _as_names(given, "State.conditional given")
        if not target:
            raise ValueError("State.conditional: target must name at least one variable")
        _check_known(target + given, self.names, "State.conditional")
        both = set(target) & set(given)
        if both:
            raise ValueError(f"State.conditional: {sorted(both)} in both target and given")
        if on_zero not in ("raise", "uniform"):
            raise ValueError(
                f"State.conditional: on_zero must be 'raise' or 'uniform', got {on_zero!r}"
            )
        m = self.marginal(*given, *target).probs  # (*given_dims, *target_dims)
        t_axes = tuple(range(len(given), m.ndim))
        pg = m.sum(axis=t_axes, keepdims=True)  # (*given_dims, 1, ..., 1)
        zero = pg == 0
        if np.any(zero):
            if on_zero == "raise":
                idx = np.argwhere(zero.reshape(zero.shape[: len(given)]))[0]
                raise ValueError(
                    f"State.conditional: P({_fmt(given, idx)}) = 0, so P({', '.join(target)} | "
                    f"{_fmt(given, idx)}) is not determined; pass on_zero='uniform' to fill it"
                )
            n_t = int(np.prod(m.shape[len(given) :]))
            cond = np.where(zero, 1.0 / n_t, m / np.where(zero, 1.0, pg))
        else:
            cond = m / pg
        return Channel(cond, given, target)

    def product(self, other: State) -> State:
        """Parallel composition (tensor product); names must be disjoint."""
        common = set(self.names) & set(other.names)
        if common:
            raise ValueError(f"State.product: names must be disjoint, both have {sorted(common)}")
        return State(np.multiply.outer(self.probs, other.probs), self.names + other.names)

    __matmul__ = product

    def copy(self, name: str, new_name: str) -> State:
        """The copier applied to ``name``: a new last axis ``new_name`` equal to it."""
        _check_known([name], self.names, "State.copy")
        if new_name in self.names:
            raise ValueError(f"State.copy: {new_name!r} already names a variable in {self.names}")
        k = self.names.index(name)
        d = self.probs.shape[k]
        shape = [1] * self.probs.ndim + [d]
        shape[k] = d
        p = self.probs[..., None] * np.eye(d).reshape(shape)  # (*dims, d)
        return State(p, self.names + (new_name,))

    def prob(self, **assignment: int) -> float:
        """P(assignment); variables left out are marginalised."""
        _check_known(list(assignment), self.names, "State.prob")
        m = self.marginal(*assignment)
        idx = []
        for n, v in assignment.items():
            d = m.dim(n)
            if not 0 <= int(v) < d:
                raise ValueError(f"State.prob: {n}={v} is outside 0..{d - 1}")
            idx.append(int(v))
        return float(m.probs[tuple(idx)])

    def __rshift__(self, channel: Channel) -> State:
        """``state >> channel``: push the state forward along the channel."""
        return channel.push(self)


class Channel:
    """A stochastic matrix from the product of ``inputs`` to the product of ``outputs``.

    Args:
        matrix: shape ``(*input_dims, *output_dims)``; for each input configuration the output
            axes sum to 1.
        inputs: one distinct name per input axis (may be empty: a channel from the unit set).
        outputs: one distinct name per output axis.
    """

    def __init__(self, matrix, inputs: Sequence[str] | str, outputs: Sequence[str] | str):
        inputs = _as_names(inputs, "Channel inputs")
        outputs = _as_names(outputs, "Channel outputs")
        m = np.asarray(matrix, dtype=np.float64)
        if m.ndim != len(inputs) + len(outputs):
            raise ValueError(
                f"Channel: matrix of shape {m.shape} has {m.ndim} axes but there are "
                f"{len(inputs)} inputs {inputs} and {len(outputs)} outputs {outputs}"
            )
        _check_nonnegative(m, "Channel")
        sums = m.sum(axis=tuple(range(len(inputs), m.ndim)))  # (*input_dims,)
        bad = np.abs(sums - 1.0) > TOL
        if np.any(bad):
            idx = np.argwhere(np.atleast_1d(bad).reshape(np.shape(sums)))[0]
            raise ValueError(
                f"Channel: outputs must sum to 1 for each input, got {float(sums[tuple(idx)])!r} "
                f"at input ({_fmt(inputs, idx)})"
            )
        self.matrix = _frozen(m)
        self.inputs = inputs
        self.outputs = outputs

    @property
    def in_dims(self) -> tuple[int, ...]:
        return self.matrix.shape[: len(self.inputs)]

    @property
    def out_dims(self) -> tuple[int, ...]:
        return self.matrix.shape[len(self.inputs) :]

    def __repr__(self) -> str:
        return f"Channel({self.inputs} {self.in_dims} -> {self.outputs} {self.out_dims})"

    @staticmethod
    def identity(name: str, dim: int, out_name: str | None = None) -> Channel:
        """The wire ``name -> out_name`` (``out_name`` defaults to ``name``)."""
        return Channel(np.eye(dim), (name,), (out_name or name,))

    @staticmethod
    def copier(name: str, dim: int, out_names: Sequence[str]) -> Channel:
        """The copier ``name -> (out_names...)``: every output equals the input."""
        out_names = _as_names(out_names, "Channel.copier")
        m = np.zeros((dim,) * (1 + len(out_names)))
        for i in range(dim):
            m[(i,) * m.ndim] = 1.0
        return Channel(m, (name,), out_names)

    def then(self, other: Channel) -> Channel:
        """Sequential composition: self's outputs feed other's inputs (matched by name)."""
        if set(other.inputs) != set(self.outputs):
            raise ValueError(
                f"Channel.then: outputs {self.outputs} must be exactly the next channel's "
                f"inputs {other.inputs}"
            )
        ni, no = len(self.inputs), len(self.outputs)
        for n in other.inputs:
            if other.in_dims[other.inputs.index(n)] != self.out_dims[self.outputs.index(n)]:
                raise ValueError(f"Channel.then: {n!r} has different sizes in the two channels")
        a_lab = list(range(ni + no))
        b_lab = [ni + self.outputs.index(n) for n in other.inputs]
        b_lab += list(range(ni + no, ni + no + len(other.outputs)))
        out_lab = list(range(ni)) + b_lab[len(other.inputs) :]
        m = np.einsum(self.matrix, a_lab, other.matrix, b_lab, out_lab)  # (*in, *out2)
        return Channel(m, self.inputs, other.outputs)

    __rshift__ = then

    def parallel(self, other: Channel) -> Channel:
        """Parallel composition: inputs ``(*self.inputs, *other.inputs)``, outputs likewise."""
        for side, a, b in (
            ("inputs", self.inputs, other.inputs),
            ("outputs", self.outputs, other.outputs),
        ):
            common = set(a) & set(b)
            if common:
                raise ValueError(
                    f"Channel.parallel: {side} must be disjoint, both have {sorted(common)}"
                )
        i1, o1, i2, o2 = (
            len(self.inputs),
            len(self.outputs),
            len(other.inputs),
            len(other.outputs),
        )
        a_in, a_out = list(range(i1)), list(range(i1, i1 + o1))
        b_in = list(range(i1 + o1, i1 + o1 + i2))
        b_out = list(range(i1 + o1 + i2, i1 + o1 + i2 + o2))
        m = np.einsum(
            self.matrix, a_in + a_out, other.matrix, b_in + b_out, a_in + b_in + a_out + b_out
        )
        return Channel(m, self.inputs + other.inputs, self.outputs + other.outputs)

    def __matmul__(self, other: Channel) -> Channel:
        return self.parallel(other)

    def marginal(self, *outputs: str) -> Channel:
        """Discard every other output; outputs come back in the requested order."""
        outputs = _as_names(outputs, "Channel.marginal")
        _check_known(outputs, self.outputs, "Channel.marginal")
        ni = len(self.inputs)
        drop = tuple(ni + i for i, n in enumerate(self.outputs) if n not in outputs)
        m = self.matrix.sum(axis=drop)
        kept = [n for n in self.outputs if n in outputs]
        m = np.transpose(m, list(range(ni)) + [ni + kept.index(n) for n in outputs])
        return Channel(m, self.inputs, outputs)

    def _labels(self, state: State, what: str) -> list[int]:
        _check_known(self.inputs, state.names, what)
        for k, n in enumerate(self.inputs):
            if state.dim(n) != self.in_dims[k]:
                raise ValueError(
                    f"{what}: {n!r} has {state.dim(n)} values in the state but the channel "
                    f"expects {self.in_dims[k]}"
                )
        return [state.names.index(n) for n in self.inputs]

    def push(self, state: State) -> State:
        """``state >> channel``: the distribution of the outputs, inputs marginalised."""
        in_lab = self._labels(state, "Channel.push")
        n = len(state.names)
        out_lab = list(range(n, n + len(self.outputs)))
        p = np.einsum(state.probs, list(range(n)), self.matrix, in_lab + out_lab, out_lab)
        return State(p, self.outputs)

    def joint_with(self, state: State) -> State:
        """The graph state: joint over ``(*state.names, *outputs)``, P(x) P(outputs | x)."""
        in_lab = self._labels(state, "Channel.joint_with")
        common = set(self.outputs) & set(state.names)
        if common:
            raise ValueError(
                f"Channel.joint_with: outputs {sorted(common)} already name state variables"
            )
        n = len(state.names)
        out_lab = list(range(n, n + len(self.outputs)))
        p = np.einsum(
            state.probs, list(range(n)), self.matrix, in_lab + out_lab, list(range(n)) + out_lab
        )
        return State(p, state.names + self.outputs)

    def __call__(self, **assignment: int) -> State:
        """The output distribution at one input configuration, e.g. ``channel(S=1)``."""
        if set(assignment) != set(self.inputs):
            raise ValueError(
                f"Channel: call with exactly the inputs {self.inputs}, got {tuple(assignment)}"
            )
        idx = []
        for k, n in enumerate(self.inputs):
            v = int(assignment[n])
            if not 0 <= v < self.in_dims[k]:
                raise ValueError(f"Channel: {n}={v} is outside 0..{self.in_dims[k] - 1}")
            idx.append(v)
        return State(self.matrix[tuple(idx)], self.outputs)


@dataclass(frozen=True)
class Comb:
    """The comb disintegration of ω over (S, T, C) (JKZ 2019, Sec. 5-6).

    ``prior`` is ω_S; the comb has a first tooth ``first`` = ω_{T|S} and a second tooth
    ``second`` = ω_{C|S,T}, joined by the S wire the comb carries from one tooth to the next.
    Plugging ω_S into the comb gives back ω (``reassemble``). Surgery cuts the S wire that
    enters the first tooth and feeds the intervention there, while the second tooth keeps
    seeing ω_S: its S wire is ``second`` marginalised against ``prior`` (``tail``, T -> C).
    """

    prior: State  # ω_S, over (S,)
    first: Channel  # S -> T, entries ω(t | s)
    second: Channel  # (S, T) -> C, entries ω(c | s, t)

    @property
    def tail(self) -> Channel:
        """The second tooth with its S wire fed by ω_S: T -> C, Σ_s' ω(c|s',t) ω(s')."""
        m = np.einsum("a,atc->tc", self.prior.probs, self.second.matrix)  # (T, C)
        return Channel(m, self.second.inputs[1:], self.second.outputs)

    def reassemble(self) -> State:
        """ω rebuilt from the comb: ω(s, t, c) = ω(s) ω(t|s) ω(c|s,t)."""
        st = self.first.joint_with(self.prior)
        return self.second.joint_with(st)

    def surgery(self) -> Channel:
        """do(S) -> (T, C): ω(t|s) Σ_s' ω(c|s',t) ω(s')."""
        # The intervention s enters the first tooth only; T is copied into the tail.
        m = np.einsum("st,tc->stc", self.first.matrix, self.tail.matrix)  # (S, T, C)
        return Channel(m, self.first.inputs, self.first.outputs + self.tail.outputs)


def _front_door_names(joint: State, names: Sequence[str], what: str) -> None:
    if not isinstance(joint, State):
        raise TypeError(f"{what}: joint must be a State, got {type(joint).__name__}")
    _check_known(names, joint.names, what)
    if len(set(names)) != len(names):
        raise ValueError(f"{what}: cause, mediator and effect must be distinct, got {tuple(names)}")


def _check_front_door_positivity(p_st: np.ndarray, names: Sequence[str], what: str) -> None:
    """Identification needs ω(s) > 0 for all s and ω(s', t) > 0 whenever ω(t) > 0.

    p_st: (S, T), the joint of cause and mediator."""
    s, t = names
    p_s, p_t = p_st.sum(1), p_st.sum(0)
    if np.any(p_s == 0):
        v = int(np.argwhere(p_s == 0)[0, 0])
        raise ValueError(
            f"{what}: P({s}={v}) = 0, so P({t} | {s}={v}) and the effect of do({s}={v}) are not "
            f"identified from this joint (positivity fails)"
        )
    gap = (p_st == 0) & (p_t[None, :] > 0)
    if np.any(gap):
        a, b = (int(i) for i in np.argwhere(gap)[0])
        raise ValueError(
            f"{what}: P({s}={a}, {t}={b}) = 0 while P({t}={b}) > 0, so P(effect | {s}={a}, "
            f"{t}={b}) needed by the front-door formula is undetermined: the interventional "
            f"effect is not identified (positivity fails)"
        )


def comb_disintegrate(joint: State, first: str, middle: str, last: str) -> Comb:
    """Comb disintegration of ω over (first, middle, last) = (S, T, C) into ω_S and the comb
    (ω_{T|S}, ω_{C|S,T}). Other variables in ``joint`` are marginalised out first.

    Raises ValueError when the comb is not determined where surgery needs it (see
    ``surgery_front_door``).
    """
    names = (first, middle, last)
    _front_door_names(joint, names, "comb_disintegrate")
    w = joint.marginal(*names)
    _check_front_door_positivity(
        w.marginal(first, middle).probs, (first, middle), "comb_disintegrate"
    )
    # Rows (s, t) with ω(t) = 0 never carry weight; fill them uniformly.
    return Comb(
        prior=w.marginal(first),
        first=w.conditional(middle, first),
        second=w.conditional(last, (first, middle), on_zero="uniform"),
    )


def surgery_front_door_joint(joint: State, cause: str, mediator: str, effect: str) -> Channel:
    """The interventional channel do(cause) -> (mediator, effect):
    P(t, c | do(s)) = P(t|s) Σ_s' P(c|s',t) P(s'), by comb disintegration and surgery.

    Raises ValueError if a name is unknown or the effect is not identified (positivity fails).
    """
    return comb_disintegrate(joint, cause, mediator, effect).surgery()


def surgery_front_door(joint: State, cause: str, mediator: str, effect: str) -> Channel:
    """The interventional channel do(cause) -> effect:
    P(c | do(s)) = Σ_t P(t|s) Σ_s' P(c|s',t) P(s'); comb disintegration, then surgery.

    Raises ValueError if a name is unknown or the effect is not identified (positivity fails).
    """
    comb = comb_disintegrate(joint, cause, mediator, effect)
    return comb.first.then(comb.tail)


def front_door_formula(joint_array: np.ndarray) -> np.ndarray:
    """The textbook front-door formula on an array over (S, T, C); returns P(c | do(s)),
    shape (|S|, |C|). Independent of the channel code; raises when not identified."""
    w = np.asarray(joint_array, dtype=np.float64)
    if w.ndim != 3:
        raise ValueError(f"front_door_formula: expected an (S, T, C) array, got shape {w.shape}")
    _check_nonnegative(w, "front_door_formula")
    if abs(w.sum() - 1.0) > TOL:
        raise ValueError(f"front_door_formula: joint must sum to 1, got {float(w.sum())!r}")
    p_st = w.sum(axis=2)  # (S, T)
    _check_front_door_positivity(p_st, ("S", "T"), "front_door_formula")
    p_s = p_st.sum(axis=1)  # (S,)
    p_t_given_s = p_st / p_s[:, None]  # (S, T)
    safe = np.where(p_st > 0, p_st, 1.0)
    p_c_given_st = w / safe[:, :, None]  # (S, T, C); rows with ω(s,t)=0 carry no weight
    inner = np.tensordot(p_s, p_c_given_st, axes=(0, 0))  # (T, C)
    return p_t_given_s @ inner  # (S, C)


def interventional_from_mechanisms(
    p_u, p_s_given_u, p_t_given_s, p_c_given_t_u
) -> tuple[np.ndarray, np.ndarray]:
    """From mechanisms U -> S, S -> T, (T, U) -> C with U hidden, return the observational
    joint over (S, T, C) and the true P(t, c | do(s)), both shape (S, T, C).

    Args:
        p_u: (U,); p_s_given_u: (U, S); p_t_given_s: (S, T); p_c_given_t_u: (T, U, C).
    """
    arrs = [np.asarray(a, dtype=np.float64) for a in (p_u, p_s_given_u, p_t_given_s, p_c_given_t_u)]
    p_u, p_su, p_ts, p_ctu = arrs
    labels = ("p_u", "p_s_given_u", "p_t_given_s", "p_c_given_t_u")
    for a, name, nd in zip(arrs, labels, (1, 2, 2, 3)):
        if a.ndim != nd:
            raise ValueError(
                f"interventional_from_mechanisms: {name} must have {nd} axes, got {a.shape}"
            )
        _check_nonnegative(a, f"interventional_from_mechanisms: {name}")
        bad = np.abs(a.sum(axis=-1) - 1.0) > TOL
        if np.any(bad):
            raise ValueError(
                f"interventional_from_mechanisms: {name} must sum to 1 over its last axis, got "
                f"sums {a.sum(axis=-1).ravel()[:4]}"
            )
    nu, ns, nt = p_u.shape[0], p_su.shape[1], p_ts.shape[1]
    if p_su.shape[0] != nu or p_ts.shape[0] != ns or p_ctu.shape[:2] != (nt, nu):
        raise ValueError(
            "interventional_from_mechanisms: shapes disagree: p_u (U,), p_s_given_u (U, S), "
            f"p_t_given_s (S, T), p_c_given_t_u (T, U, C); got {[a.shape for a in arrs]}"
        )
    joint = np.einsum("u,us,st,tuc->stc", p_u, p_su, p_ts, p_ctu)  # (S, T, C)
    do = np.einsum("st,u,tuc->stc", p_ts, p_u, p_ctu)  # (S, T, C)
    return joint, do
