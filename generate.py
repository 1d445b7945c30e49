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

--backend vllm samples the same prompts with vLLM (--model_dir only; `make serve-env`, then
.venv-serve/bin/python generate.py --backend vllm ...): same stops, same rows, same summary.

--backend openai sends each instruction, as the one user message, to an OpenAI-compatible server
(--base_url, e.g. `vllm serve` or llama-server on export.py's serving dir; --model, --api_key), and
checks the text the model wrote the same way (no --tokenizer_dir: the server's chat template builds
the prompt). docs/evaluation.md says what is the same and what is not.
"""

import argparse
import os
import time

from reasoning_sft.artifacts import load_prepared_tokenizer, write_json_atomic, write_jsonl_atomic
from reasoning_sft.data.records import INSTRUCTION_ALIASES, read_records
from reasoning_sft.errors import UserError, add_verbose_flag, run_cli
from reasoning_sft.serve.generation import (
    add_model_args,
    add_sampling_args,
    check_model_and_sampling_args,
    evaluate,
    generate_with_args,
    load_model_for_generation,
    summarize,
    summary_lines,
    summary_path,
)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(p, tokenizer_required=False)  # checked by check_model_and_sampling_args
    p.add_argument("--prompts", help="JSON/JSONL records with an instruction (or prompt/problem/question) field")
    p.add_argument("--prompt", action="append", help="an instruction to answer (repeatable)")
    p.add_argument("--out", required=True, help="results, one JSON object per line (.jsonl); replaced if it exists")
    add_sampling_args(p)
    p.add_argument("--limit", type=int, help="only the first N prompts of --prompts")
    add_verbose_flag(p)
    args = p.parse_args(argv)
    check_model_and_sampling_args(args)
    if args.limit is not None and args.limit < 1:
        raise UserError("--limit must be at least 1")
    if bool(args.prompts) == bool(args.prompt):
        raise UserError("give --prompts FILE or --prompt TEXT (one of them)")
    return args


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


def main(argv=None):
    args = parse_args(argv)
    t0 = time.time()
    if os.path.isdir(args.out):
        raise UserError(f"--out {args.out}: is a directory, expected a .jsonl file path")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tokenizer, tok_meta = load_prepared_tokenizer(args.tokenizer_dir) if args.tokenizer_dir else (None, {})
    prompts = load_prompts(args)
    model, settings = load_model_for_generation(args, tokenizer, tok_meta)
    t1 = time.time()
    generations = generate_with_args(model, tokenizer, [text for _, text in prompts], args)
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
    summary["settings"] = dict(settings, prompts=args.prompts or "--prompt", limit=args.limit)
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
