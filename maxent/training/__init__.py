"""Training plumbing, written once for every agent: the :class:`~maxent.training.agent.Agent` base
(common state, the learn loop, save/load, callbacks, evaluation), checkpoints validated field by
field, the run directory's lifecycle, config dataclasses, logging, the run lock, replay, vector
envs, and the speed helpers of the compiled path (fast path, denormals, functional Adam)."""
