"""The GPU check's scale and FSDP phases (gpu_check.py --only scale / --only fsdp).

Scale: random-weight models with CodeLlama's shapes, built on the GPU in bf16 and saved with
safetensors (nothing downloaded), trained through the trainers' own command lines, one fresh process
per run as the speed phase does:

- 7B (32 layers, hidden 4096, 32 heads / 32 KV heads, intermediate 11008, vocabulary 32016): full
  fine-tuning, 8-bit AdamW, packed, --flash_attn, the trainer's default precision; without and (time
  allowing) with --gradient_checkpointing. The first run also times its checkpoint (write, seal) and
  the verification --resume would do, and profiles one step;
- 13B (40 layers, hidden 5120, 40 heads / 40 KV heads, intermediate 13824): LoRA r=16 on every
  decoder linear layer, packed; QLoRA (--load_in_4bit) time allowing (CUDA only).

Each run takes the largest --batch_tokens of a short descending list that fits: a size that runs out
of GPU memory is tried again one step down, in a fresh process. The phase keeps to --scale_budget
seconds: an optional run starts only if a run like it would still end inside the budget. Models and
run outputs are deleted as soon as they are measured (a 7B run needs about 54 GB of disk: model,
checkpoint and final weights).

FSDP: training/train_full.py under configs/fsdp_full_shard.yaml (FSDP2) with one process per visible GPU (at
most 8), on the 1.1B model, --grad_accum 2 (each micro-batch reduce-scatters into the sharded gradients; no
no_sync under FSDP): checkpoints every 2 steps, SIGKILL after the first, --resume to the end, the final save
loaded with from_pretrained. From the first run's log: the plan's predicted peak (its preflight plans
--grad_accum 2 under FSDP) beside torch.cuda.max_memory_allocated after step 2, and the preemption advice
(checkpoint size, seconds, whether a SIGTERM checkpoint fits 30 s). On one GPU the shards are the whole
model (world 1): the FSDP2 path, its accumulation and its sharded checkpoints run, the memory saving does not
show; on N GPUs the measured peak shows it. --smoke runs the same sequence under configs/cpu.yaml (accelerate
runs FSDP only on GPUs), with --gpu_memory_gib so that the plan runs there too.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, replace

from gpu_common import GPU, REPO, SMOKE, Run, attention_flops_per_token, build_model, log, optimizer_flags, run_worker
from tables import markdown_table

CODELLAMA_7B = replace(GPU, layers=32, hidden=4096, heads=32, kv_heads=32, intermediate=11008)
CODELLAMA_13B = replace(GPU, layers=40, hidden=5120, heads=40, kv_heads=40, intermediate=13824)
SMOKE_7B = replace(SMOKE, heads=4, kv_heads=4)  # multi-head like CodeLlama: KV heads = heads
SMOKE_13B = replace(SMOKE, layers=3, hidden=80, heads=4, kv_heads=4, intermediate=224)


@dataclass
class ScaleRun:
    name: str
    label: str
    model: str            # "7b" or "13b"
    kind: str             # train_full or train_peft
    flags: list
    candidates: list      # --batch_tokens to try, largest first
    lora: bool = False
    optional: bool = False  # run only when the budget allows
    measure_checkpoint: bool = False
    profile: bool = False


def scale_runs(smoke, adam8bit):
    """The runs of the phase, in order (7B first: its model dir is deleted before the 13B one is built)."""
    optim, opt_label = optimizer_flags(adam8bit)
    full = optim + ["--packing", "on", "--flash_attn"]  # --smoke: the worker's reference varlen kernel, on CPU
    lora = ["--packing", "on", "--flash_attn", "--lora_r", "16", "--lora_alpha", "32"]
    sizes = (lambda *gpu: [1024] if smoke else list(gpu))
    runs = [
        ScaleRun("7b_full", f"7B full FT, {opt_label}, packed, --flash_attn", "7b", "train_full", full,
                 sizes(16384, 8192, 4096), measure_checkpoint=True, profile=True),
        ScaleRun("7b_full_gc", f"7B full FT, {opt_label}, packed, --flash_attn, --gradient_checkpointing", "7b",
                 "train_full", full + ["--gradient_checkpointing"], sizes(65536, 32768, 16384), optional=True),
        ScaleRun("13b_lora", "13B LoRA r=16 (all decoder linear layers), packed, --flash_attn", "13b", "train_peft",
                 lora, sizes(16384, 8192, 4096), lora=True),
    ]
    if not smoke:  # bitsandbytes' 4-bit layers need CUDA
        runs.append(ScaleRun("13b_qlora", "13B QLoRA (--load_in_4bit) r=16, packed, --flash_attn", "13b",
                             "train_peft", lora + ["--load_in_4bit"], sizes(16384, 8192, 4096), lora=True,
                             optional=True))
    return runs


def largest_fitting(run, common, work, args, smoke):
    """Try run.candidates largest first, each in a fresh process; the first that does not run out of memory."""
    for tokens in run.candidates:
        flags = ["--profile_step", str(args.scale_warmup)] if run.profile else []
        flags += ["--time_checkpoints"] if run.measure_checkpoint else []
        attempt = Run(run.name, run.label, run.kind, common + run.flags + ["--batch_tokens", str(tokens)],
                      lora=run.lora, worker_flags=tuple(flags))
        log(f"   {run.name}: --batch_tokens {tokens}")
        result = run_worker(attempt, work, smoke, args.run_timeout_scale)
        result.update(label=run.label, lora=run.lora, batch_tokens=tokens)
        if not result.get("oom"):
            return result
    return dict(result, error=f"out of memory at every --batch_tokens tried ({run.candidates})")


def measure_checkpoint(result, out_dir):
    """The checkpoint the run wrote at its end: size, write and seal time (from the run), verify time (here)."""
    from reasoning_sft.train.checkpoints import list_checkpoints, verify

    newest = list_checkpoints(out_dir)[-1]
    n_bytes = sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(newest) for f in files)
    times = result["checkpoint_s"]
    t0 = time.perf_counter()
    problem = verify(newest)
    verify_s = time.perf_counter() - t0
    write_s, seal_s = times["save"][-1], times["seal"][-1]
    save_s = write_s + seal_s
    return {"gib": n_bytes / 2**30, "save_s": save_s, "seal_s": seal_s, "write_s": write_s, "verify_s": verify_s,
            "verified": problem is None, "seal_plus_verify_over_write": (seal_s + verify_s) / max(write_s, 1e-9),
            "note": "verify timed in the check's process right after the save (page cache warm)"}


def scale_phase(args, paths, work, smoke, adam8bit, rate, lengths, results, save):
    """Build each model, run its runs, report; results['scale'] is filled as it goes (save() after each)."""
    import torch

    device, dtype = ("cpu", torch.float32) if smoke else ("cuda", torch.bfloat16)
    sizes = {"7b": SMOKE_7B if smoke else CODELLAMA_7B, "13b": SMOKE_13B if smoke else CODELLAMA_13B}
    _, tok, train = paths
    steps, warmup = args.scale_steps, args.scale_warmup
    common = ["--tokenizer_dir", tok, "--train_dir", train, "--max_steps", str(steps), "--epochs", "100",
              "--log_every", str(warmup), "--warmup_ratio", "0", "--overwrite", "--keep_checkpoints", "1",
              "--no_plan_check"]  # an out-of-memory exit is what the retry measures; the plan is logged beside it
    scale = results["scale"] = {"budget_s": args.scale_budget, "runs": {}, "models": {}}
    t_start, durations, built = time.time(), {}, {}
    for run in scale_runs(smoke, adam8bit):
        if run.optional:
            like = durations.get(run.model, 0.0)
            if time.time() - t_start + like > args.scale_budget:
                log(f"   {run.name}: skipped (a run like it took {like:.0f} s; the budget is {args.scale_budget} s)")
                scale["runs"][run.name] = {"label": run.label, "skipped": "time budget"}
                continue
        model_dir = built.get(run.model) or build_scale_model(run.model, sizes, work, device, dtype, built, scale)
        t0 = time.time()
        result = largest_fitting(run, common + ["--model_name", model_dir], work, args, smoke)
        out_dir = os.path.join(work, run.name)
        if run.measure_checkpoint and "error" not in result:
            result["checkpoint"] = measure_checkpoint(result, out_dir)
        shutil.rmtree(out_dir, ignore_errors=True)
        durations.setdefault(run.model, time.time() - t0)
        scale["runs"][run.name] = result
        save()
    for model in list(built):
        shutil.rmtree(built.pop(model), ignore_errors=True)
    scale["seconds"] = round(time.time() - t_start, 1)
    scale["table"] = scale_table(scale, sizes, lengths, rate)
    return scale


def build_scale_model(model, sizes, work, device, dtype, built, scale):
    """The model's random-weight directory; the other model's directory is deleted first (disk)."""
    for other in list(built):
        shutil.rmtree(built.pop(other), ignore_errors=True)
    model_dir = os.path.join(work, f"model_{model}")
    t0 = time.time()
    n_total, n_matmul = build_model(sizes[model], model_dir, device, dtype)
    scale["models"][model] = {"parameters": n_total, "parameters_without_input_embedding": n_matmul,
                              "build_and_save_s": round(time.time() - t0, 1), "size": sizes[model].__dict__}
    log(f"   {model}: {n_total / 1e9:.2f}B parameters, built and saved in {time.time() - t0:.0f} s")
    built[model] = model_dir
    return model_dir


def scale_table(scale, sizes, lengths, rate):
    """The report's table (MFU as the speed phase counts it), with --batch_tokens and the checkpoint times."""
    rows = []
    for name, r in scale["runs"].items():
        model = name.split("_")[0]
        if "tokens_per_s" not in r:
            rows.append((name, r.get("label", ""), "", r.get("skipped") or r.get("error", "failed"), "", ""))
            continue
        n_matmul = scale["models"][model]["parameters_without_input_embedding"]
        per_token = (4 if r.get("lora") else 6) * n_matmul + attention_flops_per_token(sizes[model], lengths)
        r["mfu"] = per_token * r["tokens_per_s"] / rate["flops_per_s"]
        mem = r.get("peak_gpu_memory_gib")
        rows.append((name, r["label"], r["batch_tokens"], f"{r['tokens_per_s']:,.0f}", f"{100 * r['mfu']:.1f}%",
                     "" if mem is None else f"{mem:.1f}"))
    lines = [markdown_table(("run", "what", "--batch_tokens", "tokens/s", "MFU", "peak GPU memory (GiB)"), rows,
                            right=(2, 3, 4, 5))]
    for name, r in scale["runs"].items():
        c = r.get("checkpoint")
        if c:
            lines.append(f"\n{name} checkpoint: {c['gib']:.2f} GiB; write {c['write_s']:.1f} s, seal "
                         f"{c['seal_s']:.1f} s, verify {c['verify_s']:.1f} s ({c['note']}); seal + verify = "
                         f"{100 * c['seal_plus_verify_over_write']:.0f}% of the write (goal <= 10%)")
    return "\n".join(lines)


# ---------------------------------------------------------------- FSDP: kill, --resume, from_pretrained

def fsdp_phase(args, paths, work, smoke):
    """train_full.py under the FSDP config (configs/cpu.yaml in --smoke), one process: checkpoint, SIGKILL,
    --resume, the final save through from_pretrained. Returns what happened; 'ok' says whether all held."""
    model_dir, tok, train = paths
    out = os.path.join(work, "fsdp")
    import torch

    config = "configs/cpu.yaml" if smoke else "configs/fsdp_full_shard.yaml"
    processes = 1 if smoke else max(1, min(torch.cuda.device_count(), 8))
    argv = ["--model_name", model_dir, "--tokenizer_dir", tok, "--train_dir", train, "--output_dir", out,
            "--batch_tokens", str(SMOKE.batch_tokens if smoke else 8192), "--grad_accum", "2", "--max_steps", "8",
            "--save_every", "2", "--keep_checkpoints", "2", "--log_every", "1", "--epochs", "100",
            "--warmup_ratio", "0"] + (["--gpu_memory_gib", "80"] if smoke else ["--flash_attn"])
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", config, "--num_processes",
           str(processes), os.path.join(REPO, "training", "train_full.py")]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               PYTHONPATH=os.pathsep.join([REPO] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                                                    if p]))
    result = {"config": config, "processes": processes, "grad_accum": 2}
    t0 = time.time()
    first_log = os.path.join(work, "fsdp_first_run.log")
    killed_at = run_until_first_checkpoint(cmd + argv + ["--overwrite"], env, out, args.run_timeout, log_path=first_log)
    result.update(killed_after=killed_at, first_run_s=round(time.time() - t0, 1))
    result.update(first_run_lines(first_log))
    t0 = time.time()
    proc = subprocess.run(cmd + argv + ["--resume"], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=args.run_timeout)
    resumed = [line for line in proc.stdout.splitlines() if line.startswith("resumed from")]
    result.update(resume_exit=proc.returncode, resume_s=round(time.time() - t0, 1),
                  resumed_line=resumed[0] if resumed else None)
    if proc.returncode != 0:
        result["log_tail"] = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
    result.update(final_model_check(out) if proc.returncode == 0 else {})
    result["ok"] = bool(killed_at and proc.returncode == 0 and result["resumed_line"] and result.get("loads"))
    shutil.rmtree(out, ignore_errors=True)
    return result


def first_run_lines(path):
    """What the FSDP phase reports from the first run's log: the plan's line, the planned vs measured peak after
    step 2 (CUDA), and the preemption advice lines."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = [line.strip() for line in f]
    except OSError:
        return {}
    pick = lambda prefix: [line for line in lines if line.startswith(prefix)]  # noqa: E731
    found = {"plan_line": pick("plan: ")[:1], "memory_line": pick("memory after step 2")[:1]}
    found = {k: v[0] for k, v in found.items() if v}
    return dict(found, checkpoint_advice=pick("checkpoints: "))


def run_until_first_checkpoint(cmd, env, out, timeout, log_path=None):
    """Start the run, SIGKILL its process group once a checkpoint is complete; the name of the newest complete
    checkpoint after the kill (the one --resume takes: a fast run may finish another before the kill lands), or None.
    log_path: the run's stdout and stderr go there (else nowhere)."""
    from reasoning_sft.train.checkpoints import list_checkpoints

    sink = open(log_path, "w") if log_path else subprocess.DEVNULL  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=sink, stderr=subprocess.STDOUT if log_path else sink,
                            start_new_session=True)  # its own group: accelerate's launcher and the trainer die together
    deadline = time.time() + timeout
    try:
        while time.time() < deadline and proc.poll() is None:
            if list_checkpoints(out):
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return os.path.basename(list_checkpoints(out)[-1])
            time.sleep(0.2)
        return None  # it ended (or timed out) before any checkpoint was seen
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if log_path:
            sink.close()


def final_model_check(out):
    """The final save loads with from_pretrained, on the CPU; its weights are finite."""
    import torch
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.bfloat16)
    except Exception as err:  # noqa: BLE001 (reported, not raised: the phase says what failed)
        return {"loads": False, "load_error": f"{type(err).__name__}: {err}"[:300]}
    finite = all(torch.isfinite(p).all().item() for p in model.parameters())
    return {"loads": finite, "parameters": sum(p.numel() for p in model.parameters()), "finite": finite}
