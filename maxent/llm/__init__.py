"""The LLM machinery: loading causal language models and tokenizers offline
(:mod:`~maxent.llm.models`), the samplers that draw groups of completions
(:mod:`~maxent.llm.samplers`, :mod:`~maxent.llm.vllm_sampler`), the forward passes that score
completions (:mod:`~maxent.llm.forward`), residual-stream steering
(:mod:`~maxent.llm.steering`) and the allocator setting of the training pass
(:mod:`~maxent.llm.cpu_memory`).

Names of the models and samplers modules are importable from here (``from maxent import llm;
llm.load_model(...)``); they load on first use, so importing maxent does not import transformers.
"""

from importlib import import_module

_HOMES = ("maxent.llm.models", "maxent.llm.samplers", "maxent.llm.vllm_sampler")


def __getattr__(name: str):
    for home in _HOMES:
        module = import_module(home)
        if hasattr(module, name) and not name.startswith("__"):
            value = getattr(module, name)
            globals()[name] = value
            return value
    raise AttributeError(f"module 'maxent.llm' has no attribute {name!r}")
