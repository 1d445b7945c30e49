"""The whole pipeline on a tiny local model, end to end, on CPU: `make demo`.

    python demo.py [--out_dir demo_out] [--model_name DIR_OR_HUB_ID]

1. builds a tiny Llama-architecture model + Llama-style tokenizer from the sample (no download)
2. prepare_llamatokenizer.py -> filter_data.py -> encode_dataset.py on examples/sample.jsonl
3. training/train_peft.py (LoRA) and training/train_full.py --adam8bit, through
   `accelerate launch --config_file configs/cpu.yaml`, exactly as the README shows them
4. generate.py on held-out prompts, with the format check

Every stage runs as its own command (printed before it runs), so the demo proves the
README's commands. Running it again replaces its own outputs.
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.abspath(__file__))
HELD_OUT = 6       # sample records kept out of training, used as generation prompts
MAX_LEN = 768


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out_dir", default="demo_out")
    p.add_argument("--model_name", help="a real base model instead of the tiny local one (e.g. on a GPU node)")
    p.add_argument("--sample", default=os.path.join(REPO, "examples", "sample.jsonl"))
    p.add_argument("--lora_epochs", type=float, default=1)
    p.add_argument("--full_epochs", type=float, default=4)
    return p.parse_args(argv)


def run(stage, cmd, results):
    """Run one stage as a user would; print one line with what it wrote and how long it took."""
    print(f"\n$ {shlex.join(cmd)}", flush=True)
    t0 = time.time()
    env = dict(os.environ, HF_HUB_OFFLINE=os.environ.get("HF_HUB_OFFLINE", "1"), TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seconds = time.time() - t0
    if proc.returncode != 0:
        print(proc.stdout[-4000:])
        sys.exit(f"demo: stage '{stage}' failed (exit {proc.returncode})")
    summary = [line for line in proc.stdout.splitlines() if line.startswith(("tokenizer ->", "filter:", "encode:",
                                                                            "done:", "tiny Llama", "format ok"))]
    results.append((stage, seconds))
    print(f"[{stage}] {seconds:.1f}s  " + (summary[-1] if summary else ""), flush=True)
    return proc.stdout


def split_sample(sample, out_dir):
    from reasoning_sft.records import read_records

    records = read_records(sample)
    train, held = records[:-HELD_OUT], records[-HELD_OUT:]
    paths = {"train": os.path.join(out_dir, "train.jsonl"), "heldout": os.path.join(out_dir, "heldout.jsonl")}
    for name, part in (("train", train), ("heldout", held)):
        with open(paths[name], "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in part)
    return paths


def main(argv=None):
    args = parse_args(argv)
    out = args.out_dir
    os.makedirs(out, exist_ok=True)
    py, results, t_start = sys.executable, [], time.time()
    launch = [py, "-m", "accelerate.commands.launch", "--config_file", "configs/cpu.yaml"]
    d = {name: os.path.join(out, name) for name in ("tiny-llama", "tokenizer", "filtered", "encoded", "lora", "full")}
    model = args.model_name or d["tiny-llama"]
    paths = split_sample(args.sample, out)
    print(f"[split] {args.sample}: held out the last {HELD_OUT} records as prompts -> {paths['heldout']}")

    if not args.model_name:
        run("tiny model", [py, "-m", "reasoning_sft.tiny_llama", "--corpus", paths["train"], "--out_dir", model,
                           "--hidden", "128", "--layers", "2"], results)
    run("stage 1: tokenizer", [py, "prepare_llamatokenizer.py", "--model", model, "--out_dir", d["tokenizer"],
                               "--overwrite"], results)
    run("stage 2: filter", [py, "filter_data.py", "--json", paths["train"], "--tokenizer", d["tokenizer"],
                            "--out_dir", d["filtered"], "--max_len", str(MAX_LEN), "--overwrite"], results)
    run("stage 3: encode", [py, "encode_dataset.py", "--json", os.path.join(d["filtered"], "data.json"),
                            "--tokenizer", d["tokenizer"], "--encode_dir", d["encoded"], "--max_len", str(MAX_LEN),
                            "--overwrite"], results)
    train_dir = os.path.join(d["encoded"], "arrow_dataset")
    common = ["--model_name", model, "--tokenizer_dir", d["tokenizer"], "--train_dir", train_dir,
              "--batch_tokens", "4096", "--eval_fraction", "0.05", "--eval_every", "20", "--log_every", "10",
              "--overwrite"]
    run("stage 4: LoRA", launch + ["training/train_peft.py", *common, "--output_dir", d["lora"],
                                   "--epochs", str(args.lora_epochs), "--lora_r", "16", "--lora_alpha", "32",
                                   "--lr", "2e-3"], results)
    run("stage 4: full (8-bit Adam)", launch + ["--main_process_port", "25001", "training/train_full.py", *common,
                                                "--output_dir", d["full"], "--epochs", str(args.full_epochs),
                                                "--lr", "3e-3", "--adam8bit"], results)
    generations = {}
    for name, flag in (("lora", "--adapter_dir"), ("full", "--model_dir")):
        generations[name] = os.path.join(out, f"generations_{name}.jsonl")
        run(f"generate ({name})", [py, "generate.py", "--model_name", model, "--tokenizer_dir", d["tokenizer"],
                                   flag, d[name], "--prompts", paths["heldout"], "--out", generations[name],
                                   "--max_new_tokens", "384"], results)

    print(f"\ndemo finished in {time.time() - t_start:.0f}s. Artifacts:")
    artifacts = [
        ("tokenizer (stage 1)", d["tokenizer"]),
        ("filtered data + report + length histogram", d["filtered"]),
        ("encoded Arrow dataset + manifest", d["encoded"]),
        ("LoRA adapter, metrics.jsonl, loss.png", d["lora"]),
        ("full model, metrics.jsonl, loss.png", d["full"]),
    ] + [(f"generations + format summary ({k})", v) for k, v in generations.items()]
    for what, path in artifacts:
        print(f"  {what:45s} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
