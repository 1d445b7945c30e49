"""Batches that mix (issue 30): the length-sorted batching before it against today's, on both layouts.

    python benchmarks/bench_batching.py --out_dir bench_out/batching

Two sets of lengths: the demo's (examples/sample.jsonl without its 16 held-out records, through the
tiny tokenizer and stages 1-3 as `make demo` runs them; --batch_tokens 4096 as the demo trains) and a
long-tailed mix (20,000 lognormal lengths, median e^6 = 403 tokens, sigma 1, clipped to 8..8192;
--batch_tokens 16384). For each, layout (padded, packed) and batching (old: the whole epoch sorted by
length; new: batching.token_budget_batches), over epochs 0 and 1 of the same seed:

- spread: the mean coefficient of variation (std / mean) of the lengths inside a batch of two or
  more, beside the data's own CV and that of random groups of the same count (what full mixing gives);
- re-meet: of the pairs of sequences that share a batch in epoch 0, the share that share one again
  in epoch 1;
- efficiency: padded, real tokens / token slots (n x longest; the trainer's batch_efficiency);
  packed, real tokens / (rows x budget), the fill of the rows (the share of a budget's compute used).
  Old and new batching at equal efficiency run the same number of steps per epoch.

Then held-out loss at equal steps: the demo's tiny model (pre-trained --pretrain_epochs on the
training split's text as `make demo` does, shorter) is fine-tuned by training/train_full.py for
--steps optimizer steps with each batching and layout, same seed, same learning rate, and the
trainer's own evaluation on the held-out records gives the loss. "new" is this checkout's trainer;
"old" is the trainer of --old_ref (default: the commit before batches mixed), extracted with
`git archive` into OUT/old_code and run from there, so nothing is patched. Written to OUT/results.json
and printed as markdown tables.
"""

import argparse
import contextlib
import functools
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time

import numpy as np
from tables import markdown_table

from reasoning_sft.data import batching
from reasoning_sft.demo.pipeline import REPO, data_stages, encode_argv, filter_argv, load_script, run_stage
from reasoning_sft.errors import UserError, run_cli

LOGNORMAL = {"n": 20000, "mu": 6.0, "sigma": 1.0, "low": 8, "high": 8192, "batch_tokens": 16384}
DEMO_BATCH_TOKENS = 4096


def sorted_batches(lengths, batch_tokens, packed, seed, epoch):
    """The batching before issue 30, verbatim: the whole epoch sorted by length (a random tie-break per
    epoch), cut greedily at the budget. The baseline this benchmark compares against."""
    rng = np.random.default_rng([seed, epoch, 1])
    lengths = np.asarray(lengths)
    order = np.lexsort((rng.random(len(lengths)), lengths))
    batches, current, longest, total = [], [], 0, 0
    for i in order.tolist():
        n = int(lengths[i])
        cost = (total + n) if packed else (len(current) + 1) * max(longest, n)
        if current and cost > batch_tokens:
            batches.append(current)
            current, longest, total = [], 0, 0
        current.append(i)
        longest, total = max(longest, n), total + n
    if current:
        batches.append(current)
    return batches


BATCHINGS = {"old": sorted_batches, "new": batching.token_budget_batches}


def data_cv(lengths):
    lengths = np.asarray(lengths, dtype=np.float64)
    return float(lengths.std() / lengths.mean())


def mean_cv(lengths, batches):
    """Mean over batches of two or more sequences of the coefficient of variation of their lengths."""
    lengths = np.asarray(lengths, dtype=np.float64)
    cvs = [lengths[b].std() / lengths[b].mean() for b in batches if len(b) > 1]
    return float(np.mean(cvs)) if cvs else 0.0


def random_groups_cv(lengths, n_groups, seed=0):
    """mean_cv of random groups of equal count: what fully mixed batches of that size would show."""
    order = np.random.default_rng(seed).permutation(len(lengths))
    return mean_cv(lengths, [g.tolist() for g in np.array_split(order, n_groups)])


def remeet_share(n, first, second):
    """Of the pairs that share a batch in FIRST, the share that share one in SECOND too."""
    batch_of = np.empty(n, dtype=np.int64)
    for k, batch in enumerate(second):
        batch_of[batch] = k
    pairs = again = 0
    for batch in first:
        pairs += len(batch) * (len(batch) - 1) // 2
        _, counts = np.unique(batch_of[batch], return_counts=True)
        again += int((counts * (counts - 1) // 2).sum())
    return again / pairs if pairs else 0.0


def efficiency(lengths, batches, packed, batch_tokens):
    """Padded: real tokens / slots computed. Packed: real tokens / (rows x budget), the rows' fill (a row
    holding one sequence longer than the budget counts as its length)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    real = int(lengths.sum())
    if packed:
        return real / sum(max(batch_tokens, int(lengths[b].sum())) for b in batches)
    return real / sum(batching.batch_cost(lengths[b].tolist(), packed=False) for b in batches)


def batch_stats(lengths, batch_tokens, packed, batches_fn, seed):
    first = batches_fn(lengths, batch_tokens, packed, seed, 0)
    second = batches_fn(lengths, batch_tokens, packed, seed, 1)
    return {"batches": len(first), "mean_cv": mean_cv(lengths, first),
            "remeet": remeet_share(len(lengths), first, second),
            "efficiency": efficiency(lengths, first, packed, batch_tokens)}


def mega_batch_trade(lengths, batch_tokens, seed, sizes=(8, 16, 32, 50)):
    """The padded layout's trade, per mega-batch size (batching.MEGA_BATCHES): padding against mixing."""
    return {size: batch_stats(lengths, batch_tokens, False,
                              functools.partial(batching.token_budget_batches, mega_batches=size), seed)
            for size in sizes}


def lognormal_lengths(seed=0):
    p = LOGNORMAL
    rng = np.random.default_rng(seed)
    return np.clip(rng.lognormal(p["mu"], p["sigma"], p["n"]), p["low"], p["high"]).astype(np.int64)


def demo_data(work, pretrain_epochs):
    """The demo's split, tiny model (pre-trained briefly) and encoded train / held-out sets under WORK,
    built once: WORK/ready.json (written last) names them, and a later run with the same
    --pretrain_epochs reuses them."""
    from datasets import load_from_disk

    from reasoning_sft.demo import tiny_llama

    ready = os.path.join(work, "ready.json")
    if os.path.isfile(ready):
        with open(ready) as f:
            data = json.load(f)
        if data.pop("pretrain_epochs") == pretrain_epochs:
            return dict(data, lengths=np.asarray(load_from_disk(data["train"])["length"]))
    demo = load_script("demo.py")
    paths = demo.split_sample(os.path.join(REPO, "examples", "sample.jsonl"), work)
    model = os.path.join(work, "tiny-llama")
    defaults = demo.parse_args([])
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet):
        tiny_llama.build(paths["train"], model, vocab_size=defaults.vocab_size, hidden=defaults.hidden,
                         layers=defaults.layers, heads=4, kv_heads=2, pretrain_epochs=pretrain_epochs)
        d = data_stages(model, paths["train"], work, demo.MAX_LEN)
        heldout_filtered, heldout_encoded = os.path.join(work, "heldout_filtered"), os.path.join(work, "heldout_enc")
        run_stage(filter_argv(paths["heldout"], d["tokenizer"], heldout_filtered, demo.MAX_LEN, plot=False))
        run_stage(encode_argv(heldout_filtered, d["tokenizer"], heldout_encoded, demo.MAX_LEN))
    data = {"model": model, "tokenizer": d["tokenizer"], "train": d["train_dir"],
            "heldout": os.path.join(heldout_encoded, "arrow_dataset")}
    with open(ready, "w") as f:
        json.dump(dict(data, pretrain_epochs=pretrain_epochs), f)
    return dict(data, lengths=np.asarray(load_from_disk(d["train_dir"])["length"]))


def baseline_ref():
    """The commit before batches mixed: the parent of the one that brought MEGA_BATCHES into batching.py."""
    found = subprocess.run(["git", "-C", REPO, "log", "-S", "MEGA_BATCHES", "--format=%H", "--",
                            "reasoning_sft/data/batching.py"], capture_output=True, text=True)
    commits = found.stdout.split()
    if found.returncode or not commits:
        raise UserError(f"no git history of reasoning_sft/data/batching.py in {REPO}: pass --old_ref")
    return commits[-1] + "~1"


def checkout(ref, dest):
    """The repository's files at REF in DEST (git archive: the repository itself is left as it is)."""
    archive = subprocess.run(["git", "-C", REPO, "archive", "--format=tar", ref], capture_output=True)
    if archive.returncode:
        raise UserError(f"git archive {ref} failed: {archive.stderr.decode().strip()}")
    shutil.rmtree(dest, ignore_errors=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def heldout_loss(data, out, code_dir, packed, args):
    """training/train_full.py of the checkout CODE_DIR (its own package first on the path) for args.steps
    steps; (held-out loss at the end, seconds)."""
    argv = ["--model_name", data["model"], "--tokenizer_dir", data["tokenizer"], "--train_dir", data["train"],
            "--eval_dir", data["heldout"], "--output_dir", out, "--overwrite", "--lr", f"{args.lr:g}",
            "--max_steps", str(args.steps), "--epochs", "1000", "--batch_tokens", str(DEMO_BATCH_TOKENS),
            "--packing", "on" if packed else "off", "--seed", str(args.seed), "--log_every", "10",
            "--eval_every", str(args.steps), "--report_to", "none", "--no_plan_check"]
    env = dict(os.environ, PYTHONPATH=code_dir, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    t0 = time.time()
    proc = subprocess.run([sys.executable, "training/train_full.py", *argv], cwd=code_dir, env=env,
                          capture_output=True, text=True)
    if proc.returncode:
        raise UserError(f"train_full.py ({code_dir}) exited with {proc.returncode}: {proc.stderr[-2000:]}")
    with open(os.path.join(out, "metrics.jsonl")) as f:
        evals = [r for r in map(json.loads, f) if "eval_loss" in r]
    return evals[-1]["eval_loss"], time.time() - t0


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out_dir", default="bench_out/batching")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--steps", type=int, default=60, help="optimizer steps of each fine-tuning run (0: none)")
    p.add_argument("--lr", type=float, default=2e-3, help="the demo's full fine-tuning lr")
    p.add_argument("--pretrain_epochs", type=float, default=3, help="the tiny model's pre-training (demo: 12)")
    p.add_argument("--layouts", default="padded,packed", help="which layouts to fine-tune (comma-separated)")
    p.add_argument("--old_ref", help="the git commit whose trainer is 'old' (default: the one before batches mixed)")
    return p.parse_args(argv)


def main(argv=None):
    import torch

    args = parse_args(argv)
    os.makedirs(args.out_dir, exist_ok=True)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    t0 = time.time()
    data = demo_data(os.path.join(args.out_dir, "demo"), args.pretrain_epochs)
    print(f"demo data ready ({time.time() - t0:.0f} s): {len(data['lengths'])} training rows", flush=True)
    sets = {"demo": (data["lengths"], DEMO_BATCH_TOKENS), "lognormal": (lognormal_lengths(), LOGNORMAL["batch_tokens"])}
    results = {"seed": args.seed, "lognormal": LOGNORMAL, "demo_batch_tokens": DEMO_BATCH_TOKENS, "sets": {}}
    for set_name, (lengths, budget) in sets.items():
        entry = {"rows": len(lengths), "data_cv": data_cv(lengths), "batch_tokens": budget, "layouts": {}}
        for layout in ("padded", "packed"):
            stats = {name: batch_stats(lengths, budget, layout == "packed", fn, args.seed)
                     for name, fn in BATCHINGS.items()}
            stats["random_groups_cv"] = random_groups_cv(lengths, stats["new"]["batches"])
            entry["layouts"][layout] = stats
        results["sets"][set_name] = entry
        rows = [(layout, name, f"{s[name]['batches']:,}", f"{s[name]['mean_cv']:.3f}",
                 f"{entry['data_cv']:.3f} / {s['random_groups_cv']:.3f}", f"{100 * s[name]['remeet']:.1f}%",
                 f"{100 * s[name]['efficiency']:.1f}%")
                for layout, s in entry["layouts"].items() for name in BATCHINGS]
        print(f"\n{set_name}: {len(lengths):,} rows, --batch_tokens {budget}\n")
        print(markdown_table(("layout", "batching", "batches", "mean CV in a batch", "data CV / random groups",
                              "pairs meeting again", "efficiency"), rows, right=(2, 3, 4, 5, 6)), flush=True)
        entry["padded_mega_batches"] = mega_batch_trade(lengths, budget, args.seed)
        rows = [(str(size) + (" (today)" if size == batching.MEGA_BATCHES else ""), f"{s['batches']:,}",
                 f"{s['mean_cv']:.3f}", f"{100 * s['remeet']:.1f}%", f"{100 * s['efficiency']:.1f}%")
                for size, s in entry["padded_mega_batches"].items()]
        print(f"\n{set_name}, padded: the mega-batch size's trade\n")
        print(markdown_table(("mega-batch (batches' tokens)", "batches", "mean CV in a batch", "pairs meeting again",
                              "efficiency"), rows, right=(1, 2, 3, 4)), flush=True)
    if args.steps:
        old_ref = args.old_ref or baseline_ref()
        code = {"old": checkout(old_ref, os.path.join(args.out_dir, "old_code")), "new": REPO}
        results["heldout_loss"] = {"old_ref": old_ref}
        rows = []
        for layout in args.layouts.split(","):
            for name in BATCHINGS:
                loss, seconds = heldout_loss(data, os.path.join(args.out_dir, f"{layout}_{name}"), code[name],
                                             layout == "packed", args)
                results["heldout_loss"][f"{layout}/{name}"] = {"loss": loss, "seconds": seconds}
                rows.append((layout, name, str(args.steps), f"{loss:.4f}", f"{seconds:.0f}"))
                print(f"  {layout}/{name}: held-out loss {loss:.4f} after {args.steps} steps ({seconds:.0f} s)",
                      flush=True)
        print(f"\nheld-out loss after {args.steps} steps (demo model, --batch_tokens {DEMO_BATCH_TOKENS}, "
              f"lr {args.lr:g}, seed {args.seed})\n")
        print(markdown_table(("layout", "batching", "steps", "held-out loss", "seconds"), rows, right=(2, 3, 4)))
    with open(os.path.join(args.out_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    print(f"\n-> {os.path.join(args.out_dir, 'results.json')} ({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    run_cli(main)
