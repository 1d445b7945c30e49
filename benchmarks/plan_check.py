"""How close --plan comes: against the GPU check's measured H100 peaks, and against a real CPU step.

    python benchmarks/plan_check.py --work_dir /tmp/plan_check

1. The ~1.1B runs whose peak GPU memory BENCHMARKS.md records ("GPU check": one H100, torch 2.11,
   torch's varlen_attn repeating KV heads, bf16 autocast as configs/single_gpu.yaml, 8-bit AdamW on bf16
   weights, i.e. today's --precision bf16-nearest, --batch_tokens 16384): the same model shape (TinyLlama's:
   22 layers, hidden 2048, 32/4 heads, intermediate 5632, vocabulary 32016; config only), the sample through
   stages 1-3 at --max_len 2048 (gpu_common.build_data; today's tiny-tokenizer builder is SentencePiece and
   stops near 10k pieces where the check's BPE one stopped near 9.3k, so the lengths differ a little), and
   the runs' flags, planned with the trainers' own --plan code.
2. On CPU: a small Llama (4 layers, hidden 256) with random weights, the plan on fake tensors against the
   same model's two real steps measured under MemTracker (full fine-tuning with bitsandbytes' 8-bit AdamW,
   LoRA r=8).

Prints both tables (markdown) and writes WORK_DIR/results.json.
"""

import argparse
import dataclasses
import json
import os
import sys
import time

import gpu_common
from tables import markdown_table

from reasoning_sft.demo.pipeline import REPO, load_script

# (name, script, flags, measured peak GiB on the H100, where BENCHMARKS.md has it)
GPU_RUNS = [
    ("full FT, 8-bit AdamW, packed, --flash_attn", "train_full", ["--adam8bit", "--packing", "on"], 37.9),
    ("full FT, 8-bit AdamW, padded (--packing off), --flash_attn", "train_full", ["--adam8bit", "--packing", "off"],
     38.8),
    ("LoRA r=16, packed, --flash_attn, --lora_dropout 0.05", "train_peft",
     ["--packing", "on", "--lora_r", "16", "--lora_alpha", "32", "--lora_dropout", "0.05"], 44.8),
    ("LoRA r=16, packed, --flash_attn, --lora_dropout 0", "train_peft",
     ["--packing", "on", "--lora_r", "16", "--lora_alpha", "32", "--lora_dropout", "0"], 38.8),
]


def mode_of(module):
    return module.FULL if hasattr(module, "FULL") else module.LORA


def gpu_rows(work):
    from reasoning_sft.train import planning

    data_dir = os.path.join(work, "data")
    if not os.path.isdir(os.path.join(data_dir, "encoded")):
        os.makedirs(data_dir, exist_ok=True)
        gpu_common.build_data(dataclasses.replace(gpu_common.GPU, tokenizer_vocab=10000), data_dir)
    model_dir = os.path.join(work, "model-1.1b")
    gpu_common.llama_config(gpu_common.GPU).save_pretrained(model_dir)  # config.json only: nothing else is read
    launch = planning.launch_from_config(os.path.join(REPO, "configs", "single_gpu.yaml"))
    rows = []
    for name, script, flags, measured in GPU_RUNS:
        module = load_script(f"training/{script}.py")
        argv = ["--model_name", model_dir, "--tokenizer_dir", os.path.join(data_dir, "tokenizer"),
                "--train_dir", os.path.join(data_dir, "encoded", "arrow_dataset"),
                "--output_dir", os.path.join(work, "unused"), "--batch_tokens", "16384", "--flash_attn",
                "--precision", "bf16-nearest", "--plan", "--plan_kernel", "torch-varlen-repeat-kv",
                "--gpu_memory_gib", "79.2"] + flags
        plan = planning.make_plan(module.parse_args(argv), mode_of(module), launch, "torch-varlen-repeat-kv")
        peak = plan.per_device["peak"]
        rows.append({"run": name, "measured_gib": measured, "planned_gib": round(peak, 2),
                     "error": round((peak - measured) / measured, 4), "plan_s": round(plan.seconds, 1),
                     "categories": {k: round(v, 3) for k, v in plan.per_device.items()},
                     "micro_batch_slots": plan.setup["micro_batch_slots"]})
        print(f"  {name}: planned {peak:.2f} GiB, measured {measured} GiB ({rows[-1]['error']:+.1%}), "
              f"{plan.seconds:.0f} s", flush=True)
    return rows


def cpu_rows(work, tokenizer_dir, train_dir):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from reasoning_sft.train import planning

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=1100, hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                         num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=512,
                         tie_word_embeddings=False)
    model_dir = os.path.join(work, "small")
    LlamaForCausalLM(config).save_pretrained(model_dir)
    launch = planning.Launch(1, False, "no", "one CPU process")
    rows = []
    for name, script, flags in (("full FT, 8-bit AdamW, bf16-nearest", "train_full",
                                 ["--adam8bit", "--precision", "bf16-nearest"]),
                                ("full FT, AdamW, fp32", "train_full", []),
                                ("LoRA r=8", "train_peft", ["--lora_r", "8"])):
        module = load_script(f"training/{script}.py")
        args = module.parse_args(["--model_name", model_dir, "--tokenizer_dir", tokenizer_dir, "--train_dir", train_dir,
                                  "--output_dir", os.path.join(work, "unused"), "--batch_tokens", "2048"] + flags)
        planned, _ = planning.measure_step(args, mode_of(module), launch, None, fake=True)
        real, _ = planning.measure_step(args, mode_of(module), launch, None, fake=False)
        rows.append({"run": name, "planned_mib": round(planned["peak"] * 1024, 2),
                     "measured_mib": round(real["peak"] * 1024, 2),
                     "error": round((planned["peak"] - real["peak"]) / real["peak"], 4)})
        print(f"  CPU {name}: planned {rows[-1]['planned_mib']} MiB, real {rows[-1]['measured_mib']} MiB "
              f"({rows[-1]['error']:+.2%})", flush=True)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work_dir", required=True)
    p.add_argument("--only", choices=["gpu", "cpu"], help="one of the two comparisons")
    a = p.parse_args(argv)
    os.makedirs(a.work_dir, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    t0 = time.time()
    results = {}
    if a.only in (None, "gpu"):
        results["gpu"] = gpu_rows(a.work_dir)
    if a.only in (None, "cpu"):
        data = os.path.join(a.work_dir, "data")
        if not os.path.isdir(os.path.join(data, "encoded")):
            results.setdefault("gpu", gpu_rows(a.work_dir))
        results["cpu"] = cpu_rows(a.work_dir, os.path.join(data, "tokenizer"),
                                  os.path.join(data, "encoded", "arrow_dataset"))
    results["seconds"] = round(time.time() - t0, 1)
    with open(os.path.join(a.work_dir, "results.json"), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)
    if "gpu" in results:
        rows = [(r["run"], r["measured_gib"], f"{r['planned_gib']:.2f}", f"{r['error']:+.1%}") for r in results["gpu"]]
        print("\n" + markdown_table(("run (~1.1B, H100, --batch_tokens 16384)", "measured peak GiB", "planned GiB",
                                     "error"), rows, right=(1, 2, 3)))
    if "cpu" in results:
        rows = [(r["run"], r["measured_mib"], r["planned_mib"], f"{r['error']:+.2%}") for r in results["cpu"]]
        print("\n" + markdown_table(("run (small Llama, CPU, --batch_tokens 2048)", "real step MiB", "planned MiB",
                                     "error"), rows, right=(1, 2, 3)))
    print(f"\n{results['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
