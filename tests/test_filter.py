"""Stage 2: validation, de-duplication, reasoning-only truncation, the report and the plot."""

import collections
import gzip
import json
import struct

import pytest

from reasoning_sft.data.filtering import BOUNDARY_WINDOW, _cut_point, filter_records
from reasoning_sft.data.records import read_records, validate
from reasoning_sft.data.template import tokenize_examples

CODE = "def add(a, b):\n    return a + b"


def rec(**fields):
    base = {"instruction": "Write add(a, b) that returns the sum.", "reasoning": "Addition is one operator.",
            "intention": "Return a + b.", "code": CODE}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not _DROP}


_DROP = object()


def length(tok, record):
    return len(tokenize_examples(tok, [record])[0])


@pytest.fixture(scope="module")
def tok(prepared_tokenizer):
    return prepared_tokenizer[0]


# ---------------------------------------------------------------- drop reasons

DROP_CASES = [
    ("not_an_object", "just a string"),
    ("not_an_object", 42),
    ("not_an_object", None),
    ("not_an_object", [CODE]),
    ("missing_instruction", rec(instruction=_DROP)),
    ("missing_reasoning", rec(reasoning=_DROP)),
    ("missing_intention", rec(intention=_DROP)),
    ("missing_code", rec(code=_DROP)),
    ("empty_instruction", rec(instruction="")),
    ("empty_reasoning", rec(reasoning="  \n\t ")),
    ("empty_intention", rec(intention=" ")),
    ("empty_code", rec(code="\n\n")),
    ("non_string_instruction", rec(instruction=None)),
    ("non_string_reasoning", rec(reasoning=["step 1", "step 2"])),
    ("non_string_intention", rec(intention=7)),
    ("non_string_code", rec(code={"python": CODE})),
    ("tag_in_instruction", rec(instruction="Fill the <code> block.")),
    ("tag_in_reasoning", rec(reasoning="Then I close with </reasoning> early.")),
    ("tag_in_intention", rec(intention="<intention>Return a + b.")),
    ("tag_in_code", rec(code="def f():\n    return '</code>'")),
    ("python_syntax_error", rec(code="def add(a, b:\n    return a + b")),
    ("python_syntax_error", rec(code="x = 1\0")),
    ("bad_language", rec(language="")),
    ("bad_language", rec(language=3)),
]


@pytest.mark.parametrize("reason,raw", DROP_CASES, ids=[f"{r}-{i}" for i, (r, _) in enumerate(DROP_CASES)])
def test_validate_drop_reason(reason, raw):
    assert validate(raw) == (None, reason)


def test_filter_counts_every_drop_reason(tok):
    max_len = 128
    valid = [rec(), rec(instruction="Write sub(a, b).", code="def sub(a, b):\n    return a - b")]
    long_code = "def big():\n" + "".join(f"    value_{i} = {i} * {i}\n" for i in range(60)) + "    return 0"
    raw = list(valid)
    raw += [r for _, r in DROP_CASES]
    raw += [dict(valid[0]), dict(valid[0], id="other-id"),            # exact duplicates (the id does not count)
            dict(valid[1], code="\n" + valid[1]["code"] + "\n\n", reasoning=" Addition is one operator. "),
            dict(valid[0], language="javascript")]                     # same text, other language: kept
    raw += [rec(instruction="Write big().", code=long_code)]                       # code alone > max_len
    assert length(tok, validate(raw[-1])[0]) > max_len
    kept, sections, report = filter_records(raw, tok, max_len)
    expected = collections.Counter(r for r, _ in DROP_CASES)
    expected.update({"duplicate": 3, "too_long": 1})
    assert report["drop_reasons"] == dict(expected)
    assert list(report["drop_reasons"].values()) == sorted(report["drop_reasons"].values(), reverse=True)
    assert [(r["instruction"], r["language"]) for r in kept] == [(valid[0]["instruction"], "python"),
                                                                  (valid[1]["instruction"], "python"),
                                                                  (valid[0]["instruction"], "javascript")]
    assert report["input_records"] == len(raw)
    assert report["kept"] == 3 and report["dropped"] == len(raw) - 3 == sum(expected.values())
    assert report["reasoning_truncated"] == 0 and report["max_len"] == max_len and report["truncate"] is True
    assert len(sections) == 3 and all(sum(s.values()) == length(tok, r) for s, r in zip(sections, kept))


def test_aliases_for_instruction_and_clean_record_shape():
    for alias in ("prompt", "problem", "question"):
        raw = rec(instruction=_DROP, **{alias: "  Write add.  "})
        record, reason = validate(raw)
        assert reason is None, alias
        assert record["instruction"] == "Write add."
        assert alias not in record
    # "instruction" wins over an alias, and only the template fields survive
    record, _ = validate(rec(prompt="other", id=17, extra="ignored", language=" Python "))
    assert record == {"id": "17", "language": "python", "instruction": "Write add(a, b) that returns the sum.",
                      "reasoning": "Addition is one operator.", "intention": "Return a + b.", "code": CODE}
    assert list(record) == ["id", "language", "instruction", "reasoning", "intention", "code"]
    assert "id" not in validate(rec(id=None))[0]


def test_language_defaults_to_python_and_other_languages_are_not_parsed():
    assert validate(rec())[0]["language"] == "python"
    js = "function add(a, b) {\n  return a + b;\n}"
    record, reason = validate(rec(code=js, language="JavaScript"))
    assert reason is None and record["language"] == "javascript" and record["code"] == js
    assert validate(rec(code=js)) == (None, "python_syntax_error")  # no language: python, so it is parsed


def test_code_keeps_first_line_indentation_but_loses_blank_lines():
    record, _ = validate(rec(language="text", code="\n\n    indented\n  more  \n\n"))
    assert record["code"] == "    indented\n  more"
    record, _ = validate(rec(code="\r\ndef f():\r\n    return 1\r\n"))
    assert record["code"] == "def f():\r\n    return 1"


def test_filtering_is_a_fixed_point(tok, filtered_dir):
    kept = json.loads((filtered_dir / "data.json").read_text(encoding="utf-8"))
    again, _, report = filter_records(kept, tok, 256)
    assert again == kept
    assert report["dropped"] == 0 and report["reasoning_truncated"] == 0


# ---------------------------------------------------------------- truncation

def _long_reasoning(n):
    return " ".join(f"Step {i} checks that the running total stays correct for the list." for i in range(n))


def test_truncation_only_shortens_reasoning_at_a_sentence_boundary(tok):
    record = validate(rec(reasoning=_long_reasoning(40)))[0]
    full = length(tok, record)
    short = length(tok, dict(record, reasoning="Step 0 checks."))
    max_len = (full + short) // 2
    kept, sections, report = filter_records([record], tok, max_len)
    assert len(kept) == 1 and report["reasoning_truncated"] == 1
    out = kept[0]
    for field in ("id", "language", "instruction", "intention", "code"):
        assert out.get(field) == record.get(field), field
    assert len(out["reasoning"]) < len(record["reasoning"])
    assert record["reasoning"].startswith(out["reasoning"])
    assert out["reasoning"].endswith(".")                       # a whole sentence ...
    assert record["reasoning"][len(out["reasoning"])] == " "     # ... cut at the space after it
    n = length(tok, out)
    assert n <= max_len
    assert sum(sections[0].values()) == n                       # re-measured after the cut
    assert report["tokens_before"]["max"] == full and report["tokens_after"]["max"] == n <= max_len
    # it keeps as much as fits: adding the next sentence back would not
    nxt = record["reasoning"][:record["reasoning"].index(".", len(out["reasoning"]) + 1) + 1]
    assert length(tok, dict(out, reasoning=nxt)) > max_len


def test_truncation_prefers_a_line_boundary(tok):
    lines = [f"line {i} keeps the invariant of the loop" for i in range(60)]  # no punctuation at all
    record = validate(rec(reasoning="\n".join(lines)))[0]
    max_len = length(tok, record) - 60
    kept, _, report = filter_records([record], tok, max_len)
    out = kept[0]["reasoning"]
    assert report["reasoning_truncated"] == 1 and length(tok, kept[0]) <= max_len
    assert record["reasoning"].startswith(out) and out in ["\n".join(lines[:k]) for k in range(1, 60)]


def test_truncation_cuts_mid_sentence_only_without_a_boundary(tok):
    words = " ".join(f"word{i % 7}" for i in range(400))  # no line or sentence boundary anywhere
    record = validate(rec(reasoning=words))[0]
    max_len = length(tok, record) - 50
    kept, _, _ = filter_records([record], tok, max_len)
    out = kept[0]["reasoning"]
    assert words.startswith(out) and 0 < len(out) < len(words) and length(tok, kept[0]) <= max_len


def test_cut_point_prefers_nearby_boundaries():
    text = "First sentence. Second part without end"
    assert _cut_point(text, len(text) - 3) == text.index(". ") + 1
    assert _cut_point("a\nbbbbbbb", 6) == 1
    assert _cut_point("no boundary here at all", 10) == 10
    far = "Early end. " + "x" * (BOUNDARY_WINDOW + 50)
    assert _cut_point(far, len(far) - 1) == len(far) - 1  # a boundary too far back is not used


def test_no_truncate_drops_instead(tok):
    record = validate(rec(reasoning=_long_reasoning(40)))[0]
    max_len = length(tok, record) - 20
    kept, _, report = filter_records([record, rec()], tok, max_len, truncate=False)
    assert [r["instruction"] for r in kept] == [rec()["instruction"]]
    assert report["drop_reasons"] == {"too_long": 1} and report["reasoning_truncated"] == 0
    assert report["truncate"] is False


def test_record_whose_reasoning_cannot_shrink_enough_is_dropped(tok):
    record = validate(rec(reasoning="Short."))[0]
    without = length(tok, dict(record, reasoning=""))  # prompt + intention + code + tags + EOS
    kept, _, report = filter_records([record], tok, without)  # no room for even one reasoning token
    assert kept == [] and report["drop_reasons"] == {"too_long": 1}


# ---------------------------------------------------------------- the stage 2 artifact

def test_report_of_the_sample_run(filtered_dir, sample_records, prepared_tokenizer, sample_path):
    tok, meta = prepared_tokenizer
    report = json.loads((filtered_dir / "filter_report.json").read_text(encoding="utf-8"))
    kept = json.loads((filtered_dir / "data.json").read_text(encoding="utf-8"))
    assert report["input_records"] == len(sample_records)
    assert report["kept"] == len(kept) > 0
    assert report["kept"] + report["dropped"] == report["input_records"]
    assert sum(report["drop_reasons"].values()) == report["dropped"]
    assert report["max_len"] == 256 and report["truncate"] is True
    assert report["tokenizer_fingerprint"] == meta["fingerprint"]
    assert report["source"] == str(sample_path.resolve())
    lengths = [len(ids) for ids in tokenize_examples(tok, kept)]
    after = report["tokens_after"]
    assert after["count"] == len(kept) and after["total"] == sum(lengths)
    assert after["max"] == max(lengths) <= 256 and after["min"] == min(lengths)
    assert after["min"] <= after["median"] <= after["p95"] <= after["max"]
    before = report["tokens_before"]
    assert before["max"] >= after["max"] and before["count"] >= after["count"]
    assert all(set(r) <= {"id", "language", "instruction", "reasoning", "intention", "code"} for r in kept)


def test_length_histogram_is_a_valid_png(filtered_dir):
    data = (filtered_dir / "length_histogram.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width >= 400 and height >= 200
    assert data.rstrip(b"\0")[-8:-4] == b"IEND"
    from PIL import Image

    with Image.open(filtered_dir / "length_histogram.png") as img:
        img.verify()


def _run_filter(tmp_path, src, tokenizer_dir, *extra):
    import filter_data

    out = tmp_path / f"out-{src.name}"
    assert filter_data.main(["--json", str(src), "--tokenizer", str(tokenizer_dir), "--out_dir", str(out),
                             "--max_len", "256", "--no_plot", *extra]) == 0
    assert not (out / "length_histogram.png").exists()
    return json.loads((out / "data.json").read_text(encoding="utf-8"))


def test_input_formats_give_the_same_records(tmp_path, sample_records, tokenizer_dir):
    raw = sample_records[:12]
    jsonl = "".join(json.dumps(r) + "\n" for r in raw)
    (tmp_path / "a.jsonl").write_text(jsonl, encoding="utf-8")
    (tmp_path / "b.jsonl.gz").write_bytes(gzip.compress(jsonl.encode()))
    (tmp_path / "c.json").write_text(json.dumps(raw, indent=1), encoding="utf-8")
    (tmp_path / "d.json").write_bytes(gzip.compress(json.dumps(raw).encode()))        # gzip sniffed, not by name
    # BOM, CRLF, blank lines
    (tmp_path / "e.jsonl").write_bytes(b"\xef\xbb\xbf" + jsonl.replace("\n", "\r\n\r\n").encode())
    for name in ("a.jsonl", "b.jsonl.gz", "c.json", "d.json", "e.jsonl"):
        assert read_records(str(tmp_path / name)) == raw, name
    results = [_run_filter(tmp_path, tmp_path / name, tokenizer_dir) for name in ("a.jsonl", "b.jsonl.gz", "c.json")]
    assert results[0] == results[1] == results[2]
    assert len(results[0]) > 0
