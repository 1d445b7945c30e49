"""generate.py and evaluate.py --backend vllm, run with .venv-serve's python as a user runs them.

Greedy: the rows and the summary are the transformers backend's (fp32 on both sides), on the train_full.py
output. Sampling (evaluate.py on the export.py serving dir): the counts, the stops and the format, not
equality (sampled outputs are not reproducible run to run on vLLM: REPRODUCIBLE). The sampling benchmark,
at a small size. Three vLLM engine starts in all (each 35-50 s on 2 cores).
"""

import ast
import json
import os
import subprocess

import pytest
from conftest import REPO_ROOT

from reasoning_sft.data.template import CLOSE
from reasoning_sft.serve.vllm_backend import REPRODUCIBLE

from .conftest import MAX_NEW_TOKENS, N_PROMPTS

pytestmark = pytest.mark.serving

N_SAMPLES = 4
# what may differ between two runs of the same generation: where and how fast it ran
RUN_FIELDS = ("settings", "generation_seconds", "tokens_per_second", "seconds")


def run_serve_python(tools, script, *args, timeout=600):
    proc = subprocess.run([str(tools["serve_python"]), script, *[str(a) for a in args]], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1", HF_HUB_OFFLINE="1",
                                   TOKENIZERS_PARALLELISM="false"))
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-4000:])
    return proc


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_greedy_rows_and_summary_are_the_transformers_backends(tools, trained_model, tokenizer_dir, short_records,
                                                              tmp_path):
    import generate

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": r["id"], "instruction": r["instruction"]}) + "\n"
                               for r in short_records))
    common = ["--tokenizer_dir", tokenizer_dir, "--model_dir", trained_model, "--prompts", prompts,
              "--max_new_tokens", MAX_NEW_TOKENS]
    assert generate.main([str(a) for a in common] + ["--out", str(tmp_path / "hf.jsonl")]) == 0
    run_serve_python(tools, "generate.py", "--backend", "vllm", *common, "--max_model_len", "512",
                     "--out", tmp_path / "vllm.jsonl")

    hf, vllm = read_jsonl(tmp_path / "hf.jsonl"), read_jsonl(tmp_path / "vllm.jsonl")
    assert len(vllm) == N_PROMPTS
    assert vllm == hf  # outputs (tags kept), sections, n_tokens, stop: row for row
    assert all(row["ok"] and row["stop"] == CLOSE["code"] for row in vllm)
    summaries = [json.loads((tmp_path / f"{name}_summary.json").read_text()) for name in ("hf", "vllm")]
    assert [{k: v for k, v in s.items() if k not in RUN_FIELDS} for s in summaries][0] == \
        {k: v for k, v in summaries[1].items() if k not in RUN_FIELDS}
    settings = summaries[1]["settings"]
    assert (settings["backend"], settings["dtype"], settings["device"], settings["max_model_len"]) == \
        ("vllm", "float32", "cpu", 512)


def write_problems(path, records):
    """HumanEval-format problems whose prompts are the trained instructions; the test checks only that the
    answer defines its entry point (what the tiny model's code computes is not the point here)."""
    rows = []
    for record in records:
        entry = next(n.name for n in ast.parse(record["code"]).body if isinstance(n, ast.FunctionDef))
        rows.append({"task_id": record["id"], "prompt": record["instruction"], "entry_point": entry,
                     "canonical_solution": "", "test": "def check(candidate):\n    assert callable(candidate)\n"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_evaluate_samples_n_per_problem_on_the_serving_dir(tools, served_dir, tokenizer_dir,
                                                                              short_records, tmp_path):
    problems = write_problems(tmp_path / "problems.jsonl", short_records)
    args = ["--problems", problems, "--tokenizer_dir", tokenizer_dir, "--model_dir", served_dir,
            "--backend", "vllm", "--n_samples", N_SAMPLES, "--temperature", "0.8", "--top_p", "0.95",
            "--max_new_tokens", MAX_NEW_TOKENS, "--seed", "3", "--workers", "2"]
    first = run_serve_python(tools, "evaluate.py", *args, "--out_dir", tmp_path / "a")

    samples = read_jsonl(tmp_path / "a" / "samples.jsonl")
    assert [s["task_id"] for s in samples] == [r["id"] for r in short_records for _ in range(N_SAMPLES)]
    for s in samples:
        assert 1 <= s["n_tokens"] <= MAX_NEW_TOKENS and s["stop"] in (CLOSE["code"], "eos", "length"), s
        if s["stop"] == CLOSE["code"]:  # stopped at </code>, and the text keeps it
            assert s["output"].endswith(CLOSE["code"]), s["output"][-100:]
        else:
            assert s["n_tokens"] == MAX_NEW_TOKENS or s["stop"] == "eos", s
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["samples"] == N_PROMPTS * N_SAMPLES and summary["tasks"] == N_PROMPTS
    assert summary["format_ok_rate"] > 0.5, summary  # sampled at 0.8, the trained format mostly holds
    assert "pass@1" in summary and "pass@1" in first.stdout
    generation = summary["settings"]["generation"]
    assert (generation["backend"], generation["dtype"], generation["n_samples"]) == ("vllm", "float32", N_SAMPLES)
    assert generation["reproducible"] == REPRODUCIBLE["cpu"]  # greedy only: sampled outputs vary run to run


def test_bench_sampling_runs_both_backends(tools, trained_model, tokenizer_dir, tmp_path):
    """benchmarks/bench_sampling.py as BENCHMARKS.md runs it, at a small size (a third engine start)."""
    import sys

    out = tmp_path / "bench"
    proc = subprocess.run([sys.executable, "benchmarks/bench_sampling.py", "--model_dir", str(trained_model),
                           "--tokenizer_dir", str(tokenizer_dir), "--prompts", "2", "--n_samples", "3",
                           "--max_new_tokens", "16", "--serve_python", str(tools["serve_python"]),
                           "--out_dir", str(out)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert [r["backend"] for r in results["rows"]] == ["transformers", "vllm"]
    assert all(r["samples"] == 6 and r["tokens_per_second"] > 0 for r in results["rows"])
    assert "vllm / transformers tokens/s:" in proc.stdout
