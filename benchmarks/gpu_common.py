"""What the GPU check's phases share (gpu_check.py, gpu_scale.py, plan_check.py): model sizes, the data and
model builders, the trainer runs and the worker process that runs each one."""

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass

from reasoning_sft.demo.pipeline import REPO, data_stages

HERE = os.path.dirname(os.path.abspath(__file__))


@dataclass(frozen=True)
class Size:
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    tokenizer_vocab: int  # asked of the BPE trainer (the 300-record sample runs out of merges near 9.3k)
    max_len: int
    batch_tokens: int
    records: int          # first N records of the sample (0: all)


GPU = Size(22, 2048, 32, 4, 5632, 32016, 32000, 2048, 16384, 0)


SMOKE = Size(2, 64, 4, 2, 192, 1040, 1024, 512, 2048, 60)


def log(msg):
    print(msg, flush=True)


def build_data(size, work):
    """Tokenizer trained on the sample, stages 1-3 at --max_len; returns (model dir, tokenizer dir, train dir)."""
    from reasoning_sft.data.records import read_records
    from reasoning_sft.demo.tiny_llama import build_tokenizer, corpus_texts

    sample = os.path.join(REPO, "examples", "sample.jsonl")
    records = read_records(sample)
    if size.records:
        records = records[:size.records]
        sample = os.path.join(work, "records.json")
        with open(sample, "w", encoding="utf-8") as f:
            json.dump(records, f)
    base = os.path.join(work, "base")
    os.makedirs(base)
    build_tokenizer(list(corpus_texts(records)), base, size.tokenizer_vocab)
    paths = data_stages(base, sample, work, size.max_len)
    return base, paths["tokenizer"], paths["train_dir"]


def llama_config(size):
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=size.vocab, hidden_size=size.hidden, intermediate_size=size.intermediate,
                       num_hidden_layers=size.layers, num_attention_heads=size.heads,
                       num_key_value_heads=size.kv_heads, max_position_embeddings=2 * size.max_len,
                       rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)


def build_model(size, model_dir, device, dtype):
    """Random weights from the config, initialized on the device (a 1.1B init on CPU takes a while)."""
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # built in bf16 at once: a 13B model in fp32 first would need 52 GB of GPU memory
    try:
        with torch.device(device):
            model = LlamaForCausalLM(llama_config(size))
    finally:
        torch.set_default_dtype(default_dtype)
    model.save_pretrained(model_dir)
    n_total = sum(p.numel() for p in model.parameters())
    n_matmul = n_total - model.get_input_embeddings().weight.numel()
    del model
    return n_total, n_matmul


@dataclass
class Run:
    name: str
    label: str
    kind: str        # train_full, train_peft, hf_trainer
    argv: list
    lora: bool = False
    worker_flags: tuple = ()  # e.g. ("--profile_step", "5"), ("--time_checkpoints",)


def trainer_argv(size, paths, steps, log_every):
    """The trainers' arguments every 1.1B run shares."""
    model_dir, tok, train = paths
    return ["--model_name", model_dir, "--tokenizer_dir", tok, "--train_dir", train, "--batch_tokens",
            str(size.batch_tokens), "--max_steps", str(steps), "--epochs", "100", "--log_every", str(log_every),
            "--warmup_ratio", "0", "--overwrite", "--no_plan_check"]  # measured, not refused; the plan is logged


def optimizer_flags(adam8bit):
    """(the full fine-tuning runs' optimizer flags, their label)."""
    return (["--adam8bit"], "8-bit AdamW") if adam8bit else ([], "AdamW (bitsandbytes missing)")


def run_worker(run, work, smoke, timeout):
    """One speed run in a fresh process (clean peak-memory counters); returns its result dict."""
    out_dir = os.path.join(work, run.name)
    result_path = os.path.join(work, f"{run.name}.json")
    argv = run.argv + ["--output_dir", out_dir]
    cmd = [sys.executable, os.path.join(HERE, "gpu_check.py"), "--worker", run.kind, "--worker_result", result_path]
    cmd += (["--reference_kernel"] if smoke else []) + list(run.worker_flags) + ["--"] + argv
    paths = [REPO] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONPATH=os.pathsep.join(paths))
    if not smoke:
        env["ACCELERATE_MIXED_PRECISION"] = "bf16"  # as configs/single_gpu.yaml
    t0 = time.time()
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        tail = "\n".join(((err.stdout or b"").decode(errors="replace")).strip().splitlines()[-15:])
        log(f"  FAILED: still running after {timeout} s (--run_timeout):\n{tail}")
        return {"error": f"timeout after {timeout} s", "log_tail": tail}
    log_path = os.path.join(work, f"{run.name}.log")
    with open(log_path, "w", encoding="utf-8") as f:
        f.write(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    for line in proc.stdout.splitlines():
        if line.startswith(("attention:", "precision:", "optimizer state:", "[full]", "[lora]", "trainer:", "plan:",
                            "memory after step 2:")):
            log(f"  {line}")
    if proc.returncode != 0 or not os.path.exists(result_path):
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        oom = "out of memory" in (proc.stdout + proc.stderr).lower()
        log(f"  {'out of GPU memory' if oom else 'FAILED'} (exit {proc.returncode}):\n{tail if not oom else ''}")
        return {"error": "out of memory" if oom else f"exit {proc.returncode}", "oom": oom, "log_tail": tail}
    with open(result_path, encoding="utf-8") as f:
        result = json.load(f)
    if run.kind != "hf_trainer":
        result.update(trainer_throughput(os.path.join(out_dir, "metrics.jsonl"), warmup_steps=int(
            run.argv[run.argv.index("--log_every") + 1])))
        with open(os.path.join(out_dir, "train_config.json"), encoding="utf-8") as f:
            result["precision"] = json.load(f)["precision"]  # the policy --precision resolved to, as the run logged it
    result["process_s"] = round(time.time() - t0, 1)
    return result


def trainer_throughput(metrics_path, warmup_steps):
    """Mean tokens/s of the trainer's logged windows after the warm-up steps (its own metrics.jsonl)."""
    with open(metrics_path, encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    windows = [r for r in records if "tokens_per_s" in r and r["step"] > warmup_steps]
    if not windows:
        raise SystemExit(f"gpu_check: {metrics_path} has no tokens_per_s after step {warmup_steps}")
    return {"tokens_per_s": sum(r["tokens_per_s"] for r in windows) / len(windows),
            "windows": [[r["step"], round(r["tokens_per_s"], 1)] for r in windows],
            "batch_efficiency": sum(r.get("batch_efficiency", 1.0) for r in windows) / len(windows),
            "final_loss": records[-1].get("loss")}


def attention_flops_per_token(size, lengths):
    """Causal attention, forward + backward: 3 x (2 matmuls x 2 FLOPs x hidden x s(s+1)/2) per layer, per token."""
    total = sum(n * (n + 1) for n in lengths)
    return 6 * size.layers * size.hidden * total / sum(lengths)
