"""The homeostatic learner's part of the run lifecycle (:mod:`maxent.training.run`): its final
evaluation is accuracy on the task's held-out images, not the return of an evaluation episode
(which counts correct guesses over ``epochs`` passes of the training images, tens of thousands of
steps, with no learning)."""

from __future__ import annotations

from typing import Any

from maxent.training.run import EVAL_ACCURACY, Evaluation, RunHooks

__all__ = ["HomeostaticRunHooks"]

# Episodes of the fallback evaluation, on an env that has no held-out images.
FALLBACK_EPISODES = 10


class HomeostaticRunHooks(RunHooks):
    """Scores a :class:`~maxent.agents.homeostatic.HomeostaticLearner` on the held-out split of
    its :class:`~maxent.envs.concept_shift.ConceptShiftClassification` (labels as after a reset);
    an env without ``evaluation_set`` gets the default evaluation, returns over episodes."""

    def final_evaluation(self, agent: Any, seed: int, count: int | None = None, env: Any = None,
                         deterministic: bool = True) -> Evaluation:
        import gymnasium

        import maxent.envs  # noqa: F401  (registers the maxent/ ids)

        target = env if env is not None else agent.env_id
        if target is None:
            raise ValueError(f"{type(agent).__name__} was built on an env instance: pass env=... "
                             "to evaluate it")
        made = gymnasium.make(target) if isinstance(target, str) else None
        task = made if made is not None else target
        try:
            inner = task.unwrapped
            if not hasattr(inner, "evaluation_set"):
                scores = agent.evaluate(count or FALLBACK_EPISODES, env=env, seed=seed,
                                        deterministic=deterministic)
                return Evaluation.of_scores(scores, "return", "episodes", seed)
            task.reset(seed=seed)
            images, labels = inner.evaluation_set()
            accuracy = agent.accuracy(images, labels)
        finally:
            if made is not None:
                made.close()
        return Evaluation(row={EVAL_ACCURACY: accuracy}, metric=self.metric, unit=self.unit,
                          mean=accuracy, count=len(labels), seed=seed, digits=3)
