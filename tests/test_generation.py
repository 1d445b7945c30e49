"""generate.py: the strict output parser, the syntax check, the summary, prompt building and the CLI."""

import json

import pytest
import torch
from conftest import our_error_line

from reasoning_sft.data.format import Parsed, parse_output
from reasoning_sft.data.records import python_parses, syntax_error, validate
from reasoning_sft.data.template import CLOSE, OPEN, TAGS, target_text, tokenize_examples
from reasoning_sft.errors import UserError
from reasoning_sft.serve.decoding import decode_continuation, encode_prompts, prompt_token_ids, stop_ids
from reasoning_sft.serve.generation import (
    evaluate,
    generate,
    summarize,
)

GOOD = target_text("Sort, then scan.", "One pass over the sorted list.", "def f(xs):\n    return sorted(xs)")
OUT_FIELDS = {"id", "instruction", "output", "ok", "errors", "reasoning", "intention", "code", "syntax_ok",
              "n_tokens", "stop"}


# --------------------------------------------------------------------------- the parser

def test_parse_happy_path():
    p = parse_output(GOOD)
    assert isinstance(p, Parsed) and p.ok and p.errors == []
    assert (p.reasoning, p.intention, p.code) == ("Sort, then scan.", "One pass over the sorted list.",
                                                  "def f(xs):\n    return sorted(xs)")
    assert p.to_dict()["ok"] is True


def test_parse_tolerates_trailing_and_gap_whitespace():
    assert parse_output(GOOD + "\n  \n").ok
    spaced = GOOD.replace("</reasoning><intention>", "</reasoning>\n<intention>").replace(
        "</intention><code>", "</intention> \n<code>")
    assert parse_output(spaced).ok
    # sections are returned raw: the code's leading newline/indentation is kept
    p = parse_output(target_text("r", "i", "\n    x = 1\n"))
    assert p.ok and p.code == "\n    x = 1\n"


def without(tag):
    return GOOD.replace(tag, "", 1)


def doubled(tag):
    return GOOD.replace(tag, tag + "x" + tag, 1)


BAD = [
    # one missing tag each
    *[(without(tag), {f"missing {tag}"})
      for tag in ("</reasoning>", "<intention>", "</intention>", "<code>", "</code>")],
    # one duplicated tag each
    *[(doubled(tag), {f"extra {tag}"}) for tag in ("</reasoning>", "<intention>", "</intention>", "<code>", "</code>")],
    ("r<intention>i</intention></reasoning><code>c</code>", {"order: <intention> before </reasoning>"}),
    ("r</reasoning><code>c</code><intention>i</intention>", {"order: <code> before </intention>"}),
    ("r</reasoning><intention>i<code>c</intention></code>", {"order: <code> before </intention>"}),
    ("r</reasoning><intention>i</intention></code>c<code>", {"order: </code> before <code>"}),
    (GOOD + "\nprint(1)", {"text after </code>"}),
    (GOOD + "</s>", {"text after </code>"}),  # an EOS string the caller failed to strip
    ("<reasoning>" + GOOD, {"stray <reasoning>"}),
    (GOOD.replace("then", "<reasoning>then"), {"stray <reasoning>"}),
    (target_text("", "i", "x = 1"), {"empty reasoning"}),
    (target_text("r", " \n", "x = 1"), {"empty intention"}),
    (target_text("r", "i", ""), {"empty code"}),
    (target_text("r", "i", "\n\n  "), {"empty code"}),
    (GOOD.replace("</reasoning><intention>", "</reasoning>oops<intention>"),
     {"text between </reasoning> and <intention>"}),
    (GOOD.replace("</intention><code>", "</intention>```<code>"), {"text between </intention> and <code>"}),
    ("", {f"missing {t}" for t in ("</reasoning>", "<intention>", "</intention>", "<code>", "</code>")}),
]


@pytest.mark.parametrize("text,expected", BAD, ids=[", ".join(sorted(e))[:60] for _, e in BAD])
def test_parse_names_each_failure(text, expected):
    p = parse_output(text)
    assert not p.ok
    assert set(p.errors) == expected, p.errors


def test_parse_truncated_output_keeps_the_complete_sections():
    """An output cut by max_new_tokens: missing </code>, but reasoning and intention are usable."""
    p = parse_output("r</reasoning><intention>i</intention><code>def f(")
    assert p.errors == ["missing </code>"]
    assert (p.reasoning, p.intention, p.code) == ("r", "i", None)


def test_every_tag_in_the_template_is_checked():
    for tag in TAGS:
        assert not parse_output(GOOD.replace("scan", tag + "scan")).ok, tag


# --------------------------------------------------------------------------- syntax + summary

def test_python_parses():
    assert python_parses("def f(x):\n    return x + 1\n")
    assert python_parses("x = 1")
    assert not python_parses("def f(:\n    pass")
    assert not python_parses("x = (1,")
    assert not python_parses("a = 1\x00")  # NUL byte: ValueError, not a crash
    assert syntax_error("x = (1,").startswith("line 1:")
    assert syntax_error("x = 1") is None


def test_code_nested_too_deeply_is_a_syntax_error_not_a_crash():
    """ast.parse raises RecursionError on this; generate.py's and evaluate.py's checks must judge it, not die."""
    from reasoning_sft.eval.scoring import SYNTAX_ERROR, judge_format

    deep = "x = " + "-" * 3000 + "1"
    assert syntax_error(deep) == "nested too deeply to parse" and not python_parses(deep)
    output = "why</reasoning><intention>what</intention><code>" + deep + "</code>"
    assert evaluate({"output": output})["syntax_ok"] is False
    assert judge_format(output) == (None, (SYNTAX_ERROR, "nested too deeply to parse"))


def _evaluated(output, n_tokens=10, stop="</code>"):
    return evaluate({"output": output, "n_tokens": n_tokens, "stop": stop, "section_tokens": None})


def test_evaluate_judges_syntax_of_extracted_code():
    assert _evaluated(GOOD)["syntax_ok"] is True
    bad_code = _evaluated(target_text("r", "i", "def f(:"))
    assert bad_code["ok"] and bad_code["syntax_ok"] is False
    no_code = _evaluated("r</reasoning>")
    assert no_code["syntax_ok"] is None and no_code["code"] is None
    # code is judged even when the format fails elsewhere (text after </code>)
    assert _evaluated(GOOD + "junk")["syntax_ok"] is True


def test_summarize_numbers():
    results = [
        _evaluated(target_text("abcd", "ij", "x = 1"), n_tokens=20),                       # ok, valid
        _evaluated(target_text("ab", "ijkl", "def f(:"), n_tokens=30),                      # ok, invalid code
        _evaluated(GOOD + "trailing", n_tokens=40, stop="length"),                         # format fail, valid code
        _evaluated("r</reasoning>", n_tokens=50, stop="eos"),                              # format fail, no code
    ]
    results[0]["section_tokens"] = {"reasoning": 3, "intention": 1, "code": 4}
    results[1]["section_tokens"] = {"reasoning": 1, "intention": 3, "code": 6}
    s = summarize(results)
    assert (s["outputs"], s["format_ok"], s["syntax_ok"]) == (4, 2, 1)
    assert s["format_ok_rate"] == 0.5
    assert s["syntax_ok_rate"] == 0.25            # only format-ok outputs with valid code count
    assert s["syntax_ok_rate_when_format_ok"] == 0.5
    assert s["mean_chars"] == {"reasoning": 3.0, "intention": 3.0, "code": 6.0}
    assert s["mean_tokens"] == {"reasoning": 2.0, "intention": 2.0, "code": 5.0}
    assert s["mean_output_tokens"] == 35.0
    assert s["mean_output_chars"] == sum(len(r["output"]) for r in results) / 4
    assert s["stop_reasons"] == {"</code>": 2, "length": 1, "eos": 1}
    assert s["error_counts"] == {"missing </code>": 1, "missing </intention>": 1, "missing <code>": 1,
                                 "missing <intention>": 1, "text after </code>": 1}
    json.dumps(s)  # serialisable as is

    empty = summarize([])
    assert empty["outputs"] == 0 and empty["format_ok_rate"] is None


# --------------------------------------------------------------------------- with the real tokenizer

def test_parser_accepts_exactly_what_the_template_produces(prepared_tokenizer, sample_records):
    """Encode real samples, take the target ids (after <reasoning>) and decode them the way generate() does."""
    tok, _ = prepared_tokenizer
    records = [r for r in (validate(x)[0] for x in sample_records[:40]) if r is not None]
    assert len(records) >= 20
    reasoning_id = tok.convert_tokens_to_ids(OPEN["reasoning"])
    for record, ids in zip(records, tokenize_examples(tok, records)):
        target = ids[ids.index(reasoning_id) + 1:]
        assert target[-2:] == [tok.convert_tokens_to_ids(CLOSE["code"]), tok.eos_token_id]
        gen = decode_continuation(tok, target + [tok.pad_token_id] * 3)   # generate() pads finished rows
        assert gen["stop"] == "</code>" and gen["n_tokens"] == len(target) - 1
        result = evaluate(gen)
        assert result["ok"], (record.get("id"), result["errors"])
        assert (result["reasoning"], result["intention"], result["code"]) == (
            record["reasoning"], record["intention"], record["code"])
        assert result["syntax_ok"] is True
        n = gen["section_tokens"]
        assert n["reasoning"] + n["intention"] + n["code"] + 5 == gen["n_tokens"]


def test_decode_continuation_stops(prepared_tokenizer):
    tok, _ = prepared_tokenizer
    eos, code_close = stop_ids(tok)
    words = tok("x = 1", add_special_tokens=False)["input_ids"]
    gen = decode_continuation(tok, words + [eos, tok.pad_token_id, tok.pad_token_id])
    assert ((gen["output"], gen["n_tokens"], gen["stop"], gen["section_tokens"])
            == ("x = 1", len(words) + 1, "eos", None))
    gen = decode_continuation(tok, words)
    assert (gen["output"], gen["stop"]) == ("x = 1", "length")
    gen = decode_continuation(tok, words + [code_close] + words)
    assert gen["output"] == "x = 1</code>" and gen["stop"] == "</code>"


def test_prompts_are_left_padded_and_end_with_reasoning(prepared_tokenizer):
    tok, _ = prepared_tokenizer
    instructions = ["Add two numbers.", "Write `merge_intervals(xs)` that merges overlapping intervals, sorted.", "x"]
    enc = encode_prompts(tok, instructions)
    ids, mask = enc["input_ids"].tolist(), enc["attention_mask"].tolist()
    reasoning_id = tok.convert_tokens_to_ids(OPEN["reasoning"])
    lengths = [sum(m) for m in mask]
    assert len(set(lengths)) == 3  # the batch really needs padding
    for row, m, n in zip(ids, mask, lengths):
        assert m == [0] * (len(m) - n) + [1] * n                       # pads on the left only
        assert row[:len(row) - n] == [tok.pad_token_id] * (len(row) - n)
        assert row[len(row) - n] == tok.bos_token_id                    # BOS first, after the pads
        assert row[-1] == reasoning_id                                   # prompt ends with <reasoning>
        assert row.count(reasoning_id) == 1 and row.count(tok.bos_token_id) == 1
    # the unpadded ids (what --backend vllm is given) are these rows less their pads
    assert prompt_token_ids(tok, instructions) == [row[len(row) - n:] for row, n in zip(ids, lengths)]


class ScriptedModel(torch.nn.Module):
    """Stands in for a trained model: answers each prompt with fixed ids, as HF generate() lays them out."""

    def __init__(self, tokenizer, answers):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.tok, self.answers, self.calls = tokenizer, answers, []

    def generate(self, input_ids, attention_mask, **kw):
        self.calls.append((input_ids.clone(), kw))
        rows = []
        for row, mask in zip(input_ids.tolist(), attention_mask.tolist()):
            prompt = self.tok.decode([i for i, m in zip(row, mask) if m], skip_special_tokens=True)
            rows.append(self.answers[prompt.split("\n\n")[0]][:kw["max_new_tokens"]])
        width = max(map(len, rows))
        rows = [r + [kw["pad_token_id"]] * (width - len(r)) for r in rows]
        return torch.cat([input_ids, torch.tensor(rows, dtype=input_ids.dtype)], dim=1)


def test_generate_batches_restores_order_and_parses(prepared_tokenizer):
    tok, _ = prepared_tokenizer
    target = tok(target_text("Think.", "Plan.", "y = 2"), add_special_tokens=False)["input_ids"]
    answers = {
        "Longest instruction of the three, by far, so it sorts last.": target + [tok.eos_token_id],
        "Short one.": tok("no tags here", add_special_tokens=False)["input_ids"] + [tok.eos_token_id],
        "Mid length instruction.": target[:-1] + tok(" and more", add_special_tokens=False)["input_ids"] * 20,
    }
    model = ScriptedModel(tok, answers)
    instructions = list(answers)
    results = generate(model, tok, instructions, max_new_tokens=30, batch_size=2, seed=0)
    assert [r["output"] for r in results[:2]] == [target_text("Think.", "Plan.", "y = 2"), "no tags here"]
    assert [r["stop"] for r in results] == ["</code>", "eos", "length"]
    assert results[2]["n_tokens"] == 30
    assert [evaluate(r)["ok"] for r in results] == [True, False, False]
    assert results[0]["section_tokens"] is not None
    (first_ids, kw), _ = model.calls
    assert kw["eos_token_id"] == [tok.eos_token_id, tok.convert_tokens_to_ids("</code>")]
    assert kw["do_sample"] is False and kw["pad_token_id"] == tok.pad_token_id
    assert first_ids[:, 0].tolist()[0] == tok.pad_token_id  # left-padded batch of two different lengths


# --------------------------------------------------------------------------- the tiny model

@pytest.fixture(scope="module")
def tiny_model(tiny_model_dir, prepared_tokenizer):
    from reasoning_sft.train.modeling import load_for_inference

    return load_for_inference(str(tiny_model_dir), prepared_tokenizer[0])


def test_batched_greedy_matches_one_by_one(tiny_model, prepared_tokenizer, sample_records):
    """Left padding is invisible to the model: the same continuations as generating each prompt alone."""
    tok, _ = prepared_tokenizer
    instructions = [r["instruction"] for r in sample_records[:4]]
    batched = generate(tiny_model, tok, instructions, max_new_tokens=12, batch_size=4)
    alone = generate(tiny_model, tok, instructions, max_new_tokens=12, batch_size=1)
    assert [r["output"] for r in batched] == [r["output"] for r in alone]
    assert all(1 <= r["n_tokens"] <= 12 for r in batched)


def test_sampling_is_seeded(tiny_model, prepared_tokenizer, sample_records):
    tok, _ = prepared_tokenizer
    instructions = [r["instruction"] for r in sample_records[:2]]
    run = lambda seed: [r["output"] for r in generate(tiny_model, tok, instructions, max_new_tokens=10,  # noqa: E731
                                                      temperature=1.0, top_p=0.9, batch_size=2, seed=seed)]
    assert run(1) == run(1)


def test_cli_end_to_end(run_script, tiny_model_dir, tokenizer_dir, sample_path, tmp_path):
    out = tmp_path / "gen" / "results.jsonl"
    proc = run_script("generate.py", "--model_name", tiny_model_dir, "--tokenizer_dir", tokenizer_dir,
                      "--prompts", sample_path, "--limit", 3, "--max_new_tokens", 8, "--batch_size", 2,
                      "--out", out)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 3
    for row in rows:
        assert set(row) == OUT_FIELDS
        assert isinstance(row["ok"], bool) and isinstance(row["errors"], list)
        assert row["ok"] == (row["errors"] == [])
        assert 1 <= row["n_tokens"] <= 8
    summary = json.loads((tmp_path / "gen" / "results_summary.json").read_text(encoding="utf-8"))
    assert summary["outputs"] == 3
    for key in ("format_ok_rate", "syntax_ok_rate"):
        assert 0 <= summary[key] <= 1
    assert "format ok:" in proc.stdout and "syntax ok:" in proc.stdout
    assert sorted(p.name for p in out.parent.iterdir()) == ["results.jsonl", "results_summary.json"]  # no temp files


# --------------------------------------------------------------------------- bad input

@pytest.fixture
def gen_main():
    import generate as script
    return script.main


def test_bad_input_is_a_user_error(gen_main, tokenizer_dir, tiny_model_dir, sample_path, tmp_path):
    base = ["--tokenizer_dir", str(tokenizer_dir), "--model_name", str(tiny_model_dir),
            "--out", str(tmp_path / "r.jsonl")]
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    no_instruction = tmp_path / "bad.jsonl"
    no_instruction.write_text('{"instruction": "ok"}\n{"text": "no instruction"}\n')
    adapter_only = tmp_path / "adapter"
    adapter_only.mkdir()
    (adapter_only / "adapter_config.json").write_text("{}")
    cases = {
        "not both": ["--prompt", "x", "--adapter_dir", str(tmp_path), "--model_dir", str(tmp_path)],
        "one of them": [],
        "one of them ": ["--prompt", "x", "--prompts", str(sample_path)],
        "no such file": ["--prompts", str(tmp_path / "missing.jsonl")],
        "empty": ["--prompts", str(empty)],
        "no instruction field": ["--prompts", str(no_instruction)],
        "prompt 0 is empty": ["--prompt", "  "],
        "--adapter_dir": ["--prompt", "x", "--adapter_dir", str(tmp_path / "nope")],
        "--temperature": ["--prompt", "x", "--temperature", "-1"],
        "not a LoRA adapter": ["--prompt", "x", "--adapter_dir", str(tiny_model_dir)],  # full weights
        "cannot load a model": ["--prompt", "x", "--model_dir", str(tokenizer_dir)],
        "is a LoRA adapter, not a model": ["--prompt", "x", "--model_dir", str(adapter_only)],
    }
    for message, extra in cases.items():
        with pytest.raises(UserError, match=message.strip()):
            gen_main(base + extra)
    with pytest.raises(UserError, match="prepare_llamatokenizer"):
        gen_main(["--tokenizer_dir", str(tmp_path), "--prompt", "x", "--out", str(tmp_path / "r.jsonl")])
    (tmp_path / "dir.jsonl").mkdir()
    with pytest.raises(UserError, match="is a directory"):
        gen_main(base[:-1] + [str(tmp_path / "dir.jsonl"), "--prompt", "x"])
    assert not (tmp_path / "r.jsonl").exists()


def test_cli_bad_input_exit_2_one_line(run_script, tmp_path):
    proc = run_script("generate.py", "--tokenizer_dir", tmp_path, "--prompt", "x", "--adapter_dir", tmp_path,
                      "--model_dir", tmp_path, "--out", tmp_path / "r.jsonl")
    assert "not both" in our_error_line(proc, "generate.py")
    assert not (tmp_path / "r.jsonl").exists()


def test_backend_vllm_refusals_are_one_line(run_script, gen_main, tokenizer_dir, tiny_model_dir, tmp_path):
    """Where vLLM cannot run (this venv has none; LoRA adapters; transformers-only options): one line, exit 2."""
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    base = ["--tokenizer_dir", str(tokenizer_dir), "--prompt", "x", "--out", str(tmp_path / "r.jsonl")]
    cases = {
        "export.py": ["--backend", "vllm", "--adapter_dir", str(adapter)],
        "needs --model_dir": ["--backend", "vllm", "--model_name", str(tiny_model_dir)],
        "--device is a transformers-backend option": ["--backend", "vllm", "--model_dir", str(tiny_model_dir),
                                                      "--device", "cpu"],
        "--tensor_parallel_size is for --backend vllm": ["--model_dir", str(tiny_model_dir),
                                                         "--tensor_parallel_size", "2"],
        "--max_model_len is for --backend vllm": ["--model_dir", str(tiny_model_dir), "--max_model_len", "512"],
        "--tensor_parallel_size must be": ["--model_dir", str(tiny_model_dir), "--tensor_parallel_size", "0"],
    }
    for message, extra in cases.items():
        with pytest.raises(UserError, match=message):
            gen_main(base + extra)
    import importlib.util
    if importlib.util.find_spec("vllm") is None:  # the main venv: the line says where vLLM is
        proc = run_script("generate.py", *base, "--backend", "vllm", "--model_dir", tiny_model_dir)
        line = our_error_line(proc, "generate.py")
        assert "make serve-env" in line and ".venv-serve/bin/python generate.py" in line
        proc = run_script("evaluate.py", "--problems", tmp_path / "p.jsonl", "--out_dir", tmp_path / "e",
                          "--tokenizer_dir", tokenizer_dir, "--backend", "vllm", "--model_dir", tiny_model_dir)
        assert ".venv-serve/bin/python evaluate.py" in our_error_line(proc, "evaluate.py")
    assert not (tmp_path / "r.jsonl").exists()


def test_in_process_prompts_default_model_and_replace(gen_main, tokenizer_dir, tiny_model_dir, tmp_path, capsys):
    """--prompt (repeatable), --model_name defaulting to the tokenizer's base model, --out replaced on a rerun."""
    out = tmp_path / "r.jsonl"
    args = ["--tokenizer_dir", str(tokenizer_dir), "--prompt", "Add two numbers.", "--prompt", "Reverse a list.",
            "--max_new_tokens", "4", "--out", str(out)]
    out.write_text("stale\n")
    assert gen_main(args) == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["instruction"] for r in rows] == ["Add two numbers.", "Reverse a list."]
    assert all("id" not in r for r in rows)
    summary = json.loads((tmp_path / "r_summary.json").read_text(encoding="utf-8"))
    assert summary["settings"]["model_name"] == str(tiny_model_dir) and summary["outputs"] == 2
    assert "format ok:" in capsys.readouterr().out
    # a full model whose vocabulary lacks the tag rows (the untouched base) is refused
    with pytest.raises(UserError, match="token rows"):
        gen_main(args + ["--model_dir", str(tiny_model_dir)])


# --------------------------------------------------------------------------- generation_config.json (serving)

def test_saved_generation_config_stops_generate_after_code_close(tiny_model, prepared_tokenizer, tmp_path):
    """A model dir with save_tokenizer_and_generation_config stops at the EOS after </code> in a plain
    generate() call, with no eos argument, as vLLM/TGI do from the same file (stopping at EOS, not at
    </code>, is what keeps "</code>" in vLLM's text); the base model's other fields are kept."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    from reasoning_sft.train.generation_config import save_tokenizer_and_generation_config

    tok, _ = prepared_tokenizer
    out = tmp_path / "served"
    tiny_model.save_pretrained(out)
    GenerationConfig(do_sample=True, temperature=0.7, eos_token_id=7).save_pretrained(out)  # a base's
    save_tokenizer_and_generation_config(str(out), tok)
    config = GenerationConfig.from_pretrained(out)
    assert config.eos_token_id == [tok.eos_token_id]
    assert (config.pad_token_id, config.bos_token_id) == (tok.pad_token_id, tok.bos_token_id)
    assert (config.do_sample, config.temperature) == (True, 0.7)
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary file left

    served_tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    prompt = served_tok.apply_chat_template([{"role": "user", "content": "Add two numbers."}],
                                            add_generation_prompt=True, return_tensors="pt")
    code_close, eos = tok.convert_tokens_to_ids(CLOSE["code"]), tok.eos_token_id
    with torch.no_grad():  # make </code> the model's first choice after this prompt, EOS the next
        hidden = model.model(input_ids=prompt["input_ids"]).last_hidden_state[0, -1]
        model.lm_head.weight[code_close] = hidden * (100.0 / hidden.norm() ** 2)
        after = torch.cat([prompt["input_ids"], torch.tensor([[code_close]])], dim=1)
        hidden = model.model(input_ids=after).last_hidden_state[0, -1]
        model.lm_head.weight[eos] = hidden * (200.0 / hidden.norm() ** 2)
        out_ids = model.generate(**prompt, max_new_tokens=5, do_sample=False)
    assert out_ids[0, prompt["input_ids"].shape[1]:].tolist() == [code_close, eos]  # stopped right there


def test_cli_sampling_defaults_are_generates_defaults():
    """generate.py and evaluate.py sample as a plain generate() call does unless told otherwise."""
    import argparse
    import inspect

    from reasoning_sft.serve.generation import add_sampling_args

    parser = argparse.ArgumentParser()
    add_sampling_args(parser)
    args = parser.parse_args([])
    defaults = {name: param.default for name, param in inspect.signature(generate).parameters.items()
                if param.default is not inspect.Parameter.empty}
    assert {name: getattr(args, name) for name in defaults} == defaults
