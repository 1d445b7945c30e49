"""Generate with a fine-tuned model and check every output against the training format.

    python generate.py --tokenizer_dir demo_out/tokenizer --model_name demo_out/tiny-llama \
        --adapter_dir demo_out/lora --prompts examples/sample.jsonl --limit 16 --out demo_out/gen.jsonl

The model is --model_dir (full fine-tuned weights), or --model_name plus --adapter_dir (a
LoRA adapter), or --model_name alone (the base model, with the new tag rows initialised).
--model_name defaults to the base model recorded by prepare_llamatokenizer.py.
Prompts come from --prompts (JSON/JSONL records with an instruction/prompt/problem/question
field) or from one or more --prompt "...". Writes OUT (one JSON object per prompt: id,
instruction, output, ok, errors, reasoning, intention, code, syntax_ok, n_tokens, stop)
and OUT_STEM_summary.json beside it (both replaced atomically), and prints the summary.
--temperature 0 is greedy.
"""

import argparse
import json
import os
import tempfile
import time

from reasoning_sft.artifacts import load_prepared_tokenizer, write_json
from reasoning_sft.errors import UserError, add_verbose_flag, run_cli
from reasoning_sft.generation import evaluate, generate, summarize, summary_lines
from reasoning_sft.records import INSTRUCTION_ALIASES, read_records
from reasoning_sft.template import TEMPLATE_VERSION

DTYPES = ("auto", "float32", "bfloat16", "float16")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokenizer_dir", required=True, help="directory written by prepare_llamatokenizer.py")
    p.add_argument("--model_name", help="base model (hub id or directory); default: the one the tokenizer was prepared from")
    p.add_argument("--adapter_dir", help="LoRA adapter to apply to --model_name")
    p.add_argument("--model_dir", help="full fine-tuned model (instead of --model_name/--adapter_dir)")
    p.add_argument("--prompts", help="JSON/JSONL records with an instruction (or prompt/problem/question) field")
    p.add_argument("--prompt", action="append", help="an instruction to answer (repeatable)")
    p.add_argument("--out", required=True, help="results, one JSON object per line (.jsonl); replaced if it exists")
    p.add_argument("--max_new_tokens", type=int, default=512)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy decoding")
    p.add_argument("--top_p", type=float, default=0.95, help="nucleus sampling (only with --temperature > 0)")
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, help="only the first N prompts of --prompts")
    p.add_argument("--dtype", choices=DTYPES, default="auto", help="auto: bfloat16 on a GPU that supports it, else float32")
    p.add_argument("--flash_attn", action="store_true", help="bf16 on CUDA: flash_attention_2 where flash-attn is installed, else sdpa (README)")
    p.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    add_verbose_flag(p)
    args = p.parse_args(argv)
    for name in ("max_new_tokens", "batch_size"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name} must be at least 1")
    if args.limit is not None and args.limit < 1:
        raise UserError("--limit must be at least 1")
    if args.temperature < 0:
        raise UserError("--temperature must be >= 0 (0 = greedy)")
    if not 0 < args.top_p <= 1:
        raise UserError("--top_p must be in (0, 1]")
    if args.adapter_dir and args.model_dir:
        raise UserError("give --adapter_dir (LoRA on --model_name) or --model_dir (full weights), not both")
    if bool(args.prompts) == bool(args.prompt):
        raise UserError("give --prompts FILE or --prompt TEXT (one of them)")
    for name in ("adapter_dir", "model_dir"):
        path = getattr(args, name)
        if path and not os.path.isdir(path):
            raise UserError(f"--{name} {path}: no such directory")
    if args.adapter_dir and not os.path.exists(os.path.join(args.adapter_dir, "adapter_config.json")):
        raise UserError(f"--adapter_dir {args.adapter_dir}: no adapter_config.json, not a LoRA adapter "
                        "(full fine-tuned weights go in --model_dir)")
    return args


def summary_path(out):
    stem, _ = os.path.splitext(out)
    return stem + "_summary.json"


def load_prompts(args):
    """[(id or None, instruction)] from --prompt or --prompts (first --limit)."""
    if args.prompt:
        items = [(None, text) for text in args.prompt]
    else:
        items = []
        for index, record in enumerate(read_records(args.prompts)):
            key = next((k for k in INSTRUCTION_ALIASES if isinstance(record, dict) and k in record), None)
            if key is None:
                raise UserError(f"{args.prompts}: record {index}: no instruction field "
                                f"(expected one of {'/'.join(INSTRUCTION_ALIASES)})")
            value = record[key]
            if not isinstance(value, str):
                raise UserError(f"{args.prompts}: record {index}: {key} is not a string")
            rid = record.get("id")
            items.append((None if rid is None else str(rid), value.strip()))
        if args.limit:
            items = items[:args.limit]
    for index, (_, text) in enumerate(items):
        if not text.strip():
            raise UserError(f"{args.prompts or '--prompt'}: prompt {index} is empty")
    return items


def pick_device_and_dtype(args):
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.dtype != "auto":
        return device, getattr(torch, args.dtype)
    if device.startswith("cuda") and torch.cuda.is_bf16_supported():
        return device, torch.bfloat16
    return device, torch.float32


def write_jsonl_atomic(path, rows):
    path = os.path.abspath(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.tmp-", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_json_atomic(path, obj):
    path = os.path.abspath(path)
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp-{os.getpid()}")
    try:
        write_json(tmp, obj)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def main(argv=None):
    args = parse_args(argv)
    t0 = time.time()
    if os.path.isdir(args.out):
        raise UserError(f"--out {args.out}: is a directory, expected a .jsonl file path")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tokenizer, tok_meta = load_prepared_tokenizer(args.tokenizer_dir)
    prompts = load_prompts(args)
    model_name = args.model_name or tok_meta.get("base_model")
    if not args.model_dir and not model_name:
        raise UserError("--model_name is required (the tokenizer metadata names no base model)")

    from reasoning_sft.modeling import load_for_inference

    device, dtype = pick_device_and_dtype(args)
    model = load_for_inference(model_name, tokenizer, adapter_dir=args.adapter_dir, model_dir=args.model_dir,
                               dtype=dtype, flash_attn=args.flash_attn)
    if model.get_input_embeddings().weight.shape[0] < len(tokenizer):
        raise UserError(f"the model has {model.get_input_embeddings().weight.shape[0]} token rows but the tokenizer "
                        f"{args.tokenizer_dir} has {len(tokenizer)}; was the model trained with this tokenizer?")
    model.to(device)
    t1 = time.time()
    generations = generate(model, tokenizer, [text for _, text in prompts], max_new_tokens=args.max_new_tokens,
                           temperature=args.temperature, top_p=args.top_p, batch_size=args.batch_size,
                           seed=args.seed)
    gen_seconds = time.time() - t1
    rows, evaluated = [], []
    for (rid, instruction), gen in zip(prompts, generations):
        result = evaluate(gen)
        evaluated.append(result)
        row = {"id": rid} if rid is not None else {}
        row["instruction"] = instruction
        row.update({k: result[k] for k in ("output", "ok", "errors", "reasoning", "intention", "code",
                                           "syntax_ok", "n_tokens", "stop")})
        rows.append(row)
    summary = summarize(evaluated)
    generated = sum(r["n_tokens"] for r in evaluated)
    summary["settings"] = {
        "model_name": None if args.model_dir else model_name, "adapter_dir": args.adapter_dir,
        "model_dir": args.model_dir, "tokenizer_dir": args.tokenizer_dir,
        "tokenizer_fingerprint": tok_meta.get("fingerprint"), "template_version": TEMPLATE_VERSION,
        "prompts": args.prompts or "--prompt", "limit": args.limit, "max_new_tokens": args.max_new_tokens,
        "temperature": args.temperature, "top_p": args.top_p if args.temperature > 0 else None,
        "batch_size": args.batch_size, "seed": args.seed, "device": str(device), "dtype": str(dtype).replace("torch.", ""),
    }
    summary["generated_tokens"] = generated
    summary["generation_seconds"] = round(gen_seconds, 2)
    summary["tokens_per_second"] = round(generated / gen_seconds, 1) if gen_seconds > 0 else None
    summary["seconds"] = round(time.time() - t0, 2)
    write_jsonl_atomic(args.out, rows)
    write_json_atomic(summary_path(args.out), summary)
    for line in summary_lines(summary):
        print(line)
    print(f"-> {args.out}, {summary_path(args.out)} [{summary['seconds']}s, {summary['tokens_per_second']} tokens/s]")
    return 0


if __name__ == "__main__":
    run_cli(main)
