"""Cost of EAST steering (Rahn et al. 2024) during generation: the same batched ``generate``
call with and without :func:`maxent.llm.steering.steer`, alternated run by run so that machine load
hits both alike; prints the median time of each and their ratio (target: <= 1.05).

    python benchmarks/steering.py                      # tiny model, then SmolLM2 if installed
    python benchmarks/steering.py --models tiny --reps 10
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from maxent.llm import steering
from maxent import llm
def bench(name: str, reps: int, batch: int, new_tokens: int, prompt_len: int) -> dict:
    model, tok = llm.load_model(name, tiny={"max_positions": 1024})
    model.eval()
    layers = steering.find_layers(model)
    layer = len(layers) // 2
    width = steering._width(model)
    vector = torch.randn(width, generator=torch.Generator().manual_seed(0))
    ids = torch.randint(4, min(len(tok), 1000), (batch, prompt_len),
                        generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)

    def run(steered: bool) -> float:
        ctx = steering.steer(model, vector, layer, 0.5) if steered else _Null()
        start = time.perf_counter()
        with torch.no_grad(), ctx:
            model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens,
                           min_new_tokens=new_tokens, do_sample=False,
                           pad_token_id=tok.pad_token_id)
        return time.perf_counter() - start

    run(False)
    run(True)  # warm-up
    plain, steered = [], []
    for i in range(reps):
        order = (False, True) if i % 2 == 0 else (True, False)
        for s in order:
            (steered if s else plain).append(run(s))
    p, s = statistics.median(plain), statistics.median(steered)
    return {"model": name, "plain_s": p, "steered_s": s, "ratio": s / p, "reps": reps,
            "batch": batch, "new_tokens": new_tokens, "prompt_len": prompt_len}


class _Null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return None


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--models", default="tiny,smollm2")
    p.add_argument("--reps", type=int, default=6)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--new-tokens", type=int, default=16)
    p.add_argument("--prompt-len", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = []
    for name in args.models.split(","):
        try:
            r = bench(name, args.reps, args.batch, args.new_tokens, args.prompt_len)
        except (FileNotFoundError, ImportError) as err:
            print(f"{name}: skipped ({err})")
            continue
        results.append(r)
        print(f"{name:>8}: unsteered {r['plain_s'] * 1e3:8.1f} ms, steered {r['steered_s'] * 1e3:8.1f}"
              f" ms, ratio {r['ratio']:.3f} (median of {r['reps']}, batch {r['batch']}, "
              f"{r['new_tokens']} new tokens)", flush=True)
    return results


if __name__ == "__main__":
    main()
