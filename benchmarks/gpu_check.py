"""The GPU check: --flash_attn's varlen kernel is right in bf16, and how fast the trainers run on one GPU.

One command on a GPU node (sized for at most 6 minutes on one H100, installs included; not timed
there yet; nothing is downloaded):

    python benchmarks/gpu_check.py --out gpu_check_out

The same code at tiny size on CPU, in seconds (tests/test_gpu_check.py runs it, so it cannot rot;
the varlen kernel is then the reference one, per-sequence sdpa, and the numbers mean nothing):

    python benchmarks/gpu_check.py --smoke --out /tmp/gpu_check_smoke

What it does, in order (sizes for the GPU run; --smoke shrinks every one):

1. Data and model, built here: a Llama-style tokenizer trained on examples/sample.jsonl, then stages 1-3
   (prepare_llamatokenizer, filter_data, encode_dataset --max_len 2048), so the lengths are the sample's;
   a ~1.1B Llama from a config with TinyLlama's shape (22 layers, hidden 2048, 32 heads / 4 KV heads,
   intermediate 5632, vocabulary 32016), random weights, saved in bf16.
2. Correctness in bf16 on 8 sequences of the data: (a) packed through the varlen kernel vs padded rows
   through sdpa, same weights: mean token loss within 1e-2 relative, per-sequence losses too, gradients
   (cosine >= 0.99); (b) no sequence attends to another: new tokens in one sequence of a packed row leave the
   others' losses as they were; (c) the trainers' loss head (modeling.ChunkedLossLM) vs full logits.
3. The card's bf16 matmul rate (8192^3 products, timed here), the denominator of MFU.
4. Speed, each run a fresh process calling the trainer's own main(argv) (training/train_full.py,
   training/train_peft.py) with --batch_tokens 16384 for --steps steps; tokens/s are the trainers' own
   metrics.jsonl windows after --warmup steps, peak GPU memory is torch.cuda.max_memory_allocated:
   full fine-tuning with 8-bit AdamW (bitsandbytes; plain AdamW, labelled, where it is missing) packed and
   padded (--packing off, the same kernel), LoRA r=16 packed, and the baseline: transformers.Trainer
   (bf16 autocast on bf16 weights, sdpa, group_by_length, the same data, steps and optimizer) whose batch
   size is the most sequences that fit the same 16384-slot budget when padded to the longest sequence.
   MFU = (6 N + attention) FLOPs per token x tokens/s / the measured matmul rate; N counts every weight
   but the input embedding; attention = 6 x layers x hidden x E[s(s+1)] / E[s] per token (causal, forward
   and backward) over the data's lengths; LoRA counts 4 N (frozen weights get no weight gradient).
5. --out gets results.json and results.md (the table, also printed).

--only picks phases (correctness, speed, precision, fsdp, scale, sampling; default correctness, speed and fsdp:
precision, scale and sampling each need a call of its own). The speed runs use the trainers' default --precision
(auto: bf16 weights, stochastic rounding, for full fine-tuning with --flash_attn; the table names the
policy each run logged in its train_config.json). The speed phase's packed full fine-tuning run profiles
one step (step_profile.py) and, on a GPU, is repeated with --compile.

precision: the packed full fine-tuning run (8-bit AdamW, --flash_attn) under --precision fp32, bf16 and
bf16-nearest, --lr 2e-5 constant, --steps steps (20): tokens/s and peak memory as the speed runs, and
the fraction of weight elements that differ from the base model's after the run (bench_precision.py's
comparison, in the trained dtype: fp32 for fp32, bf16 for the others). No policy can move the input
embedding's rows of ids the data never uses (zero gradients; the check's tokenizer has ~9.3k of the 32,016
ids: about 4% of all elements); the few tag rows, set at load, count as changed under every policy.
Estimated at about 2 minutes on one H100 (not measured): each speed run there took 24 to 41 s of process
wall time, most of it start-up, the model load and the final save, plus a few seconds per run to compare
1.1B weights on the CPU; in the default call (about 5 minutes, estimated) it would pass the 6 minutes that
call is sized for.

fsdp and scale are in gpu_scale.py: FSDP kill / --resume / from_pretrained
on the ~1.1B model, and CodeLlama-shaped 7B and 13B runs at the largest --batch_tokens that fits.

sampling: benchmarks/bench_sampling.py's comparison on the ~1.1B model (random weights seldom sample a stop
token, so nearly every sample runs to --max_new_tokens): evaluate.py's generation with --backend transformers,
then with --backend vllm, each in a fresh process of this python, on the same 16 prompts x 8 samples,
temperature 0.8, top-p 0.95, at most 256 new tokens (--smoke: 4 x 2, 16 tokens); samples/s, tokens/s and vLLM's
tokens/s over transformers'. Where vLLM is not importable here (`pip install vllm` on the node) its row says so
and is skipped. Not timed on a GPU yet: about 5 minutes on one H100 is an estimate (vLLM's engine start and
transformers' 16 batches of 256 steps are most of it); each evaluate.py run may take SAMPLING_TIMEOUT seconds.

On a node without network (e.g. torch 2.11 with transformers, accelerate and peft preinstalled but not
datasets or bitsandbytes), carry the pinned wheels, made where pip works (about 58 MB):

    python -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \\
      --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \\
      -d .whl transformers==5.23.0 peft==0.21.2 datasets==5.2.0 bitsandbytes==0.50.2 dill==0.4.1 multiprocess==0.70.19

and on the node:

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && \\
      PYTHONPATH=/tmp/site:$PWD python3 benchmarks/gpu_check.py --out gpu_check_out
"""

import argparse
import contextlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time

import gpu_scale
from gpu_common import (
    GPU,
    SMOKE,
    Run,
    attention_flops_per_token,
    build_data,
    build_model,
    log,
    optimizer_flags,
    run_worker,
    trainer_argv,
)
from tables import markdown_table

from reasoning_sft.demo.pipeline import load_script
from reasoning_sft.train.loop import Callback

CHECK_SEQUENCES = 8
# the data, the model and the matmul rate always come first
PHASES = ("correctness", "speed", "precision", "fsdp", "scale", "sampling")


# ---------------------------------------------------------------- environment

def package_versions():
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("torch", "transformers", "accelerate", "peft", "datasets", "bitsandbytes", "flash-attn"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def device_name():
    import torch
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU ({os.cpu_count()} cores)"


def require_packages(versions):
    missing = [name for name in ("transformers", "accelerate", "datasets") if not versions[name]]
    if missing:
        sys.exit(f"gpu_check: missing {', '.join(missing)}: install requirements.txt, or carry the wheels "
                 "(see this script's docstring)")


# ---------------------------------------------------------------- 1. data and model


# ---------------------------------------------------------------- 2. correctness

def pick_rows(dataset, n):
    """n rows spread over the length distribution (quantiles), shortest to longest."""
    import numpy as np

    from reasoning_sft.train.loop import fetch_rows

    lengths = np.asarray(dataset["length"])
    order = np.argsort(lengths, kind="stable")
    picks = order[np.linspace(0, len(order) - 1, n).round().astype(int)]
    return fetch_rows(dataset, sorted(set(picks.tolist()), key=lambda i: lengths[i]))


def per_sequence_losses(model, batch, packed, device):
    """Per-token losses from full logits, split per sequence (the model's plain forward, no loss head)."""
    import torch.nn.functional as F

    kwargs = {k: batch[k].to(device) for k in ("input_ids", "attention_mask", "position_ids") if k in batch}
    logits = model(**kwargs, use_cache=False).logits.float()
    targets = batch["targets"].to(device)
    losses = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none", ignore_index=-100)
    losses = losses.view(targets.shape)
    keep = targets != -100
    if packed:
        starts = (batch["position_ids"][0] == 0).nonzero().squeeze(1).tolist() + [targets.shape[1]]
        return [losses[0, a:b][keep[0, a:b]] for a, b in zip(starts[:-1], starts[1:])]
    return [losses[r][keep[r]] for r in range(targets.shape[0])]


def flat_grads(model):
    import torch
    return torch.cat([p.grad.float().flatten() for p in model.parameters() if p.grad is not None])


def correctness(model_dir, tokenizer_dir, train_dir, device, dtype):
    """(a) packed varlen vs padded sdpa, (b) isolation in a packed row, (c) loss head vs full logits."""
    import datasets
    import torch
    import torch.nn.functional as F

    from reasoning_sft.artifacts import load_prepared_tokenizer
    from reasoning_sft.data.batching import collate
    from reasoning_sft.data.template import tag_ids
    from reasoning_sft.train import attention
    from reasoning_sft.train.modeling import ChunkedLossLM, load_causal_lm, resize_and_init_new_tokens

    tokenizer = load_prepared_tokenizer(tokenizer_dir)[0]
    tags, pad = tag_ids(tokenizer), tokenizer.pad_token_id
    models = {}
    for name, flash in (("varlen", True), ("sdpa", False)):
        model = load_causal_lm(model_dir, dtype=dtype, flash_attn=flash)
        resize_and_init_new_tokens(model, tokenizer)
        models[name] = model.to(device=device, dtype=dtype).train()
    kernel = attention.describe(models["varlen"])
    rows = pick_rows(datasets.load_from_disk(train_dir), CHECK_SEQUENCES)
    packed, padded = collate(rows, pad, True, tags), collate(rows, pad, False, tags)

    got = per_sequence_losses(models["varlen"], packed, True, device)
    want = per_sequence_losses(models["sdpa"], padded, False, device)
    mean_got, mean_want = torch.cat(got).mean(), torch.cat(want).mean()
    mean_got.backward()
    mean_want.backward()
    g_got, g_want = flat_grads(models["varlen"]), flat_grads(models["sdpa"])
    cosine = F.cosine_similarity(g_got, g_want, dim=0).item()
    loss_rel = abs(mean_got.item() - mean_want.item()) / abs(mean_want.item())
    seq_rel = max(abs(a.mean().item() - b.mean().item()) / abs(b.mean().item()) for a, b in zip(got, want))

    with torch.no_grad():
        varlen = models["varlen"]
        changed = dict(packed)
        starts = (packed["position_ids"][0] == 0).nonzero().squeeze(1).tolist() + [packed["input_ids"].shape[1]]
        ids = packed["input_ids"].clone()
        ids[0, starts[1]:starts[2]] = torch.randint(3, len(tokenizer) - 10, (starts[2] - starts[1],),
                                                     generator=torch.Generator().manual_seed(1))
        changed["input_ids"] = ids
        before = per_sequence_losses(varlen, packed, True, device)
        after = per_sequence_losses(varlen, changed, True, device)
        others = [i for i in range(len(before)) if i != 1]
        leak = max((before[i] - after[i]).abs().max().item() for i in others)
        moved = (before[1] - after[1]).abs().max().item()

        batch = {k: v.to(device) for k, v in packed.items()}
        head_out = ChunkedLossLM(varlen)(**batch)
        head_sum = (head_out[0] if isinstance(head_out, tuple) else head_out).float().item()
        full_sum = torch.cat(per_sequence_losses(varlen, packed, True, device)).sum().item()
        head_rel = abs(head_sum - full_sum) / abs(full_sum)

    del models, varlen, g_got, g_want
    if device == "cuda":
        torch.cuda.empty_cache()
    checks = {
        "kernel": kernel,
        "sequences": len(rows), "tokens": int(packed["input_ids"].numel()),
        "lengths": [len(r["input_ids"]) for r in rows],
        "loss_packed_varlen": mean_got.item(), "loss_padded_sdpa": mean_want.item(),
        "loss_rel_diff": loss_rel, "max_sequence_loss_rel_diff": seq_rel, "grad_cosine": cosine,
        "isolation_max_abs_change_other_sequences": leak, "changed_sequence_max_abs_change": moved,
        "head_loss_sum": head_sum, "full_logits_loss_sum": full_sum, "head_rel_diff": head_rel,
    }
    checks["ok"] = {"loss": loss_rel <= 1e-2 and seq_rel <= 1e-2, "gradients": cosine >= 0.99,
                    "isolation": leak <= 1e-3 and moved > 0, "head": head_rel <= 1e-2}
    return checks


# ---------------------------------------------------------------- 3. matmul rate

def matmul_rate(device):
    """FLOP/s of a large matrix product on this device (bf16 on GPU; fp32 on CPU in --smoke)."""
    import torch

    cuda = device == "cuda"
    n, dtype, reps = (8192, torch.bfloat16, 20) if cuda else (256, torch.float32, 10)
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    return {"flops_per_s": 2 * n ** 3 * reps / seconds, "n": n, "dtype": str(dtype).removeprefix("torch."),
            "reps": reps}


# ---------------------------------------------------------------- 4. speed runs


def speed_runs(args, size, paths, adam8bit, have_peft, trainer_batch):
    model_dir, tok, train = paths
    steps, log_every = args.steps, args.warmup
    common = trainer_argv(size, paths, steps, log_every)
    optim, opt_label = optimizer_flags(adam8bit)
    runs = [
        Run("full_packed", f"full FT, {opt_label}, packed, --flash_attn", "train_full",
            common + optim + ["--flash_attn", "--packing", "on"],
            worker_flags=("--profile_step", str(log_every))),  # the last warm-up step: not in tokens/s
        Run("full_padded", f"full FT, {opt_label}, padded (--packing off), --flash_attn", "train_full",
            common + optim + ["--flash_attn", "--packing", "off"]),
    ]
    if have_peft:
        runs.append(Run("lora_packed", "LoRA r=16, packed, --flash_attn", "train_peft",
                        common + ["--flash_attn", "--packing", "on", "--lora_r", "16", "--lora_alpha", "32"],
                        lora=True))
    runs.append(Run("hf_trainer", f"transformers.Trainer, {opt_label}, sdpa, group_by_length, batch {trainer_batch}",
                    "hf_trainer", ["--model_name", model_dir, "--tokenizer_dir", tok, "--train_dir", train,
                                   "--batch_size", str(trainer_batch), "--max_steps", str(steps),
                                   "--warmup", str(log_every)] + (["--adam8bit"] if adam8bit else [])))
    return runs


# ---------------------------------------------------------------- the worker side (a fresh process per run)

def worker_main(argv):
    """--worker KIND --worker_result PATH [--reference_kernel] -- TRAINER ARGS (run_worker's command line)."""
    split = argv.index("--")
    p = argparse.ArgumentParser(prog="gpu_check.py --worker")
    p.add_argument("--worker", choices=["train_full", "train_peft", "hf_trainer"], required=True)
    p.add_argument("--worker_result", required=True)
    p.add_argument("--reference_kernel", action="store_true")
    p.add_argument("--profile_step", type=int, default=0, help="profile this optimizer step (step_profile.py)")
    p.add_argument("--time_checkpoints", action="store_true", help="time each checkpoint's save, seal and verify")
    a = p.parse_args(argv[:split])
    worker(a.worker, a.worker_result, a.reference_kernel, argv[split + 1:], a.profile_step, a.time_checkpoints)
    return 0


class CheckpointTimes(Callback):
    """A trainer callback: into["checkpoint_s"] = {"save": [s, ...], "seal": [s, ...]}, one entry per checkpoint
    (save: the state's parts; seal: the integrity record; verification is timed by the check, gpu_scale.py)."""

    def __init__(self, into):
        self.times = into["checkpoint_s"] = {"save": [], "seal": []}

    def on_checkpoint(self, trainer, path, seconds):
        for name in self.times:
            self.times[name].append(seconds[name])


def worker(kind, result_path, reference_kernel, argv, profile_step=0, checkpoint_timers=False):
    import torch

    from reasoning_sft.errors import quiet_third_party_logs
    from reasoning_sft.train import attention

    quiet_third_party_logs()
    cuda = torch.cuda.is_available()
    context = attention.kernel_override(attention.reference_kernel()) if reference_kernel else contextlib.nullcontext()
    extra, callbacks = {}, []
    if profile_step:
        import step_profile
        callbacks.append(step_profile.StepProfiler(profile_step, lambda summary: extra.__setitem__("profile", summary)))
    if checkpoint_timers:
        callbacks.append(CheckpointTimes(extra))
    t0 = time.time()
    with context:
        if kind == "hf_trainer":
            result = hf_trainer_baseline(argv)
        else:
            load_script(f"training/{kind}.py").main(argv, callbacks=callbacks)
            result = {}
    result.update(extra)
    result["wall_s"] = round(time.time() - t0, 1)
    result["peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated() / 2 ** 30 if cuda else None
    with open(result_path, "w", encoding="utf-8") as f:
        json.dump(result, f)


def hf_trainer_baseline(argv):
    """transformers.Trainer on the same encoded data: bf16, sdpa, group_by_length, fixed batch size."""
    import dataclasses

    import datasets
    import torch
    from trainer_baseline import pad_to_longest
    from transformers import AutoModelForCausalLM, Trainer, TrainerCallback, TrainingArguments

    from reasoning_sft.artifacts import load_prepared_tokenizer
    from reasoning_sft.train.modeling import resize_and_init_new_tokens

    p = argparse.ArgumentParser()
    for name in ("--model_name", "--tokenizer_dir", "--train_dir", "--output_dir"):
        p.add_argument(name, required=True)
    p.add_argument("--batch_size", type=int, required=True)
    p.add_argument("--max_steps", type=int, required=True)
    p.add_argument("--warmup", type=int, required=True)
    p.add_argument("--adam8bit", action="store_true")
    a = p.parse_args(argv)

    cuda = torch.cuda.is_available()
    tokenizer = load_prepared_tokenizer(a.tokenizer_dir)[0]
    model = AutoModelForCausalLM.from_pretrained(a.model_name, dtype=torch.bfloat16 if cuda else torch.float32,
                                                 attn_implementation="sdpa")
    resize_and_init_new_tokens(model, tokenizer)  # the same tag rows as our trainers
    model.config.use_cache = False
    dataset = datasets.load_from_disk(a.train_dir)
    pad_id = tokenizer.pad_token_id
    real_tokens = []  # per collated batch, in order

    def collate(rows):
        batch = pad_to_longest(rows, pad_id)
        real_tokens.append(int(batch["attention_mask"].sum()))
        return batch

    class Clock(TrainerCallback):
        """Wall time of the steps after the warm-up, synchronized with the GPU."""
        start = end = None

        def on_step_end(self, args, state, control, **kw):
            if cuda:
                torch.cuda.synchronize()
            if state.global_step == a.warmup:
                self.start = time.perf_counter()
            if state.global_step == a.max_steps:
                self.end = time.perf_counter()

    fields = {f.name for f in dataclasses.fields(TrainingArguments)}
    grouping = ({"train_sampling_strategy": "group_by_length"} if "train_sampling_strategy" in fields
                else {"group_by_length": True})
    training_args = TrainingArguments(
        output_dir=a.output_dir, per_device_train_batch_size=a.batch_size, max_steps=a.max_steps,
        learning_rate=2e-5, lr_scheduler_type="cosine", bf16=cuda, use_cpu=not cuda,
        optim="adamw_bnb_8bit" if a.adam8bit else "adamw_torch", max_grad_norm=1.0, logging_steps=a.warmup,
        save_strategy="no", report_to="none", remove_unused_columns=False, dataloader_num_workers=0,
        length_column_name="length", seed=42, disable_tqdm=True, **grouping)
    clock = Clock()
    trainer = Trainer(model=model, args=training_args, train_dataset=dataset, data_collator=collate, callbacks=[clock])
    trainer.train()
    # accelerate's loader collates one batch ahead; batch i is step i's all the same
    timed_tokens = sum(real_tokens[a.warmup:a.max_steps])
    seconds = clock.end - clock.start
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    print(f"trainer: {a.max_steps} steps, batch {a.batch_size}, {timed_tokens} real tokens in the timed steps "
          f"{a.warmup + 1}-{a.max_steps}, {seconds:.2f} s", flush=True)
    return {"tokens_per_s": timed_tokens / seconds, "final_loss": losses[-1] if losses else None,
            "batch_size": a.batch_size, "precision": {"policy": "Trainer's own: bf16 weights" if cuda else "fp32"}}


# ---------------------------------------------------------------- 5. FLOPs and the report


def report(results, size, n_matmul, lengths, rate):
    attn = attention_flops_per_token(size, lengths)
    rows = []
    base = results.get("hf_trainer", {}).get("tokens_per_s")
    for name, r in results.items():
        policy = r.get("precision", {}).get("policy", "")
        if "tokens_per_s" not in r:
            rows.append((name, r.get("label", ""), policy, None, None, None, None))
            continue
        per_token = (4 if r.get("lora") else 6) * n_matmul + attn
        r["flops_per_token"] = per_token
        r["mfu"] = per_token * r["tokens_per_s"] / rate["flops_per_s"]
        r["vs_trainer"] = r["tokens_per_s"] / base if base else None
        rows.append((name, r["label"], policy, r["tokens_per_s"], r["mfu"], r.get("peak_gpu_memory_gib"),
                     r["vs_trainer"]))
    cells = [(name, label, policy, f"{tps:,.0f}" if tps else "failed", f"{100 * mfu:.1f}%" if mfu is not None else "",
              f"{mem:.1f}" if mem is not None else "", f"{ratio:.2f}" if ratio else "")
             for name, label, policy, tps, mfu, mem, ratio in rows]
    return markdown_table(("run", "what", "--precision", "tokens/s", "MFU", "peak GPU memory (GiB)", "x Trainer"),
                          cells, right=(3, 4, 5, 6))


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="results.json and results.md go here")
    p.add_argument("--smoke", action="store_true", help="tiny sizes on CPU with the reference kernel (seconds)")
    p.add_argument("--steps", type=int, help="optimizer steps per speed run (default 20; --smoke 4)")
    p.add_argument("--warmup", type=int, help="steps left out of tokens/s (default 5; --smoke 2)")
    p.add_argument("--work_dir", help="data, model and run outputs (default: a temporary dir, removed at the end)")
    p.add_argument("--skip_speed", action="store_true", help="leave the speed phase out of --only's phases")
    p.add_argument("--run_timeout", type=int, help="seconds one speed run may take (default 150; --smoke 600)")
    p.add_argument("--only", default="correctness,speed,fsdp",
                   help=f"comma-separated phases of {','.join(PHASES)} (default: all but precision, about 2 "
                        "minutes on one H100 (estimated), and scale, about 8: each needs a call of its own)")
    p.add_argument("--scale_budget", type=int, default=420, help="seconds the scale phase may spend (default 420)")
    p.add_argument("--scale_steps", type=int, help="optimizer steps per scale run (default 8; --smoke 2)")
    p.add_argument("--scale_warmup", type=int, help="scale runs' steps left out of tokens/s (default 3; --smoke 1)")
    p.add_argument("--run_timeout_scale", type=int, help="seconds one scale run may take (default 300; --smoke 600)")
    args = p.parse_args(argv)
    args.steps = args.steps or (4 if args.smoke else 20)
    args.warmup = args.warmup or (2 if args.smoke else 5)
    args.run_timeout = args.run_timeout or (600 if args.smoke else 150)
    args.scale_steps = args.scale_steps or (2 if args.smoke else 8)
    args.scale_warmup = args.scale_warmup or (1 if args.smoke else 3)
    args.run_timeout_scale = args.run_timeout_scale or (600 if args.smoke else 300)
    if args.steps < 2 * args.warmup or args.scale_steps < 2 * args.scale_warmup:
        sys.exit("gpu_check: --steps must be at least twice --warmup, --scale_steps twice --scale_warmup "
                 "(tokens/s come from the windows after it)")
    args.phases = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in args.phases if name not in PHASES]
    if unknown or not args.phases:
        sys.exit(f"gpu_check: --only takes phases of {', '.join(PHASES)}, comma-separated; got {args.only!r}")
    if args.skip_speed and "speed" in args.phases:
        args.phases.remove("speed")
    return args


class Check:
    """What the phases share: the arguments, sizes and paths, and results.json / results.md, both rewritten
    after every phase so that a run cut short by a time limit still leaves what it measured."""

    def __init__(self, args, versions, work):
        import torch

        self.args, self.versions, self.work = args, versions, work
        self.size = SMOKE if args.smoke else GPU
        self.device = "cpu" if args.smoke else "cuda"
        self.dtype = torch.float32 if args.smoke else torch.bfloat16
        self.adam8bit = bool(versions["bitsandbytes"])
        self.paths = self.lengths = self.n_matmul = self.rate = None  # set by the data and matmul phases
        self.failed, self.sections, self.t_start = [], [], time.time()
        self.results = {"device": device_name(), "packages": versions, "python": sys.version.split()[0],
                        "smoke": args.smoke, "size": self.size.__dict__, "steps": args.steps,
                        "warmup_steps": args.warmup}

    def save(self):
        from reasoning_sft.artifacts import write_file_atomic

        self.results["seconds"] = round(time.time() - self.t_start, 1)
        self.results["failed"] = self.failed
        text = json.dumps(self.results, indent=2, default=str) + "\n"
        write_file_atomic(os.path.join(self.args.out, "results.json"), lambda f: f.write(text))

    def add_sections(self, *sections):
        from reasoning_sft.artifacts import write_file_atomic

        self.sections += sections
        heading = f"gpu_check on {self.results['device']} ({'smoke' if self.args.smoke else 'full'})"
        text = "\n\n".join([heading, *self.sections]) + "\n"
        write_file_atomic(os.path.join(self.args.out, "results.md"), lambda f: f.write(text))


def data_step(check):
    import datasets

    log("1. data (stages 1-3 on the sample) and the model")
    check.paths = build_data(check.size, check.work)
    check.lengths = lengths = list(datasets.load_from_disk(check.paths[2])["length"])
    check.results["data"] = {"sequences": len(lengths), "tokens": sum(lengths),
                             "mean_length": sum(lengths) / len(lengths), "max_length": max(lengths)}
    if check.args.phases != ["scale"]:  # the scale phase builds models of its own
        n_total, check.n_matmul = build_model(check.size, check.paths[0], check.device, check.dtype)
        check.results["model"] = {"parameters": n_total, "parameters_without_input_embedding": check.n_matmul}
        log(f"   {n_total / 1e9:.3f}B parameters")
    log(f"   {len(lengths)} sequences, mean length {check.results['data']['mean_length']:.0f}, "
        f"longest {max(lengths)}")


def correctness_step(check):
    log("2. correctness (bf16)" if not check.args.smoke else "2. correctness (fp32, reference kernel)")
    checks = phase(check.failed, "correctness", run_correctness, check.args.smoke, check.paths, check.device,
                   check.dtype)
    if checks:
        check.results["correctness"] = checks
        check.failed += [f"correctness:{name}" for name, ok in checks["ok"].items() if not ok]


def matmul_step(check):
    log("3. matmul rate")
    check.results["matmul"] = check.rate = rate = matmul_rate(check.device)
    log(f"   {rate['flops_per_s'] / 1e12:.1f} TFLOP/s ({rate['dtype']}, {rate['n']}^3)")


def speed_step(check):
    args = check.args
    log(f"4. speed: {args.steps} steps per run, tokens/s after step {args.warmup}")
    check.results["speed"] = speed = speed_phase(args, check.size, check.paths, check.work, check.adam8bit,
                                                 check.versions, check.lengths, check.failed, check.save)
    check.results["table"] = table = report(speed, check.size, check.n_matmul, check.lengths, check.rate)
    log(table)
    check.add_sections(f"## Speed (~1.1B)\n\n{table}", *profile_sections(speed, "1.1B"))


def precision_step(check):
    args = check.args
    log(f"5. precision: --precision {', '.join(PRECISION_POLICIES)}, {args.steps} steps at lr {PRECISION_LR}")
    runs = phase(check.failed, "precision", precision_phase, args, check.size, check.paths, check.work,
                 check.adam8bit, check.results.setdefault("precision", {}), check.failed, check.save)
    if runs:
        table = precision_table(runs, args.steps)
        log(table)
        check.add_sections(f"## Precision policies (~1.1B, lr {PRECISION_LR}, {args.steps} steps)\n\n{table}")


def fsdp_step(check):
    smoke = check.args.smoke
    log("6. FSDP: one process under " + ("configs/cpu.yaml (smoke)" if smoke else "configs/fsdp_full_shard.yaml")
        + ": checkpoint, SIGKILL, --resume")
    fsdp = phase(check.failed, "fsdp", gpu_scale.fsdp_phase, check.args, check.paths, check.work, smoke)
    if fsdp is not None:
        check.results["fsdp"] = fsdp
        log(f"   {fsdp}")
        if not fsdp["ok"]:
            check.failed.append("fsdp")
        check.add_sections("## FSDP kill and --resume (~1.1B)\n\n```\n" + json.dumps(fsdp, indent=1) + "\n```")


def scale_step(check):
    args = check.args
    log(f"7. scale: CodeLlama-shaped 7B and 13B, {args.scale_steps} steps per run, budget {args.scale_budget} s")
    scale = phase(check.failed, "scale", gpu_scale.scale_phase, args, check.paths, check.work, args.smoke,
                  check.adam8bit, check.rate, check.lengths, check.results, check.save)
    if scale is not None:
        check.failed += [name for name, r in scale["runs"].items() if "error" in r]
        log(scale["table"])
        check.add_sections(f"## Scale (CodeLlama shapes)\n\n{scale['table']}",
                           *profile_sections(scale["runs"], ""))


def sampling_step(check):
    log("8. sampling: evaluate.py --backend transformers vs --backend vllm (bench_sampling.py)")
    sampling = phase(check.failed, "sampling", sampling_phase, check.args, check.paths, check.work, check.failed)
    if sampling is not None:
        check.results["sampling"] = sampling
        log(sampling["table"])
        check.add_sections(f"## Sampling (~1.1B, {sampling['what']})\n\n{sampling['table']}")


STEPS = {"correctness": correctness_step, "speed": speed_step, "precision": precision_step, "fsdp": fsdp_step,
         "scale": scale_step, "sampling": sampling_step}  # in PHASES order; the matmul rate runs after correctness


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        return worker_main(argv)
    args = parse_args(argv)

    import torch

    if not args.smoke and not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device here; run with --smoke for the CPU check of the code")
    versions = package_versions()
    require_packages(versions)
    os.makedirs(args.out, exist_ok=True)
    work = args.work_dir or tempfile.mkdtemp(prefix="gpu_check_")
    os.makedirs(work, exist_ok=True)
    check = Check(args, versions, work)
    log(f"gpu_check on {check.results['device']}: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    if not check.adam8bit:
        log("bitsandbytes is missing: the full fine-tuning runs and the Trainer use plain AdamW (labelled)")
    if not versions["peft"]:
        log("peft is missing: no LoRA run")
    try:
        data_step(check)
        check.save()
        for name in PHASES:
            if name in args.phases:
                STEPS[name](check)
                check.save()
            if name == "correctness":
                matmul_step(check)
                check.save()
    finally:
        check.save()
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    failed = check.failed
    log(f"done in {check.results['seconds']} s -> {args.out}/results.json" + (f"; FAILED: {failed}" if failed else ""))
    return 1 if failed else 0


def speed_phase(args, size, paths, work, adam8bit, versions, lengths, failed, save):
    """The ~1.1B speed runs, each in a fresh process; their results by name."""
    import torch

    trainer_batch = max(1, size.batch_tokens // max(lengths))
    runs = speed_runs(args, size, paths, adam8bit, bool(versions["peft"]), trainer_batch)
    if not args.smoke:  # --compile next to the eager packed run (on CPU, Inductor's compile would dominate the smoke)
        packed = runs[0]
        runs.insert(1, Run("full_packed_compile", packed.label + ", --compile", packed.kind,
                           packed.argv + ["--compile"], worker_flags=packed.worker_flags))
    speed = {}
    for run in runs:
        log(f"   {run.name}: {run.label}")
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        speed[run.name] = dict(run_worker(run, work, args.smoke, args.run_timeout), label=run.label, lora=run.lora)
        if "error" in speed[run.name]:
            failed.append(run.name)
        save()
    return speed


PRECISION_POLICIES = ("fp32", "bf16", "bf16-nearest")
PRECISION_LR = "2e-5"


def precision_phase(args, size, paths, work, adam8bit, into, failed, save):
    """Packed full fine-tuning on the ~1.1B model under each --precision policy at a constant lr 2e-5: tokens/s
    and peak memory as the speed runs measure them, and the fraction of weight elements the run changed."""
    from bench_precision import unchanged_fraction

    optim, opt_label = optimizer_flags(adam8bit)
    for policy in PRECISION_POLICIES:
        run = Run(f"precision_{policy}", f"full FT, {opt_label}, packed, --flash_attn, lr {PRECISION_LR} constant",
                  "train_full", trainer_argv(size, paths, args.steps, args.warmup) + optim + [
                      "--flash_attn", "--packing", "on", "--precision", policy, "--lr", PRECISION_LR,
                      "--lr_scheduler", "constant"])
        log(f"   {run.name}: {run.label}")
        into[policy] = result = dict(run_worker(run, work, args.smoke, args.run_timeout), label=run.label)
        out_dir = os.path.join(work, run.name)
        if "error" in result:
            failed.append(run.name)
        else:  # compared in the trained weights' dtype: fp32 for the fp32 policy, bf16 for the others
            result["changed_fraction"] = 1 - unchanged_fraction(paths[0], out_dir)
        shutil.rmtree(out_dir, ignore_errors=True)  # the fp32 run's final weights: 4.4 GB
        save()
    return into


def precision_table(runs, steps):
    rows = []
    for policy, r in runs.items():
        if "tokens_per_s" not in r:
            rows.append((policy, "", "", r.get("error", "failed"), "", "", ""))
            continue
        p, mem, loss = r["precision"], r.get("peak_gpu_memory_gib"), r.get("final_loss")
        rows.append((policy, p["weights_dtype"], p["update_rounding"], f"{r['tokens_per_s']:,.0f}",
                     "" if mem is None else f"{mem:.1f}", f"{100 * r['changed_fraction']:.2f}%",
                     "" if loss is None else f"{loss:.4f}"))
    return markdown_table(("--precision", "weights", "update rounding", "tokens/s", "peak GPU memory (GiB)",
                           f"weight elements changed after {steps} steps", "final loss"), rows, right=(3, 4, 5, 6))


def profile_sections(runs, size_label):
    """results.md sections of the runs that carry a step profile."""
    import step_profile

    out = []
    for name, r in runs.items():
        if "profile" in r and "error" not in r["profile"]:
            tokens = f", --batch_tokens {r['batch_tokens']}" if "batch_tokens" in r else ""
            out.append(step_profile.markdown(f"{name} {size_label}".strip() + tokens, r["profile"]))
        elif "profile" in r:
            out.append(f"### Step profile: {name}\n\nnot summarized: {r['profile']['error']}")
    return out


SAMPLING_SMOKE = ("--prompts", "4", "--n_samples", "2", "--max_new_tokens", "16")
SAMPLING_TIMEOUT = 480  # seconds, each backend's evaluate.py process


def sampling_phase(args, paths, work, failed):
    """bench_sampling.py's two evaluate.py runs on the ~1.1B model, both with this python: rows by backend, a table."""
    import subprocess

    import bench_sampling
    import torch

    model_dir, tok, _ = (os.path.abspath(p) for p in paths)  # evaluate.py runs in the repository
    out = os.path.abspath(os.path.join(work, "sampling"))
    bench = bench_sampling.parse_args(["--model_dir", model_dir, "--tokenizer_dir", tok, "--out_dir", out]
                                      + list(SAMPLING_SMOKE if args.smoke else ()))
    os.makedirs(out, exist_ok=True)
    problems = os.path.join(out, "problems.jsonl")
    bench_sampling.write_problems(bench.records, bench.prompts, problems)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # vLLM asks for 90% of the GPU's memory: give back what this process cached
    rows = {}
    for backend in ("transformers", "vllm"):
        if backend == "vllm" and importlib.util.find_spec("vllm") is None:
            rows[backend] = {"skipped": "vLLM not installed"}
            log("   vllm: vLLM not installed in this python; skipped")
            continue
        try:
            rows[backend] = bench_sampling.run_backend(sys.executable, backend, problems, bench,
                                                       timeout=SAMPLING_TIMEOUT)
            log(f"   {bench_sampling.row_line(rows[backend])}")
        except (bench_sampling.BackendFailed, subprocess.TimeoutExpired) as err:
            rows[backend] = {"error": str(err)}
            failed.append(f"sampling:{backend}")
            log(f"   FAILED: {err}")
    what = (f"{bench.prompts} prompts x {bench.n_samples} samples, temperature {bench.temperature}, "
            f"top-p {bench.top_p}, <= {bench.max_new_tokens} new tokens")
    return {"what": what, "rows": rows, "table": sampling_table(rows)}


def sampling_table(rows):
    base = rows["transformers"].get("tokens_per_second")
    cells = []
    for backend, r in rows.items():
        if "tokens_per_second" not in r:
            cells.append((backend, r.get("skipped") or "failed", "", "", "", "", ""))
            continue
        ratio = f"{r['tokens_per_second'] / base:.2f}" if base else ""
        cells.append((backend, f"{r['samples_per_second']:,.2f}", f"{r['tokens_per_second']:,.1f}", ratio,
                      f"{r['samples']}, {r['generated_tokens']}, {r['generation_seconds']}", r["wall_seconds"],
                      f"{r['device']}, {r['dtype']}"))
    return markdown_table(("backend", "samples/s", "tokens/s", "x transformers (tokens/s)",
                           "samples, tokens, generation s", "process s", "device, dtype"), cells, right=(1, 2, 3, 5))


def phase(failed, name, fn, *args):
    """Run one check; an exception is reported and recorded, and the later phases still run."""
    try:
        return fn(*args)
    except Exception as err:  # noqa: BLE001 (one GPU run should say as much as it can)
        import traceback
        log(f"   {name} FAILED: {type(err).__name__}: {err}")
        log("".join(traceback.format_exc().splitlines(keepends=True)[-12:]))
        failed.append(f"{name}: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
        return None


def run_correctness(smoke, paths, device, dtype):
    from reasoning_sft.train import attention

    override = attention.kernel_override(attention.reference_kernel()) if smoke else contextlib.nullcontext()
    with override:
        checks = correctness(*paths, device, dtype)
    log(f"   kernel: {checks['kernel']}")
    log(f"   loss packed varlen {checks['loss_packed_varlen']:.5f} vs padded sdpa {checks['loss_padded_sdpa']:.5f} "
        f"(rel {checks['loss_rel_diff']:.2e}, worst sequence {checks['max_sequence_loss_rel_diff']:.2e}); "
        f"gradient cosine {checks['grad_cosine']:.5f}")
    log(f"   isolation: others moved {checks['isolation_max_abs_change_other_sequences']:.2e}, the changed one "
        f"{checks['changed_sequence_max_abs_change']:.2e}; "
        f"loss head vs full logits rel {checks['head_rel_diff']:.2e}")
    log(f"   ok: {checks['ok']}")
    return checks


if __name__ == "__main__":
    sys.exit(main())
