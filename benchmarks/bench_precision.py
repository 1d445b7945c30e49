"""How much each --precision policy learns at the learning rates full fine-tuning uses (issue 15's table).

    make demo   # once: demo_out/ holds the pre-trained tiny model, tokenizer and encoded splits
    python benchmarks/bench_precision.py --demo_dir demo_out --out_dir bench_out/precision

Every run is training/train_full.py as a user types it, under `accelerate launch --config_file
configs/cpu.yaml --mixed_precision bf16` (bf16 autocast compute in every case), with 8-bit AdamW,
2048-token batches, a constant learning rate, the same seed, so the same batches in the same order;
only --precision and the lr/steps row change. The model is the demo's pre-trained tiny Llama,
trained on the demo's training split; the loss is the held-out split's (tagged records never
trained on), from the trainer's own --eval_dir evaluation at the end. "before" is the same model
through one step at lr 0 (nothing changes; the tag rows are initialized as in every run), once with
fp32 weights and once cast to bf16; each policy's gain is measured from its own weights' "before".

Printed per row: held-out loss before -> after for fp32, bf16 (stochastic rounding) and
bf16-nearest; bf16's improvement as a fraction of fp32's (the goal: >= 95% at lr 1e-5 and 2e-5);
the fraction of weight elements that never changed. Also written to OUT/results.json.
"""

import argparse
import json
import os
import subprocess
import sys
import time

from tables import markdown_table

from reasoning_sft.demo.pipeline import REPO
from reasoning_sft.errors import UserError, run_cli

POLICIES = ("fp32", "bf16", "bf16-nearest")
ROWS = ((1e-5, 120), (2e-5, 60), (1e-4, 60))  # (lr, optimizer steps)
GOAL = 0.95


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--demo_dir", default="demo_out", help="what `make demo` wrote")
    p.add_argument("--out_dir", default="bench_out/precision")
    p.add_argument("--batch_tokens", type=int, default=2048)
    p.add_argument("--rows", default=",".join(f"{lr:g}:{steps}" for lr, steps in ROWS),
                   help="lr:steps pairs, comma-separated (default: %(default)s)")
    p.add_argument("--seed", type=int, default=42)
    return p.parse_args(argv)


def demo_paths(demo_dir):
    paths = {"model": os.path.join(demo_dir, "tiny-llama"), "tokenizer": os.path.join(demo_dir, "tokenizer"),
             "train": os.path.join(demo_dir, "encoded", "arrow_dataset"),
             "heldout": os.path.join(demo_dir, "heldout_encoded", "arrow_dataset")}
    missing = [p for p in paths.values() if not os.path.isdir(p)]
    if missing:
        raise UserError(f"{missing[0]} is missing: run `make demo` first (it writes {demo_dir}/)")
    return paths


def train(paths, out, policy, lr, steps, args):
    """One trainer run as a user types it; returns (held-out loss, seconds)."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", "configs/cpu.yaml",
           "--mixed_precision", "bf16", "training/train_full.py",
           "--model_name", paths["model"], "--tokenizer_dir", paths["tokenizer"], "--train_dir", paths["train"],
           "--eval_dir", paths["heldout"], "--output_dir", out, "--overwrite", "--adam8bit",
           "--precision", policy, "--lr", f"{lr:g}", "--lr_scheduler", "constant", "--warmup_ratio", "0",
           "--max_steps", str(steps), "--epochs", "1000", "--batch_tokens", str(args.batch_tokens),
           "--seed", str(args.seed), "--log_every", "20", "--report_to", "none"]
    print("$ python " + " ".join(cmd[1:]), flush=True)
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false"))
    if proc.returncode:
        raise UserError(f"train_full.py failed ({proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
    with open(os.path.join(out, "metrics.jsonl")) as f:
        evals = [r for r in map(json.loads, f) if "eval_loss" in r]
    return evals[-1]["eval_loss"], time.time() - t0


def unchanged_fraction(base_dir, trained_dir):
    """Fraction of weight elements equal to the base model's, compared in the trained model's dtype."""
    from safetensors.torch import load_file

    base = load_file(os.path.join(base_dir, "model.safetensors"))
    trained = load_file(os.path.join(trained_dir, "model.safetensors"))
    same = total = 0
    for name, weight in trained.items():
        if name in base and base[name].shape == weight.shape:  # resized embeddings/head: compare the common ones
            same += int((base[name].to(weight.dtype) == weight).sum())
            total += weight.numel()
    return same / max(total, 1)


def main(argv=None):
    args = parse_args(argv)
    paths = demo_paths(args.demo_dir)
    rows = [(float(lr), int(steps)) for lr, steps in (pair.split(":") for pair in args.rows.split(","))]
    os.makedirs(args.out_dir, exist_ok=True)
    before = {weights: train(paths, os.path.join(args.out_dir, f"before-{weights}"), weights, 0.0, 1, args)[0]
              for weights in ("fp32", "bf16-nearest")}
    before["bf16"] = before["bf16-nearest"]  # the same bf16 weights before any update
    results = {"before": before, "rows": []}
    for lr, steps in rows:
        row = {"lr": lr, "steps": steps}
        for policy in POLICIES:
            out = os.path.join(args.out_dir, f"{policy}-lr{lr:g}-{steps}")
            loss, seconds = train(paths, out, policy, lr, steps, args)
            row[policy] = {"loss": loss, "seconds": round(seconds, 1),
                           "unchanged": unchanged_fraction(paths["model"], out)}
        gain = {p: before[p] - row[p]["loss"] for p in POLICIES}
        row["bf16_of_fp32"] = gain["bf16"] / gain["fp32"] if gain["fp32"] > 0 else None
        row["nearest_of_fp32"] = gain["bf16-nearest"] / gain["fp32"] if gain["fp32"] > 0 else None
        results["rows"].append(row)
    print_table(results)
    with open(os.path.join(args.out_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    return 0


def print_table(results):
    before = results["before"]
    print(f"\nheld-out loss before training: {before['fp32']:.4f} (fp32 weights), {before['bf16']:.4f} (bf16)")
    def ratio(r):
        return "n/a" if r is None else f"{r:.1%}"

    rows = [(f"{row['lr']:g}, {row['steps']}", *(f"{before[p]:.3f} -> {row[p]['loss']:.3f}" for p in POLICIES),
             ratio(row["bf16_of_fp32"]), ratio(row["nearest_of_fp32"]),
             " / ".join(f"{row[p]['unchanged']:.0%}" for p in POLICIES)) for row in results["rows"]]
    print(markdown_table(("lr, steps", "fp32 weights", "bf16, stochastic rounding", "bf16, round-to-nearest",
                          "bf16 / fp32 gain", "nearest / fp32 gain", "unchanged elements (fp32 / bf16 / nearest)"),
                         rows))
    for row in results["rows"]:
        if row["lr"] <= 2e-5 and row["bf16_of_fp32"] is not None:
            verdict = "met" if row["bf16_of_fp32"] >= GOAL else "MISSED"
            print(f"goal (bf16 gain >= {GOAL:.0%} of fp32's) at lr {row['lr']:g}: {verdict}")


if __name__ == "__main__":
    run_cli(main)
