"""A sampler for multi-turn rollout tests that writes given replies instead of sampling them, so a
test decides what the model "says" (a tool call, an answer) and checks what the rollout does."""

from __future__ import annotations

from maxent.llm.samplers import completions_from_rows


class Scripted:
    """Writes ``replies[t]`` (then eos) as turn t's reply of every episode, repeating the last
    one; records every call's prompts in ``prompts``."""

    def __init__(self, tokenizer, replies):
        self.tokenizer, self.replies, self.prompts = tokenizer, replies, []
        self.eos_ids = {tokenizer.eos_token_id}

    def generate(self, prompt_ids, *, max_new_tokens, **kwargs):
        self.prompts.append([list(p) for p in prompt_ids])
        text = self.replies[min(len(self.prompts), len(self.replies)) - 1]
        row = self.tokenizer(text, add_special_tokens=False)["input_ids"] + [self.tokenizer.eos_token_id]
        return completions_from_rows([row] * len(prompt_ids), self.tokenizer, self.eos_ids, 10_000)
