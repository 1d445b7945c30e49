"""Bad input at scale: property-based fuzzing (hypothesis) of the raw-data reader and the filter.

Whatever the file holds, the reader either returns records or raises one UserError line (exit 2 at
the command line); whatever a record holds, the filter either drops it with a named reason or keeps
a record that makes exactly one well-formed example: BOS, prompt, each tag once and in order, no
stray EOS / pad / BOS inside, EOS last, <= max_len, and writable as UTF-8.
"""

import gzip
import json
import os
import re
import tempfile

import numpy as np
from conftest import our_error_line, run_script
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from reasoning_sft.data.records import read_records, validate, writable
from reasoning_sft.data.template import TAGS, tokenize_examples
from reasoning_sft.errors import UserError

FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

SPECIALS = list(TAGS) + ["</s>", "<s>", "<pad>", "<unk>"]
DROP_REASON = re.compile(r"^(not_an_object|duplicate|too_long|bad_language|python_syntax_error|bad_id|bad_unicode_id|"
                         r"(missing|empty|non_string|tag_in|special_token_in|bad_unicode)_"
                         r"(instruction|reasoning|intention|code))$")

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=8))
def nested(depth):
    value = []
    for _ in range(depth):
        value = [value]
    return value


json_values = st.one_of(
    st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                 | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8),
    st.sampled_from([700, 990]).map(nested),  # as deep as json.loads goes: str() of it overflows the stack
)
nasty_text = st.one_of(
    st.text(max_size=40),                                                   # any code point but surrogates
    st.text(alphabet=st.characters(codec=None, categories=["Cs", "Cc", "Zl", "Zp", "Cf"]), max_size=8),
    st.builds(lambda a, tok, b: a + tok + b, st.text(max_size=8), st.sampled_from(SPECIALS), st.text(max_size=8)),
    st.builds(lambda s, n: s * n, st.text(min_size=1, max_size=4), st.integers(500, 5000)),  # huge
    st.sampled_from(["", "  \t", "\r\n", "\x00", "\ufeff", "\u2028x\u2029", "plain words.", "a\r\nb\rc"]),
)
code = st.one_of(
    st.sampled_from(["x = 1", "def f():\n    return 1", "\r\n  y = 2  \r\n", "def broken(:", "a" + "+a" * 3000]),
    st.builds(lambda t: f"s = {t!r}", nasty_text),                         # valid Python around any text
    nasty_text,
)
field = st.one_of(nasty_text, nasty_text, json_values)
any_record = st.fixed_dictionaries(
    {"instruction": field, "reasoning": field, "intention": field, "code": st.one_of(code, code, json_values)},
    optional={"id": json_values, "language": st.one_of(st.sampled_from(["python", " Python ", "rust", ""]),
                                                       json_values), "prompt": field})
words = st.text(min_size=1, max_size=30).filter(str.strip)
decent = st.fixed_dictionaries({"instruction": words, "reasoning": words, "intention": words,
                                "code": st.builds(lambda t: f"s = {t!r}", st.text(max_size=30))})
# a record that would be kept but for one field: what slips through shows here
one_bad_field = st.builds(lambda r, name, value: {**r, name: value}, decent,
                          st.sampled_from(["instruction", "reasoning", "intention", "code", "id", "language"]),
                          st.one_of(nasty_text, code, json_values))
record = st.one_of(any_record, decent, one_bad_field, one_bad_field)
raw_records = st.lists(st.one_of(record, record, record, json_values), min_size=1, max_size=6)


def assert_one_line(err):
    assert "\n" not in str(err) and str(err), str(err)


def assert_fits_the_template(tokenizer, record, max_len):
    json.dumps(record, ensure_ascii=False).encode("utf-8")  # writable
    ids = np.asarray(tokenize_examples(tokenizer, [record])[0])
    assert len(ids) <= max_len
    assert ids[0] == tokenizer.bos_token_id and (ids == tokenizer.bos_token_id).sum() == 1
    assert ids[-1] == tokenizer.eos_token_id and (ids == tokenizer.eos_token_id).sum() == 1
    assert (ids == tokenizer.pad_token_id).sum() == 0
    positions = []
    for tag in TAGS:
        hits = np.flatnonzero(ids == tokenizer.convert_tokens_to_ids(tag))
        assert len(hits) == 1, (tag, record)
        positions.append(hits[0])
    assert positions == sorted(positions)


@FUZZ
@given(raw=raw_records, max_len=st.sampled_from([32, 256]))
def test_filter_drops_with_a_reason_or_keeps_a_well_formed_example(raw, max_len, prepared_tokenizer):
    from reasoning_sft.data.filtering import filter_records

    tokenizer, _ = prepared_tokenizer
    kept, sections, report = filter_records(raw, tokenizer, max_len)
    assert report["input_records"] == len(raw) == report["kept"] + report["dropped"]
    assert report["dropped"] == sum(report["drop_reasons"].values()) and len(kept) == len(sections)
    assert all(DROP_REASON.match(reason) for reason in report["drop_reasons"]), report["drop_reasons"]
    for r in kept:
        assert_fits_the_template(tokenizer, r, max_len)


def file_bytes(values, layout, bom, crlf, blank_lines, ensure_ascii, damage, gzipped):
    """A raw data file of `values` with the given variations; damage: None or (kind, position)."""
    if layout == "array":
        text = json.dumps(values, ensure_ascii=ensure_ascii)
    else:
        lines = [json.dumps(v, ensure_ascii=ensure_ascii) for v in values]
        text = ("\n" + " \n" * blank_lines).join(lines) + "\n" + "\n" * blank_lines
    if crlf:
        text = text.replace("\n", "\r\n")
    data = (b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8", "surrogatepass")
    if damage is not None:
        kind, at = damage
        at = int(at * len(data))
        data = {"truncate": data[:at], "invalid_utf8": data[:at] + b"\xff\xfe" + data[at:],
                "garbage_line": data[:at] + b"\n}{ not json\n" + data[at:],
                "deep": b"[" * 100_000 + b"]" * 100_000, "big_int": b"[" + b"9" * 5000 + b"]"}[kind]
    if gzipped:
        data = gzip.compress(data)
        if damage is not None and damage[0] == "truncate":
            data = data[:max(2, int(damage[1] * len(data)))]
    return data


@FUZZ
@given(values=st.lists(st.one_of(record, json_values), min_size=1, max_size=5),
       layout=st.sampled_from(["array", "jsonl"]), bom=st.booleans(), crlf=st.booleans(),
       blank_lines=st.integers(0, 2), ensure_ascii=st.booleans(), gzipped=st.booleans(),
       damage=st.one_of(st.none(), st.tuples(st.sampled_from(["truncate", "invalid_utf8", "garbage_line", "deep",
                                                              "big_int"]), st.floats(0, 1))))
def test_the_reader_reads_or_says_why_in_one_line(values, layout, bom, crlf, blank_lines, ensure_ascii, gzipped,
                                                  damage):
    assume(not (layout == "jsonl" and isinstance(values[0], list)))  # that file starts with "[": a JSON array
    data = file_bytes(values, layout, bom, crlf, blank_lines, ensure_ascii, damage, gzipped)
    fd, path = tempfile.mkstemp(suffix=".jsonl")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        try:
            got = read_records(path)
        except UserError as err:
            assert_one_line(err)
            # only damage is refused, or lone surrogates written raw (that is not UTF-8)
            assert damage is not None or not (ensure_ascii or writable(json.dumps(values, ensure_ascii=False))), err
            return
    finally:
        os.remove(path)
    if damage is None:  # ... BOM, CRLF, blank lines, gzip, U+2028 in strings: the same values come back
        assert json.dumps(got) == json.dumps(values)
    for value in got:
        clean, reason = validate(value)
        assert (clean is None) != (reason is None)


def test_cli_pathological_file_is_one_line_and_exit_2(tmp_path, tokenizer_dir):
    (tmp_path / "deep.json").write_bytes(b"[" * 100_000 + b"]" * 100_000)
    proc = run_script("filter_data.py", "--json", "deep.json", "--tokenizer", tokenizer_dir, "--out_dir", "out",
                      "--max_len", "256", cwd=tmp_path)
    line = our_error_line(proc, "filter_data.py")
    assert "deep.json: malformed JSON (nested too deeply" in line
    assert not (tmp_path / "out").exists()


def test_a_messy_file_keeps_the_good_records_and_names_every_drop(tmp_path, tokenizer_dir):
    """BOM, CRLF, blank lines, U+2028 inside strings, NaN, lone surrogates, special-token literals, a list as id."""
    import filter_data

    good = {"instruction": "Add\u2028two numbers.", "reasoning": "One operator.", "intention": "Return a + b.",
            "code": "def add(a, b):\r\n    return a + b"}
    lines = [json.dumps(dict(good, id=float("nan")), ensure_ascii=False),
             "",
             json.dumps(dict(good, code="print('</s>')")),
             json.dumps(dict(good, reasoning="bad \ud800 half")),
             json.dumps(dict(good, intention=["not", "text"])),
             json.dumps(dict(good, instruction="Other task <code> inline")),
             json.dumps(dict(good, instruction="Subtract.", code="def sub(a, b):\n    return a - b")),
             "  ", json.dumps(7), json.dumps(dict(good, instruction="Listed id.", id=[1, 2]))]
    (tmp_path / "messy.jsonl").write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode("utf-8") + b"\r\n")
    out = tmp_path / "out"
    assert filter_data.main(["--json", str(tmp_path / "messy.jsonl"), "--tokenizer", str(tokenizer_dir),
                             "--out_dir", str(out), "--max_len", "256", "--no_plot"]) == 0
    report = json.loads((out / "filter_report.json").read_text())
    assert report["drop_reasons"] == {"special_token_in_code": 1, "bad_unicode_reasoning": 1,
                                      "non_string_intention": 1, "tag_in_instruction": 1, "not_an_object": 1,
                                      "bad_id": 1}
    kept = json.loads((out / "data.json").read_text(encoding="utf-8"))
    assert [r["instruction"] for r in kept] == ["Add\u2028two numbers.", "Subtract."]
    assert kept[0]["id"] == "nan" and kept[0]["code"] == "def add(a, b):\r\n    return a + b"


def test_an_id_nested_as_deep_as_json_reads_is_dropped_not_a_crash():
    """Python's JSON reader accepts ~990 levels from a shallow stack; str() of such an id overflowed the stack."""
    deep_id = dict(instruction="a", reasoning="b", intention="c", code="x = 1", id=nested(990))
    assert validate(deep_id) == (None, "bad_id")
    assert validate(dict(deep_id, id=7))[0]["id"] == "7"
