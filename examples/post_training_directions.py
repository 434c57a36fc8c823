"""How post-training moves a model's directions (Du et al. 2025, arXiv 2504.02904), on
SmolLM2-135M-Instruct and the same model after training: the truth direction of arithmetic
statements ("17+25=42." true vs "17+25=32." false) per layer by difference of means, its cosine
similarity between the two models, whether the base model's direction moves the trained model's
true/false judgement (logit of " True" minus " False") as well as the trained model's own
direction does (transfer), and the overlap of the two models' entropy neurons.

    python examples/post_training_directions.py --trained runs/grpo_smollm2/agent   # a GRPO checkpoint
    python examples/post_training_directions.py --trained path/to/hf_folder
    python examples/post_training_directions.py     # no trained model: a brief SFT stands in (SAID SO)

``--trained`` takes a maxent GRPO checkpoint (``GRPO.save``) or a Hugging Face folder. Without it
the "trained" model is the base model after ``--sft-steps`` supervised steps on "What is a+b?"
answers: a stand-in for post-training, not GRPO, and the output says so.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import time
from pathlib import Path

import numpy as np
import torch

from maxent.llm import steering
from maxent import llm
FEW_SHOT = "3+4=7. This statement is: True\n5+2=9. This statement is: False\n"
SUFFIX = " This statement is:"


def statements(n: int, rng: np.random.Generator) -> tuple[list[str], list[str]]:
    """n true and n false two-digit additions; a false one is off by 1..10 (never 0)."""
    true, false = [], []
    for _ in range(n):
        a, b = (int(x) for x in rng.integers(10, 50, 2))
        off = int(rng.integers(1, 11)) * (1 if rng.random() < 0.5 else -1)
        true.append(f"{a}+{b}={a + b}.")
        false.append(f"{a}+{b}={a + b + off}.")
    return true, false


def encode(tok, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    rows = [tok(FEW_SHOT + t + SUFFIX, add_special_tokens=False)["input_ids"] for t in texts]
    return llm.left_pad(rows, tok.pad_token_id)


@torch.no_grad()
def judge(model, ids, mask, true_id: int, false_id: int, *, vector=None, layer=0, beta=0.0):
    """Logit(" True") − logit(" False") at the last position, optionally steered."""
    ctx = steering.steer(model, vector, layer, beta) if vector is not None else _Null()
    with ctx:
        logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, -1]
    return (logits[:, true_id] - logits[:, false_id]).float()


class _Null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return None


def load_trained(path: str, base):
    """A GRPO checkpoint directory (maxent) or a Hugging Face folder."""
    p = Path(path)
    header = json.loads((p / "config.json").read_text()) if (p / "config.json").is_file() else {}
    if header.get("format") == "maxent-checkpoint":
        from maxent.training.checkpoint import load_checkpoint

        ckpt = load_checkpoint(p, kind=header.get("kind"))
        model = llm.model_from_state(ckpt.state["model"])
        weights = {k[len("model."):]: v for k, v in ckpt.tensors.items() if k.startswith("model.")}
        model.load_state_dict(weights, strict=False)
        model.tie_weights()
        return model.eval(), f"maxent {header.get('kind')} checkpoint {p}"
    model, _ = llm.load_model(p)
    return model.eval(), f"Hugging Face folder {p}"


def brief_sft(base, tok, steps: int, batch: int, lr: float, seed: int):
    """A few supervised steps on "What is a+b?" -> the sum (loss on the answer tokens only)."""
    model = copy.deepcopy(base).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    rng = np.random.default_rng(seed + 1)
    for _ in range(steps):
        rows, labels = [], []
        for _ in range(batch):
            a, b = (int(x) for x in rng.integers(10, 50, 2))
            prompt = llm.encode_prompts(tok, [f"What is {a}+{b}? Answer with the number only."])[0]
            answer = tok(f"{a + b}", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            rows.append(prompt + answer)
            labels.append([-100] * len(prompt) + answer)
        width = max(len(r) for r in rows)
        ids = torch.full((batch, width), tok.pad_token_id)
        lab = torch.full((batch, width), -100)
        mask = torch.zeros((batch, width), dtype=torch.long)
        for i, (r, y) in enumerate(zip(rows, labels)):  # right padding for training
            ids[i, :len(r)], lab[i, :len(y)], mask[i, :len(r)] = torch.tensor(r), torch.tensor(y), 1
        loss = model(input_ids=ids, attention_mask=mask, labels=lab).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="smollm2", help="base model: smollm2, tiny or an HF folder")
    p.add_argument("--trained", default=None, help="GRPO checkpoint or HF folder of the trained model")
    p.add_argument("--n", type=int, default=48, help="true and false statements each")
    p.add_argument("--sft-steps", type=int, default=12)
    p.add_argument("--sft-batch", type=int, default=8)
    p.add_argument("--sft-lr", type=float, default=3e-5)
    p.add_argument("--layer", type=int, default=None, help="transfer layer (default: the middle)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="runs/post_training_directions")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    base, tok = llm.load_model(args.model, seed=args.seed, tiny={"max_positions": 512})
    base.eval()
    if args.trained:
        trained, source = load_trained(args.trained, base)
    else:
        trained = brief_sft(base, tok, args.sft_steps, args.sft_batch, args.sft_lr, args.seed)
        source = (f"NO GRPO MODEL GIVEN: stand-in = the base model after {args.sft_steps} "
                  f"supervised steps (batch {args.sft_batch}, lr {args.sft_lr}) on 'What is a+b?'")
    print(f"base: {args.model}; trained: {source} ({time.time() - t0:.0f}s)", flush=True)

    true_ids = tok(" True", add_special_tokens=False)["input_ids"]
    false_ids = tok(" False", add_special_tokens=False)["input_ids"]
    if len(true_ids) != 1 or len(false_ids) != 1:
        print("note: ' True'/' False' are not single tokens; using their first tokens")
    t_id, f_id = true_ids[0], false_ids[0]

    rng = np.random.default_rng(args.seed)
    true, false = statements(args.n, rng)
    ids_t, mask_t = encode(tok, true)
    ids_f, mask_f = encode(tok, false)
    acts = {}
    for name, model in (("base", base), ("trained", trained)):
        at = steering.last_token_activations(model, ids_t, mask_t)  # (L, n, hidden)
        af = steering.last_token_activations(model, ids_f, mask_f)
        acts[name] = (at, af)
    n_layers = acts["base"][0].shape[0]
    dirs = {k: steering.mean_difference(at.transpose(0, 1), af.transpose(0, 1))  # (L, hidden)
            for k, (at, af) in acts.items()}
    cos = steering.direction_similarity(dirs["base"], dirs["trained"])

    def separation(name: str, layer: int) -> float:
        """Accuracy of the mean-difference probe (threshold at the midpoint) at a layer."""
        at, af = acts[name][0][layer], acts[name][1][layer]
        d = dirs[name][layer]
        mid = 0.5 * (at.mean(0) + af.mean(0)) @ d
        return float(((at @ d > mid).float().mean() + (af @ d <= mid).float().mean()) / 2)

    layer = n_layers // 2 if args.layer is None else args.layer
    # Transfer (Du et al. §4): push false statements along +direction and true along −direction at
    # one layer of the TRAINED model; compare the base direction, the trained model's own, and a
    # random direction of the base direction's norm.
    g = torch.Generator().manual_seed(args.seed)
    rand = torch.randn(dirs["base"].shape[1], generator=g)
    rand = rand / rand.norm() * dirs["base"][layer].norm()
    ld_true = judge(trained, ids_t, mask_t, t_id, f_id)
    ld_false = judge(trained, ids_f, mask_f, t_id, f_id)
    transfer = []
    for label, vec in (("base direction", dirs["base"][layer]),
                       ("trained direction", dirs["trained"][layer]), ("random direction", rand)):
        up = judge(trained, ids_f, mask_f, t_id, f_id, vector=vec, layer=layer, beta=1.0)
        down = judge(trained, ids_t, mask_t, t_id, f_id, vector=vec, layer=layer, beta=-1.0)
        transfer.append({"direction": label, "layer": layer,
                         "false_plus_dir_delta": float((up - ld_false).mean()),
                         "true_minus_dir_delta": float((down - ld_true).mean()),
                         "false_flipped_to_true": float((up > 0).float().mean()),
                         "true_flipped_to_false": float((down < 0).float().mean())})
    base_ld = (judge(base, ids_t, mask_t, t_id, f_id), judge(base, ids_f, mask_f, t_id, f_id))

    en_base = steering.entropy_neurons(base)
    en_trained = steering.entropy_neurons(trained)
    iou = steering.neuron_overlap(en_base.indices, en_trained.indices)

    with open(out / "directions.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["layer", "cosine", "base_norm", "trained_norm", "base_probe_acc",
                    "trained_probe_acc"])
        for i in range(n_layers):
            w.writerow([i, f"{float(cos[i]):.4f}", f"{float(dirs['base'][i].norm()):.3f}",
                        f"{float(dirs['trained'][i].norm()):.3f}", f"{separation('base', i):.3f}",
                        f"{separation('trained', i):.3f}"])
    with open(out / "transfer.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(transfer[0]))
        w.writeheader()
        w.writerows(transfer)
    with open(out / "entropy_neurons.json", "w") as f:
        json.dump({"base": en_base.indices, "trained": en_trained.indices, "iou": iou,
                   "trained_source": source}, f, indent=1)
    _plot(cos, transfer, out / "post_training_directions.png", source)

    print(f"\ntrained model: {source}")
    print(f"{'layer':>5} {'cos(base, trained)':>19} {'probe acc base':>15} {'trained':>8}")
    for i in range(n_layers):
        print(f"{i:5d} {float(cos[i]):19.3f} {separation('base', i):15.2f} "
              f"{separation('trained', i):8.2f}")
    print(f"\njudgement (mean logit ' True' − ' False'): base true {base_ld[0].mean():+.2f} "
          f"false {base_ld[1].mean():+.2f}; trained true {ld_true.mean():+.2f} false "
          f"{ld_false.mean():+.2f}")
    print(f"transfer at layer {layer} of the trained model (β = ±1 × the mean difference):")
    for r in transfer:
        print(f"  {r['direction']:>18}: false+dir Δ {r['false_plus_dir_delta']:+.3f} "
              f"(flipped {r['false_flipped_to_true']:.2f}), true−dir Δ "
              f"{r['true_minus_dir_delta']:+.3f} (flipped {r['true_flipped_to_false']:.2f})")
    print(f"entropy neurons (last MLP, top 25% norm, 10 lowest logit variance): base "
          f"{en_base.indices}, trained {en_trained.indices}, IoU {iou:.2f}")
    print(f"({time.time() - t0:.0f}s; CSV, JSON and PNG in {out})")
    return {"cos": cos, "transfer": transfer, "iou": iou, "source": source}


def _plot(cos, transfer, path: Path, source: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    axes[0].plot(range(len(cos)), cos.numpy(), "o-")
    axes[0].set_xlabel("layer")
    axes[0].set_ylabel("cosine(base, trained) truth direction")
    axes[0].set_ylim(min(0.0, float(cos.min()) - 0.05), 1.02)
    axes[0].set_title(source[:70], fontsize=7)
    x = np.arange(len(transfer))
    axes[1].bar(x - 0.2, [r["false_plus_dir_delta"] for r in transfer], 0.4, label="false + dir")
    axes[1].bar(x + 0.2, [r["true_minus_dir_delta"] for r in transfer], 0.4, label="true − dir")
    axes[1].set_xticks(x, [r["direction"] for r in transfer], fontsize=8)
    axes[1].set_ylabel("Δ logit(' True') − logit(' False')")
    axes[1].set_title(f"transfer into the trained model, layer {transfer[0]['layer']}", fontsize=9)
    axes[1].axhline(0, color="grey", lw=0.5)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
