"""Training speed: our loop (train_full.py) against transformers.Trainer, same model, data, epoch and machine.

    OMP_NUM_THREADS=2 python benchmarks/bench_train.py --out_dir bench_out/train --repeats 1

What it does, offline (only the timings vary from run to run):

1. builds a Llama-style tokenizer (reasoning_sft.demo.tiny_llama, trained on --corpus; the BPE trainer
   stops early when the corpus runs out of merges) and a random Llama with --layers layers,
   --hidden wide and a --vocab row head (rows past the tokenizer are spare, as in deepseek-coder:
   the head computes all of them), then runs stages 1-3 (prepare, filter, encode) at --max_len;
2. runs each contender as a whole process (a fresh `python ...`), one epoch, timed by wall clock
   from start to exit (imports, model load, training and saving the trained model included):
   - trainer_default: transformers.Trainer, batch --trainer_batch, random batches padded to the
     longest (train_sampling_strategy="random", its default);
   - trainer_group:   the same with train_sampling_strategy="group_by_length";
   - ours_padded:     training/train_full.py --batch_tokens B --packing off (token-budget batches,
     fused head + loss at labelled positions only);
   - ours_packed:     --packing on --flash_attn, only where a varlen kernel exists (CUDA, with
     flash-attn or torch >= 2.10's own varlen_attn); on CPU it is skipped (packed rows would run
     dense masked attention);
   with --repeats > 1 the contenders are interleaved (A B C A B C ...) and the median is kept;
3. prints target tokens/s (labelled tokens of the epoch / wall seconds) and the ratios of ours
   to each Trainer, and writes OUT/results.json.

Every contender gets the same OMP_NUM_THREADS (--threads; default: this process's setting or all
cores), learning rate, AdamW and clipping. --quick: a tiny model on 16 records, seconds long,
for the smoke test.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

from reasoning_sft.demo.pipeline import REPO, data_stages

CONTENDERS = ("trainer_default", "trainer_group", "ours_padded", "ours_packed")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a("--out_dir", default="bench_out/train")
    a("--corpus", default=os.path.join(REPO, "examples", "sample.jsonl"))
    a("--records", type=int, default=300, help="first N records of --corpus")
    a("--vocab", type=int, default=32000, help="rows of the embedding and head")
    a("--hidden", type=int, default=256)
    a("--layers", type=int, default=4)
    a("--max_len", type=int, default=1024)
    a("--batch_tokens", type=int, default=4096, help="ours: token budget of a micro-batch")
    a("--trainer_batch", type=int, default=8, help="Trainer: sequences per batch")
    a("--lr", type=float, default=2e-5)
    a("--repeats", type=int, default=1, help="runs per contender, interleaved; the median is reported")
    a("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS") or 0) or os.cpu_count())
    a("--only", help="comma-separated contenders to run (default: all that apply)")
    a("--quick", action="store_true", help="tiny model, 16 records: a seconds-long smoke run")
    a("--_child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.records, args.vocab, args.hidden, args.layers = 16, 1024, 64, 1
        args.max_len, args.batch_tokens, args.trainer_batch = 512, 1024, 4
    return args


# ---------------------------------------------------------------- set up: model, tokenizer, data

def build_inputs(args):
    """Model + tokenizer + encoded data under OUT; returns the paths."""
    from reasoning_sft.artifacts import atomic_output_dir
    from reasoning_sft.data.records import read_records
    from reasoning_sft.demo import tiny_llama

    out = os.path.abspath(args.out_dir)
    paths = {name: os.path.join(out, name) for name in ("model", "tokenizer", "filtered", "encoded", "raw.json")}
    records = read_records(args.corpus)[:args.records]
    with open(paths["raw.json"], "w", encoding="utf-8") as f:
        json.dump(records, f)
    with atomic_output_dir(paths["model"], overwrite=True) as tmp:
        n_tokens = tiny_llama.build_tokenizer(list(tiny_llama.corpus_texts(records)), tmp, args.vocab)
        tiny_llama.build_model(tmp, max(args.vocab, n_tokens + 16), hidden=args.hidden, layers=args.layers,
                               heads=args.hidden // 64, kv_heads=args.hidden // 64)
    paths.update(data_stages(paths["model"], paths["raw.json"], out, args.max_len))
    return paths, n_tokens


def target_tokens(train_dir):
    """Labelled tokens of one epoch: what every contender's loss is computed on (labels shifted by one)."""
    import datasets

    labels = datasets.load_from_disk(train_dir)["labels"]
    return sum(sum(1 for x in row[1:] if x != -100) for row in labels)


# ---------------------------------------------------------------- the contenders, each a whole process

def trainer_main(args, paths, strategy):
    """One epoch of transformers.Trainer on the same model and data (its own process)."""
    import datasets
    import torch
    from trainer_baseline import pad_to_longest
    from transformers import Trainer, TrainingArguments

    from reasoning_sft.artifacts import load_prepared_tokenizer
    from reasoning_sft.train.modeling import load_causal_lm, resize_and_init_new_tokens

    tokenizer, _ = load_prepared_tokenizer(paths["tokenizer"])
    pad = tokenizer.pad_token_id
    dataset = datasets.load_from_disk(paths["train_dir"]).select_columns(["input_ids", "labels", "length"])
    model = load_causal_lm(paths["model"])
    resize_and_init_new_tokens(model, tokenizer)  # the same tag-row init as ours

    def collate(rows):
        return pad_to_longest(rows, pad)

    out = os.path.join(os.path.abspath(args.out_dir), f"run_{strategy}")
    targs = TrainingArguments(
        output_dir=out, per_device_train_batch_size=args.trainer_batch, num_train_epochs=1, learning_rate=args.lr,
        lr_scheduler_type="cosine", max_grad_norm=1.0, logging_steps=10, save_strategy="no", report_to="none",
        use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0, seed=42, disable_tqdm=True,
        train_sampling_strategy=strategy, length_column_name="length", remove_unused_columns=False)
    Trainer(model=model, args=targs, train_dataset=dataset, data_collator=collate).train()
    model.save_pretrained(out)  # ours saves its model too


def contender_cmd(args, paths, name):
    if name.startswith("trainer"):
        return [sys.executable, os.path.abspath(__file__), "--_child", name, "--out_dir", args.out_dir,
                "--trainer_batch", str(args.trainer_batch), "--lr", str(args.lr)]
    packed = name == "ours_packed"
    return [sys.executable, os.path.join(REPO, "training", "train_full.py"), "--model_name", paths["model"],
            "--tokenizer_dir", paths["tokenizer"], "--train_dir", paths["train_dir"],
            "--output_dir", os.path.join(os.path.abspath(args.out_dir), f"run_{name}"), "--overwrite",
            "--batch_tokens", str(args.batch_tokens), "--epochs", "1", "--lr", str(args.lr),
            "--packing", "on" if packed else "off", *(["--flash_attn"] if packed else [])]


def packed_skip_reason():
    """None where --flash_attn has a varlen kernel (flash-attn or PyTorch's own), else why ours_packed is skipped."""
    from reasoning_sft.errors import UserError
    from reasoning_sft.train.attention import select_kernel

    try:
        select_kernel()
    except UserError as err:
        return str(err)
    return None


def time_contender(args, paths, name):
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
               HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONPATH=REPO)
    t0 = time.perf_counter()
    proc = subprocess.run(contender_cmd(args, paths, name), cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return seconds


def main(argv=None):
    args = parse_args(argv)
    paths_file = os.path.join(os.path.abspath(args.out_dir), "paths.json")
    if args._child:
        with open(paths_file) as f:
            strategy = {"trainer_default": "random", "trainer_group": "group_by_length"}[args._child]
            trainer_main(args, json.load(f), strategy)
        return 0

    os.makedirs(args.out_dir, exist_ok=True)
    paths, n_tokens = build_inputs(args)
    with open(paths_file, "w") as f:
        json.dump(paths, f)
    tokens = target_tokens(paths["train_dir"])
    skip_packed = packed_skip_reason()
    names = [n for n in CONTENDERS if n != "ours_packed" or skip_packed is None]
    if args.only:
        names = [n for n in names if n in args.only.split(",")]
    if skip_packed is not None:
        print(f"ours_packed: skipped (no varlen attention kernel here: {skip_packed})")
    print(f"{args.records} records, {tokens} target tokens; Llama {args.layers} layers x {args.hidden}, "
          f"head {max(args.vocab, n_tokens + 16)} rows (tokenizer {n_tokens}); max_len {args.max_len}; "
          f"OMP_NUM_THREADS={args.threads}; {os.cpu_count()} cores")
    seconds = {n: [] for n in names}
    for repeat in range(args.repeats):
        for name in names:  # interleaved, so a noisy neighbour disturbs every contender alike
            seconds[name].append(time_contender(args, paths, name))
            print(f"  run {repeat + 1}: {name:16} {seconds[name][-1]:8.1f} s", flush=True)
    rates = {n: tokens / statistics.median(s) for n, s in seconds.items()}
    print(f"\n{'contender':16} {'seconds':>8} {'target tok/s':>13}")
    for name in names:
        print(f"{name:16} {statistics.median(seconds[name]):8.1f} {rates[name]:13.1f}")
    ratios = {f"{ours}/{theirs}": rates[ours] / rates[theirs] for ours in names if ours.startswith("ours")
              for theirs in names if theirs.startswith("trainer")}
    for key, value in ratios.items():
        print(f"{key}: {value:.2f}x")
    results = {"args": {k: v for k, v in vars(args).items() if not k.startswith("_")}, "target_tokens": tokens,
               "tokenizer_size": n_tokens, "seconds": seconds, "target_tokens_per_s": rates, "ratios": ratios,
               "machine": {"cores": os.cpu_count(), "python": platform.python_version()}}
    with open(os.path.join(args.out_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
