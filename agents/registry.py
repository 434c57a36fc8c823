"""The one table of trainable algorithms: name, agent and config class, built-in default run, and
what the command line and the sweep need to know about each (``maxent train``, ``maxent sweep``
and ``maxent.agents``' lazy names all read it).

Classes are named by import path and loaded only when used, so reading the table imports no agent
(``maxent --help`` stays fast and pulls in neither transformers nor scipy).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import import_module
from typing import Any

__all__ = ["ALGORITHMS", "Algorithm", "algorithm_for_kind", "find", "load"]


@dataclass(frozen=True)
class Algorithm:
    """One trainable algorithm.

    Args:
        name: the ``maxent train`` subcommand and the sweep's method name.
        agent: ``"module:Class"`` of the agent.
        config: ``"module:Class"`` of its config dataclass.
        summary: one line for ``maxent train --help``.
        env: default env id (``None``: the agent trains on a task stream, see ``stream``).
        total_steps: the built-in default run's length (``None``: the task stream's length).
        unit: what one step is (the help of ``--total-steps``).
        eval_episodes: default episodes of the final evaluation; ``None`` where the evaluation
            has no episodes to count (no ``--eval-episodes`` flag then).
        metric: what the final evaluation measures (``"return"``: the undiscounted return of
            an episode; otherwise its name as the summary prints it, e.g. ``"test accuracy"``).
        eval_unit: what the final evaluation's count counts (``"episodes"``, ``"tasks"``...).
        defaults: config fields whose command-line default differs from the config's own, to keep
            the built-in run short (e.g. a smaller denoiser); any flag still overrides them.
        stream: the agent trains on a :class:`~maxent.envs.continual.PermutedTaskStream` whose
            arguments come from ``--stream.*`` flags.
        checkpoint_every: default steps between checkpoints.
        hooks: ``"module:Class"`` of a :class:`maxent.training.run.RunHooks` subclass that adds the
            algorithm's own flags and steps to the run (e.g. GRPO's warm-up); ``None``: the defaults.
        control: its policy acts on continuous-control gym tasks (Box observations and actions),
            so ``maxent sweep`` can train it on MuJoCo tasks and score it on an uncertainty mesh.
        adversarial: it trains an adversary too; the sweep scores every protagonist against it.
    """

    name: str
    agent: str
    config: str
    summary: str
    env: str | None
    total_steps: int | None
    unit: str = "steps"
    eval_episodes: int | None = 10
    metric: str = "return"
    eval_unit: str = "episodes"
    defaults: dict[str, Any] = field(default_factory=dict)
    stream: bool = False
    checkpoint_every: int = 10_000
    hooks: str | None = None
    control: bool = False
    adversarial: bool = False

    def agent_class(self) -> type:
        return load(self.agent)

    def config_class(self) -> type:
        return load(self.config)

    def hooks_class(self) -> type | None:
        return None if self.hooks is None else load(self.hooks)

    @property
    def kind(self) -> str:
        """The agent's class name, which is also its checkpoints' kind."""
        return self.agent.rsplit(":", 1)[1]


def load(path: str) -> Any:
    """The object that ``"module:name"`` names."""
    module, name = path.split(":")
    return getattr(import_module(module), name)


_BANDIT = "maxent/RechargingBandit-v0"
_CAUSAL = "maxent/ConfoundedCausalBandit-v0"

ALGORITHMS: dict[str, Algorithm] = {a.name: a for a in [
    Algorithm("sac", "maxent.agents.sac:SAC", "maxent.agents.sac:SACConfig",
              "Soft Actor-Critic with automatic temperature (continuous control)", "Pendulum-v1",
              20_000, control=True),
    Algorithm("sac-discrete", "maxent.agents.sac_discrete:SACDiscrete",
              "maxent.agents.sac_discrete:SACDiscreteConfig",
              "Soft Actor-Critic for discrete actions (categorical policy, exact expectations)",
              "CartPole-v1", 50_000),
    Algorithm("qarl", "maxent.agents.qarl:QARL", "maxent.agents.qarl:QARLConfig",
              "QARL: protagonist vs. adversary on a temperature curriculum (robust control)",
              "Hopper-v5", 20_000, control=True, adversarial=True),
    Algorithm("rarl", "maxent.agents.qarl:QARL", "maxent.agents.qarl:RARLConfig",
              "RARL: QARL's game with a fully rational adversary from the start", "Hopper-v5", 20_000,
              control=True, adversarial=True),
    Algorithm("grpo", "maxent.agents.grpo:GRPO", "maxent.agents.grpo:GRPOConfig",
              "GRPO for language models on verifiable text tasks or your dataset", "maxent/TextArithmetic-v0",
              200, unit="GRPO steps", eval_episodes=None, metric="held-out greedy accuracy",
              eval_unit="prompts", checkpoint_every=10,
              hooks="maxent.agents.grpo_run:GRPORunHooks"),
    Algorithm("ucb1", "maxent.agents.bandits:UCB1", "maxent.agents.bandits:UCB1Config",
              "UCB1 on any discrete-action env as a K-armed bandit", _BANDIT, 5_000),
    Algorithm("thompson", "maxent.agents.bandits:Thompson", "maxent.agents.bandits:ThompsonConfig",
              "Thompson sampling (Beta-Bernoulli or Gaussian) on a K-armed bandit", _BANDIT, 5_000),
    Algorithm("boltzmann", "maxent.agents.bandits:Boltzmann", "maxent.agents.bandits:BoltzmannConfig",
              "Boltzmann exploration with the layer's temperature controllers", _BANDIT, 5_000),
    Algorithm("greedy-oracle", "maxent.agents.lsd:GreedyOracle",
              "maxent.agents.lsd:GreedyConfig",
              "LSD bandits: greedy on the known payoffs (a baseline planner)", _BANDIT, 5_000),
    Algorithm("exact-planner", "maxent.agents.lsd:ExactPlanner",
              "maxent.agents.lsd:PlannerConfig",
              "LSD bandits: the exact long-run optimal plan (small instances)", _BANDIT, 5_000),
    Algorithm("lp-planner", "maxent.agents.lsd:LPPlanner", "maxent.agents.lsd:LPConfig",
              "Recharging bandits: LP relaxation with interleaved rounding", _BANDIT, 5_000),
    Algorithm("isi-combucb1", "maxent.agents.lsd:ISICombUCB1",
              "maxent.agents.lsd:CombUCBConfig",
              "Recharging bandits: ISI-CombUCB1 online learner (blocks of d+1 pulls)", _BANDIT,
              3_300),
    Algorithm("combucb1", "maxent.agents.lsd:CombUCB1", "maxent.agents.lsd:CombUCBConfig",
              "Recharging bandits: CombUCB1 online learner (blocks of d pulls)", _BANDIT, 3_300),
    Algorithm("optimistic-planner", "maxent.agents.lsd:OptimisticPlanner",
              "maxent.agents.lsd:OptimisticConfig",
              "LSD bandits: plans the long-run optimum on upper confidence bounds", _BANDIT, 3_000),
    Algorithm("surgery", "maxent.agents.causal:SurgeryAgent", "maxent.agents.causal:SurgeryConfig",
              "Confounded bandit: acts on do-estimates from string-diagram surgery", _CAUSAL, 1_000),
    Algorithm("naive", "maxent.agents.causal:NaiveAgent", "maxent.agents.causal:NaiveConfig",
              "Confounded bandit: acts on the (biased) observational conditional", _CAUSAL, 1_000),
    Algorithm("causal-ucb", "maxent.agents.causal:UCBAgent", "maxent.agents.causal:UCBConfig",
              "Confounded bandit: UCB1 on its own interventions only", _CAUSAL, 1_000),
    Algorithm("homeostatic", "maxent.agents.homeostatic:HomeostaticLearner",
              "maxent.agents.homeostatic:HomeostaticConfig",
              "Homeostatic learner: an MLP that regulates its own learning rate (concept shift)",
              "maxent/ConceptShiftDigits-v0", 5_000, unit="images", eval_episodes=None,
              metric="held-out accuracy", eval_unit="test images",
              hooks="maxent.agents.homeostatic_run:HomeostaticRunHooks"),
    Algorithm("rehearsal", "maxent.agents.rehearsal:RehearsalLearner",
              "maxent.agents.rehearsal:RehearsalConfig",
              "Continual learner with power-law (or uniform/exponential) rehearsal", None, None,
              unit="batches", eval_episodes=None, metric="test accuracy", eval_unit="tasks",
              stream=True),
    Algorithm("ewc", "maxent.agents.rehearsal:EWC", "maxent.agents.rehearsal:EWCConfig",
              "Elastic weight consolidation on a task stream (baseline)", None, None,
              unit="batches", eval_episodes=None, metric="test accuracy", eval_unit="tasks",
              stream=True),
    Algorithm("ads", "maxent.agents.ads:ADS", "maxent.agents.ads:ADSConfig",
              "Active diffusion subsampling: max-entropy measurement acquisition",
              "maxent/MeasurementAcquisition-v0", 300, unit="gradient steps", eval_episodes=1,
              defaults={"hidden": 64, "n_layers": 2, "n_particles": 4, "sample_steps": 8}),
    Algorithm("llm-agent", "maxent.agents.llm_agent:LLMAgent",
              "maxent.agents.llm_agent:LLMAgentConfig",
              "In-context LLM agent on a text bandit (EAST steering), no weight updates",
              "maxent/TextBandit-v0", 50, eval_episodes=1, defaults={"n_samples": 4}),
]}


def find(name: str) -> Algorithm:
    """The algorithm called ``name``, or a usage error listing the choices."""
    from maxent.training.run import UsageError

    try:
        return ALGORITHMS[name]
    except KeyError:
        raise UsageError(f"maxent train: unknown algorithm {name!r}; choose from "
                         f"{', '.join(sorted(ALGORITHMS))}") from None


def algorithm_for_kind(kind: str, config: dict | None = None) -> Algorithm:
    """The algorithm whose agent writes checkpoints of ``kind`` (RARL is QARL's kind with
    curriculum "none")."""
    if kind == "QARL" and (config or {}).get("curriculum") == "none":
        return ALGORITHMS["rarl"]
    for algorithm in ALGORITHMS.values():
        if algorithm.kind == kind:
            return algorithm
    raise ValueError(f"the checkpoint holds a {kind!r} agent, which this maxent version cannot load")
