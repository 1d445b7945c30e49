"""README's GPU table from --plan: CodeLlama 7B full fine-tuning, 13B LoRA, 13B full fine-tuning under FSDP on 8
GPUs; Qwen2.5-Coder-7B full fine-tuning, Qwen2.5-Coder-32B LoRA, Llama-3.1-8B full fine-tuning.

    python benchmarks/plan_table.py --tokenizer_dir TOK --train_dir ENCODED/arrow_dataset [--out plan_table.json]
        [--only 3 4 5]

Each setup is planned (the trainers' own --plan code, fake tensors, configs/models/*/config.json)
under a list of flag sets, from the fastest to the most frugal; each card gets the first set whose
plan fits it (planning.FIT_FRACTION of the card). A set is planned only when some card still needs it.
The data only decides the micro-batch: with --batch_tokens B, packed rows fill B token slots. The tokenizer
only decides the rows the tags add: none where they land in spare rows (Qwen's 152,064 rows hold any
tokenizer here), 7 for Llama-3.1's exact 128,256 (with the demo's tokenizer: none, 7 x 4096 weights less).
"""

import argparse
import json
import os
import sys
import time

from reasoning_sft.demo.pipeline import REPO, load_script

CARDS = (24, 40, 48, 80, 141)
CANDIDATES = (  # (flags, in words), fastest first
    ([], "--batch_tokens 16384"),
    (["--batch_tokens", "8192"], "--batch_tokens 8192"),
    (["--gradient_checkpointing"], "--gradient_checkpointing, --batch_tokens 16384"),
    (["--batch_tokens", "4096"], "--batch_tokens 4096"),
    (["--gradient_checkpointing", "--batch_tokens", "4096"], "--gradient_checkpointing, --batch_tokens 4096"),
    (["--gradient_checkpointing", "--batch_tokens", "1024"], "--gradient_checkpointing, --batch_tokens 1024"),
)
SETUPS = (  # (name, script, model, accelerate config, flags)
    ("7B full FT (8-bit AdamW, --flash_attn, bf16 weights)", "train_full", "CodeLlama-7b-Python-hf",
     "single_gpu.yaml", ["--adam8bit", "--flash_attn"]),
    ("13B LoRA r=16 (--flash_attn, bf16 base)", "train_peft", "CodeLlama-13b-Python-hf", "single_gpu.yaml",
     ["--flash_attn", "--lora_r", "16"]),
    ("13B full FT, FSDP over 8 GPUs (AdamW, fp32 sharded weights, --flash_attn)", "train_full",
     "CodeLlama-13b-Python-hf", "fsdp_full_shard.yaml", ["--flash_attn"]),
    ("Qwen2.5-Coder-7B full FT (8-bit AdamW, --flash_attn, bf16 weights)", "train_full", "Qwen2.5-Coder-7B",
     "single_gpu.yaml", ["--adam8bit", "--flash_attn"]),
    ("Qwen2.5-Coder-32B LoRA r=16 (--flash_attn, bf16 base)", "train_peft", "Qwen2.5-Coder-32B", "single_gpu.yaml",
     ["--flash_attn", "--lora_r", "16"]),
    ("Llama-3.1-8B full FT (8-bit AdamW, --flash_attn, bf16 weights)", "train_full", "Llama-3.1-8B",
     "single_gpu.yaml", ["--adam8bit", "--flash_attn"]),
)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokenizer_dir", required=True)
    p.add_argument("--train_dir", required=True)
    p.add_argument("--out", default="plan_table.json")
    p.add_argument("--only", type=int, nargs="+", help="the setups of these indexes only (0-5, in SETUPS' order)")
    a = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from reasoning_sft.train import planning

    results = []
    for index, (name, script, model, config, flags) in enumerate(SETUPS):
        if a.only is not None and index not in a.only:
            continue
        module = load_script(f"training/{script}.py")
        mode = module.FULL if script == "train_full" else module.LORA
        launch = planning.launch_from_config(os.path.join(REPO, "configs", config))
        planned, chosen = {}, {}
        for card in CARDS:
            for extra, words in CANDIDATES:
                if words not in planned:
                    argv = ["--model_name", os.path.join(REPO, "configs", "models", model), "--tokenizer_dir",
                            a.tokenizer_dir, "--train_dir", a.train_dir, "--output_dir", "/nonexistent/plan",
                            "--batch_tokens", "16384", "--plan"] + flags + extra
                    t0 = time.time()
                    plan = planning.make_plan(module.parse_args(argv), mode, launch)
                    planned[words] = {"peak_gib": round(plan.per_device["peak"], 2),
                                      "categories": {k: round(v, 2) for k, v in plan.per_device.items()},
                                      "seconds": round(time.time() - t0, 1)}
                    print(f"{name}: {words}: peak {plan.per_device['peak']:.1f} GiB per device "
                          f"({time.time() - t0:.0f} s)", flush=True)
                if planned[words]["peak_gib"] <= card * planning.FIT_FRACTION:
                    chosen[card] = f"{words} ({planned[words]['peak_gib']:.1f} GiB)"
                    break
            else:
                chosen[card] = "does not fit"
        results.append({"setup": name, "accelerate_config": config, "flags": flags, "plans": planned,
                        "cards": chosen})
        print(f"| {name} | " + " | ".join(chosen[c] for c in CARDS) + " |", flush=True)
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
