"""transformers ``TrainerCallback`` objects (what TRL users pass as ``callbacks``) run by maxent's
``learn`` loop: each gets the (args, state, control) triple a ``Trainer`` gives it, and
``control.should_training_stop`` stops training as it stops a ``Trainer``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from maxent.training.agent import Callback, CallbackList

__all__ = ["TrainerCallbackAdapter", "is_trainer_callback", "with_trainer_callbacks"]


def is_trainer_callback(obj: Any) -> bool:
    """A transformers ``TrainerCallback`` (or anything shaped like one), not a maxent callback."""
    return not isinstance(obj, Callback) and callable(getattr(obj, "on_step_end", None)) and \
        callable(getattr(obj, "on_train_begin", None))


class TrainerCallbackAdapter(Callback):
    """One ``TrainerCallback`` as a maxent :class:`~maxent.training.agent.Callback`.

    ``on_train_begin`` / ``on_train_end`` frame ``learn``; after every GRPO step come
    ``on_step_end`` and, on the steps that write a log row, ``on_log`` with that row. The state
    is the agent's ``trainer_state`` (the one reward functions see); ``args`` is the agent's
    ``trainer_args`` when it has them (the TRL config of :mod:`maxent.trl`), else its config.
    """

    def __init__(self, callback: Any):
        from transformers import TrainerControl

        self.callback = callback
        self.control = TrainerControl()

    def _call(self, event: str, agent: Any, **kwargs: Any) -> None:
        hook = getattr(self.callback, event, None)
        if hook is None:
            return
        args = getattr(agent, "trainer_args", None) or agent.config
        out = hook(args, agent.trainer_state, self.control, model=agent.policy,
                   processing_class=agent.tokenizer, optimizer=agent.optimizer, **kwargs)
        if out is not None:
            self.control = out

    def on_training_start(self, agent: Any) -> None:
        self.stop_reason = None
        self.control.should_training_stop = False
        agent._update_trainer_state()
        self._call("on_train_begin", agent)

    def on_step(self, agent: Any) -> bool:
        self._call("on_step_end", agent)
        if agent.num_timesteps % agent.config.log_interval == 0 and agent.last_metrics:
            self._call("on_log", agent, logs=dict(agent.last_metrics))
        self.control.should_log = self.control.should_save = self.control.should_evaluate = False
        if self.control.should_training_stop:
            self.stop_reason = f"{type(self.callback).__name__} set control.should_training_stop"
            return False
        return True

    def on_training_end(self, agent: Any) -> None:
        self._call("on_train_end", agent)


def with_trainer_callbacks(callback: Any) -> Any:
    """``callback`` with every ``TrainerCallback`` in it (alone or in a list) wrapped for
    ``learn``; maxent callbacks and ``None`` pass through."""
    if callback is None or isinstance(callback, Callback):
        return callback
    if is_trainer_callback(callback):
        return TrainerCallbackAdapter(callback)
    if isinstance(callback, type):  # a Trainer instantiates callback classes; so do we
        if issubclass(callback, Callback):
            return callback()
        if callable(getattr(callback, "on_step_end", None)):
            return TrainerCallbackAdapter(callback())
        raise TypeError(f"callback class {callback.__name__} is neither a maxent Callback nor a "
                        "transformers TrainerCallback")
    if not isinstance(callback, Sequence):
        raise TypeError(f"a callback must be a maxent Callback, a transformers TrainerCallback or a "
                        f"list of them, got {type(callback).__name__}")
    return CallbackList([with_trainer_callbacks(cb) for cb in callback])
