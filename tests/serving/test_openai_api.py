"""What an OpenAI client gets from the served export, and evaluate.py --backend openai against real servers.

The servers are the tier's (conftest.py): `vllm serve` with the reasoning parser the export ships
(sft_reasoning_parser.py), llama-server on its GGUF. The official `openai` client asks as users' programs
do. Greedy, fp32: every answer is the reference's (transformers on the same directory, test_engines.py).
"""

import ast
import json
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

from reasoning_sft.data.format import parse_output
from reasoning_sft.serve.reasoning_parser import join_answer, split_answer

from .conftest import MAX_NEW_TOKENS, N_PROMPTS, SERVED_MODEL
from .test_vllm_backend import read_jsonl, run_serve_python

pytestmark = pytest.mark.serving

CUT = 6  # max_tokens that ends every answer inside its reasoning (the shortest reasoning is longer)


def client_for(base):
    import openai

    return openai.OpenAI(base_url=f"{base}/v1", api_key="none", timeout=120, max_retries=0)


def ask(client, instruction, **extra):
    """A greedy chat completion of one user message (extra: stream, or another max_tokens)."""
    return client.chat.completions.create(model=SERVED_MODEL, messages=[{"role": "user", "content": instruction}],
                                          **dict(dict(temperature=0, max_tokens=MAX_NEW_TOKENS), **extra))


def streamed(client, instruction, **extra):
    """(reasoning, content, finish_reason) of a streamed answer: its deltas joined."""
    reasoning, content, finish = [], [], None
    for chunk in ask(client, instruction, stream=True, **extra):
        for choice in chunk.choices:
            reasoning.append((choice.delta.model_extra or {}).get("reasoning") or "")
            content.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    return "".join(reasoning), "".join(content), finish


def test_the_openai_client_gets_the_code_in_content_and_the_rest_in_reasoning(vllm_server, reference):
    client = client_for(vllm_server)
    for ref in reference:
        code = parse_output(ref["text"]).code
        choice = ask(client, ref["instruction"]).choices[0]
        reasoning = choice.message.model_extra.get("reasoning")
        assert choice.message.content == code, choice.message
        ast.parse(choice.message.content)  # runnable as is
        assert (reasoning, choice.message.content) == split_answer(ref["text"])  # the reasoning and intention
        assert join_answer(reasoning, choice.message.content) == ref["text"]  # lossless
        assert choice.finish_reason == "stop"
        # streamed: the same two fields, in deltas
        assert streamed(client, ref["instruction"]) == (reasoning, choice.message.content, "stop")


def test_an_answer_cut_in_its_reasoning_has_empty_content(vllm_server, reference):
    client = client_for(vllm_server)
    for ref in reference[:2]:
        choice = ask(client, ref["instruction"], max_tokens=CUT).choices[0]
        reasoning = choice.message.model_extra.get("reasoning")
        assert (choice.finish_reason, choice.message.content) == ("length", None)
        assert reasoning and ref["text"].startswith(reasoning) and "</reasoning>" not in reasoning
        assert streamed(client, ref["instruction"], max_tokens=CUT) == (reasoning, "", "length")


def test_the_parser_inside_vllm_splits_any_answer_streamed_as_whole(tools, served_dir, reference, tmp_path):
    """vLLM's own Parser around the exported file (parser_in_vllm.py, no engine), on answers the trained model
    does not write: cut inside the code (its end may be the beginning of </code>), text after </code>, no tags,
    tags out of order. Streamed token by token and whole, the split is the same and loses nothing."""
    good = reference[0]["text"]
    head = good[:good.index("<code>") + len("<code>")]
    answers = [good, head + "def f(a, b):\n    return a </", good + "\nprint(1)", "just prose, no tags",
               "<code>x = 1</code></reasoning>", ""]
    path = tmp_path / "answers.json"
    path.write_text(json.dumps(answers))
    proc = subprocess.run([str(tools["serve_python"]), str(REPO_ROOT / "tests" / "serving" / "parser_in_vllm.py"),
                           str(served_dir), str(path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [r["text"] for r in rows] == answers
    for row in rows:
        want = split_answer(row["decoded"])  # the text as vLLM's detokenizer gives it back
        assert ((row["reasoning"] or ""), (row["content"] or "")) == want, row
        assert ("".join(r or "" for r, _ in row["deltas"]), "".join(c or "" for _, c in row["deltas"])) == want, row
        assert join_answer(*want) == row["decoded"]
    assert rows[1]["content"].endswith("return a </")  # held back while it could begin </code>, then flushed


def test_generate_openai_rows_are_the_answers(vllm_server, reference, tmp_path):
    import generate

    out = tmp_path / "gen.jsonl"
    argv = ["--backend", "openai", "--base_url", f"{vllm_server}/v1", "--max_new_tokens", str(MAX_NEW_TOKENS),
            "--out", str(out)] + [a for ref in reference for a in ("--prompt", ref["instruction"])]
    assert generate.main(argv) == 0
    rows = read_jsonl(out)
    assert [r["output"] for r in rows] == [ref["text"] for ref in reference]
    assert all(r["ok"] and r["syntax_ok"] and r["stop"] == "</code>" for r in rows)
    settings = json.loads((tmp_path / "gen_summary.json").read_text())["settings"]
    assert (settings["backend"], settings["model"]) == ("openai", SERVED_MODEL)


# ---------------------------------------------------------------------------------------
# evaluate.py --backend openai: the same greedy samples, results and pass@1 as the in-process vLLM backend


def write_problems(path, records):
    """HumanEval-format problems whose prompts are the trained instructions. Every other problem's test fails
    whatever the answer, so pass@1 is 0.5 when every answer is format- and syntax-correct."""
    rows = []
    for k, record in enumerate(records):
        entry = next(n.name for n in ast.parse(record["code"]).body if isinstance(n, ast.FunctionDef))
        check = "assert callable(candidate)" if k % 2 == 0 else "assert candidate is None"
        rows.append({"task_id": record["id"], "prompt": record["instruction"], "entry_point": entry,
                     "canonical_solution": "", "test": f"def check(candidate):\n    {check}\n"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="session")
def problems(tmp_path_factory, short_records):
    return write_problems(tmp_path_factory.mktemp("problems") / "problems.jsonl", short_records)


@pytest.fixture(scope="session")
def inprocess_eval(tools, served_dir, tokenizer_dir, problems, tmp_path_factory):
    """evaluate.py --backend vllm, greedy, on the served directory (one in-process vLLM engine)."""
    out = tmp_path_factory.mktemp("eval_inprocess")
    run_serve_python(tools, "evaluate.py", "--backend", "vllm", "--problems", problems, "--tokenizer_dir",
                     tokenizer_dir, "--model_dir", served_dir, "--max_new_tokens", MAX_NEW_TOKENS, "--max_model_len",
                     "512", "--workers", "2", "--out_dir", out)
    return out


def evaluate_openai(base, problems, out, *extra):
    proc = subprocess.run([sys.executable, "evaluate.py", "--backend", "openai", "--base_url", f"{base}/v1",
                           "--problems", str(problems), "--max_new_tokens", str(MAX_NEW_TOKENS), "--workers", "2",
                           "--concurrency", "4", "--out_dir", str(out), *extra],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])
    return proc


def same_as_inprocess(inprocess, out):
    """The served samples' texts, stops, results and pass@1 are the in-process backend's."""
    ours, theirs = read_jsonl(out / "samples.jsonl"), read_jsonl(inprocess / "samples.jsonl")
    assert len(ours) == N_PROMPTS
    assert [(s["task_id"], s["output"], s["stop"]) for s in ours] == \
        [(s["task_id"], s["output"], s["stop"]) for s in theirs]
    keep = ("task_id", "sample", "passed", "result")
    assert [{k: r[k] for k in keep} for r in read_jsonl(out / "results.jsonl")] == \
        [{k: r[k] for k in keep} for r in read_jsonl(inprocess / "results.jsonl")]
    summaries = [json.loads((d / "summary.json").read_text()) for d in (out, inprocess)]
    assert summaries[0]["pass@1"] == summaries[1]["pass@1"] == 0.5, summaries
    return summaries[0]


def test_evaluate_openai_on_vllm_serve_scores_as_the_inprocess_backend(vllm_server, problems, inprocess_eval,
                                                                       tmp_path):
    proc = evaluate_openai(vllm_server, problems, tmp_path / "eval", "--model", SERVED_MODEL)
    summary = same_as_inprocess(inprocess_eval, tmp_path / "eval")
    assert "pass@1" in proc.stdout
    assert summary["settings"]["generation"]["backend"] == "openai"


def test_evaluate_openai_on_llama_server_scores_as_the_inprocess_backend(llama_server, problems, inprocess_eval,
                                                                         tmp_path):
    evaluate_openai(llama_server, problems, tmp_path / "eval")  # --model: the one llama-server lists
    same_as_inprocess(inprocess_eval, tmp_path / "eval")
