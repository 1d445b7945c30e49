"""The whole pipeline on a tiny local model, end to end, on CPU: `make demo`.

    python demo.py [--out_dir demo_out] [--model_name DIR_OR_HUB_ID]

1. builds a tiny Llama-architecture model + Llama-style tokenizer from the training split
   (no download) and pre-trains it briefly as a plain language model on the split's text,
   without tags, so that like a real base model it knows the language but not the format
2. prepare_llamatokenizer.py -> filter_data.py -> encode_dataset.py on the training split
3. training/train_peft.py (LoRA) and training/train_full.py --adam8bit, through
   `accelerate launch --config_file configs/cpu.yaml`, exactly as the README shows them
   (side by side, each on half the cores, at most 4 threads: a model this small gains little from more)
4. generate.py on held-out prompts (never seen by the tokenizer, pre-training or fine-tuning),
   with the format check
5. export.py: the full model's serving directory, demo_out/serve (with model.gguf where
   `make serve-env` built llama.cpp's converter)
6. reasoning_sft.demo.report: demo_out/report.html, one page with all of it

Every stage runs as its own command (printed before it runs), so the demo proves the
README's commands. Running it again replaces its own outputs.
"""

import argparse
import concurrent.futures
import json
import os
import shlex
import signal
import subprocess
import sys
import time

from reasoning_sft.data.records import read_records
from reasoning_sft.demo.pipeline import REPO, encode_argv, filter_argv, tokenizer_argv
from reasoning_sft.errors import UserError, run_cli
from reasoning_sft.eval.execution import default_workers
from reasoning_sft.serve.export import default_llama_cpp_dir

HELD_OUT = 16      # the sample's last records: kept out of all training, used as generation prompts
MAX_LEN = 512
SUMMARY_PREFIXES = ("tokenizer ->", "filter:", "encode:", "done:", "tiny Llama", "format ok", "report ->",
                    "serving dir ->")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out_dir", default="demo_out")
    p.add_argument("--model_name", help="a real base model instead of the tiny local one (e.g. on a GPU node)")
    p.add_argument("--sample", default=os.path.join(REPO, "examples", "sample.jsonl"))
    p.add_argument("--hidden", type=int, default=128, help="tiny model width")
    p.add_argument("--layers", type=int, default=2, help="tiny model depth")
    p.add_argument("--vocab_size", type=int, default=4096, help="tiny tokenizer's vocabulary")
    p.add_argument("--pretrain_epochs", type=float, default=12)
    p.add_argument("--lora_epochs", type=float, default=10)
    p.add_argument("--full_epochs", type=float, default=10)
    p.add_argument("--lora_lr", type=float, default=1e-2)
    p.add_argument("--full_lr", type=float, default=2e-3)
    p.add_argument("--max_new_tokens", type=int, default=512)
    return p.parse_args(argv)


def stage_env(threads=None):
    env = dict(os.environ, HF_HUB_OFFLINE=os.environ.get("HF_HUB_OFFLINE", "1"), TOKENIZERS_PARALLELISM="false")
    if threads and "OMP_NUM_THREADS" not in os.environ:  # a user's own setting wins
        env["OMP_NUM_THREADS"] = str(threads)
    # threads that sleep while they wait: measured 7% slower on idle cores, but 1.5x faster when one other
    # process competes for them (spinning threads then wait for each other's time slices)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


def report_line(stage, seconds, stdout):
    summary = [line for line in stdout.splitlines() if line.startswith(SUMMARY_PREFIXES)]
    print(f"[{stage}] {seconds:.1f}s  " + (summary[-1] if summary else ""), flush=True)


def fail(stage, proc_returncode, stdout):
    print(stdout[-4000:])
    sys.exit(f"demo: stage '{stage}' failed (exit {proc_returncode})")


def run(stage, cmd, results, threads=None):
    """Run one stage as a user would; print one line with what it wrote and how long it took."""
    return run_together([(stage, cmd)], results, threads)[0]


def run_together(stages, results, threads=None):
    """Run [(stage, cmd)] at the same time (each with `threads` CPU threads); print a line as each ends."""
    for _, cmd in stages:
        print(f"\n$ {shlex.join(cmd)}", flush=True)

    def start(stage, cmd):
        t0 = time.time()
        proc = subprocess.Popen(cmd, cwd=REPO, env=stage_env(threads), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        return stage, proc, t0

    def finish(started):
        stage, proc, t0 = started
        stdout, _ = proc.communicate()
        return stage, proc, time.time() - t0, stdout

    with concurrent.futures.ThreadPoolExecutor(len(stages)) as pool:
        started, outputs = [], {}
        try:
            for stage, cmd in stages:
                started.append(start(stage, cmd))
            for future in concurrent.futures.as_completed([pool.submit(finish, s) for s in started]):
                stage, proc, seconds, stdout = future.result()
                if proc.returncode != 0:
                    fail(stage, proc.returncode, stdout)
                results.append({"stage": stage, "seconds": round(seconds, 1),
                                "alongside": [other for other, _ in stages if other != stage]})
                report_line(stage, seconds, stdout)
                outputs[stage] = stdout
        except BaseException:  # a failed stage, Ctrl-C, ...: the pool's exit would wait for the others to end
            stop(proc for _, proc, _ in started)
            raise
    return [outputs[stage] for stage, _ in stages]


def stop(procs):
    """Kill each still-running stage's whole process group (a launcher and its training processes).

    The stages run in sessions of their own, so a Ctrl-C in the terminal never reaches them. SIGKILL,
    not SIGTERM: a trainer answers SIGTERM by finishing its step and saving a checkpoint, which a
    stopped demo has no use for (the next demo run replaces every stage's output).
    """
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:  # it ended since poll()
                pass
    for proc in procs:  # reaped here: the demo leaves no stage behind, not even as a zombie
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


def split_sample(sample, out_dir):
    records = read_records(sample)
    if len(records) <= HELD_OUT:  # nothing would be left to train on
        raise UserError(f"{sample}: {len(records)} records; the demo holds out the last {HELD_OUT} as prompts "
                        "and needs more to train on")
    os.makedirs(out_dir, exist_ok=True)
    train, held = records[:-HELD_OUT], records[-HELD_OUT:]
    paths = {"train": os.path.join(out_dir, "train.jsonl"), "heldout": os.path.join(out_dir, "heldout.jsonl")}
    for name, part in (("train", train), ("heldout", held)):
        with open(paths[name], "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in part)
    return paths


def stage_dirs(out):
    return {name: os.path.join(out, name) for name in ("tiny-llama", "tokenizer", "filtered", "encoded", "lora", "full",
                                                       "heldout_filtered", "heldout_encoded", "serve")}


def trainer_stages(args, model, d, launch):
    """Stage 4's two commands, exactly as the README shows them (tests/test_demo.py compares them)."""
    common = ["--model_name", model, "--tokenizer_dir", d["tokenizer"],
              "--train_dir", os.path.join(d["encoded"], "arrow_dataset"),
              "--eval_dir", os.path.join(d["heldout_encoded"], "arrow_dataset"),  # loss only, never a gradient
              "--batch_tokens", "4096", "--eval_every", "20", "--log_every", "10", "--overwrite"]
    return [
        ("stage 4: LoRA", launch + ["training/train_peft.py", *common, "--output_dir", d["lora"],
                                    "--epochs", f"{args.lora_epochs:g}", "--lora_r", "32", "--lora_alpha", "64",
                                    "--lr", f"{args.lora_lr:g}"]),
        ("stage 4: full (8-bit Adam)", launch + ["--main_process_port", "25001", "training/train_full.py", *common,
                                                 "--output_dir", d["full"], "--epochs", f"{args.full_epochs:g}",
                                                 "--lr", f"{args.full_lr:g}", "--adam8bit"]),
    ]


def main(argv=None):
    args = parse_args(argv)
    out = args.out_dir
    py, results, t_start = sys.executable, [], time.time()
    # tiny matrices: more than a few threads only add overhead; two trainings share the cores
    solo, pair = min(4, default_workers()), max(1, min(4, default_workers() // 2))
    launch = [py, "-m", "accelerate.commands.launch", "--config_file", "configs/cpu.yaml"]
    d = stage_dirs(out)
    model = args.model_name or d["tiny-llama"]
    paths = split_sample(args.sample, out)
    print(f"[split] {args.sample}: held out the last {HELD_OUT} records as prompts -> {paths['heldout']}")

    if not args.model_name:
        run("tiny model + pre-training", [py, "-m", "reasoning_sft.demo.tiny_llama", "--corpus", paths["train"],
                                          "--out_dir", model, "--hidden", str(args.hidden), "--heads", "4",
                                          "--kv_heads", "2", "--layers", str(args.layers),
                                          "--vocab_size", str(args.vocab_size),
                                          "--pretrain_epochs", str(args.pretrain_epochs),
                                          "--pretrain_eval", paths["heldout"]], results, solo)
    run("stage 1: tokenizer", [py, *tokenizer_argv(model, d["tokenizer"])], results, solo)
    # the held-out records go through the same stages: the trainers' eval set (loss only, never a gradient)
    run_together([
        ("stage 2: filter", [py, *filter_argv(paths["train"], d["tokenizer"], d["filtered"], MAX_LEN)]),
        ("stage 2: filter (held-out)", [py, *filter_argv(paths["heldout"], d["tokenizer"], d["heldout_filtered"],
                                                         MAX_LEN, plot=False)]),
    ], results, pair)
    run_together([
        (f"stage 3: encode{suffix}", [py, *encode_argv(d[f"{part}filtered"], d["tokenizer"], d[f"{part}encoded"],
                                                       MAX_LEN)])
        for part, suffix in (("", ""), ("heldout_", " (held-out)"))
    ], results, pair)
    run_together(trainer_stages(args, model, d, launch), results, pair)
    generations = {name: os.path.join(out, f"generations_{name}.jsonl") for name in ("lora", "full")}
    run_together([
        (f"generate ({name})", [py, "generate.py", "--model_name", model, "--tokenizer_dir", d["tokenizer"],
                                flag, d[name], "--prompts", paths["heldout"], "--out", generations[name],
                                "--max_new_tokens", str(args.max_new_tokens), "--batch_size", str(HELD_OUT)])
        for name, flag in (("lora", "--adapter_dir"), ("full", "--model_dir"))
    ], results, pair)
    # stage 5: the serving directory (a GGUF too where `make serve-env` built llama.cpp's converter)
    gguf = ["--gguf"] if os.path.isfile(os.path.join(default_llama_cpp_dir(), "convert_hf_to_gguf.py")) else []
    run("stage 5: export (full)", [py, "export.py", "--model_dir", d["full"], "--out_dir", d["serve"],
                                   "--overwrite", *gguf], results, solo)

    timings = os.path.join(out, "timings.json")
    with open(timings, "w", encoding="utf-8") as f:
        json.dump({"stages": results, "wall_seconds": round(time.time() - t_start, 1)}, f, indent=1)
    report = os.path.join(out, "report.html")
    run("report", [py, "-m", "reasoning_sft.demo.report", "--out", report, "--filtered", d["filtered"],
                   "--encoded", d["encoded"], "--run", "LoRA", d["lora"], generations["lora"],
                   "--run", "full fine-tuning", d["full"], generations["full"], "--timings", timings]
        + ([] if args.model_name else ["--pretrained", model]), results, solo)

    print(f"\ndemo finished in {time.time() - t_start:.0f}s. Artifacts:")
    artifacts = [
        ("base model (+ pre-training metrics)", model),
        ("tokenizer (stage 1)", d["tokenizer"]),
        ("filtered data + report + length histogram", d["filtered"]),
        ("encoded Arrow dataset + manifest", d["encoded"]),
        ("LoRA adapter, metrics.jsonl, loss.png", d["lora"]),
        ("full model, metrics.jsonl, loss.png", d["full"]),
        ("serving directory of the full model (stage 5)", d["serve"]),
    ] + [(f"generations + format summary ({k})", v) for k, v in generations.items()]
    for what, path in artifacts:
        print(f"  {what:45s} {path}")
    print(f"The whole run on one page: {os.path.abspath(report)}")
    return 0


if __name__ == "__main__":
    run_cli(main)
