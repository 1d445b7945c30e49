"""Reading raw datasets (JSON array or JSON Lines, optionally gzipped) and validating records.

Errors name the file and the line (or record index) and say what to do, because a user
staring at a 2 GB JSONL needs to know where to look.
"""

import ast
import gzip
import json
import os
import zlib

from reasoning_sft.data.template import TAGS
from reasoning_sft.errors import UserError

FIELDS = ("instruction", "reasoning", "intention", "code")
INSTRUCTION_ALIASES = ("instruction", "prompt", "problem", "question")
DEFAULT_LANGUAGE = "python"


def _read_text(path):
    if not os.path.exists(path):
        raise UserError(f"{path}: no such file")
    if os.path.isdir(path):
        raise UserError(f"{path}: is a directory, expected a .json/.jsonl(.gz) file")
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":  # gzip magic, whatever the file is called
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise UserError(f"{path}: corrupt gzip data ({err})") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise UserError(f"{path}:{line}: invalid UTF-8 (byte offset {err.start}); "
                        "re-encode the file as UTF-8") from None


def read_records(path):
    """All records of a JSON array or JSON Lines file, as a list (items may be any JSON value)."""
    text = _read_text(path)
    stripped = text.lstrip()
    if not stripped:
        raise UserError(f"{path}: the file is empty; expected a JSON array or JSON Lines of records")
    if stripped[0] == "[":
        records = _loads(text, path, "malformed JSON")
    else:
        records = []
        # lines end at "\n" only: str.splitlines() would also cut at U+2028, U+0085 ... which JSON
        # allows unescaped inside strings (json.dumps(ensure_ascii=False) writes them so)
        for lineno, line in enumerate(text.split("\n"), start=1):
            if line.strip():
                records.append(_loads(line, f"{path}:{lineno}", "malformed JSON Lines record", lineno))
    if not records:
        raise UserError(f"{path}: no records in the file")
    return records


def _loads(text, where, what, lineno=None):
    """json.loads, every failure one UserError naming the place (line:column where json knows it)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        place = f"{where}:{err.colno}" if lineno else f"{where}:{err.lineno}:{err.colno}"
        raise UserError(f"{place}: {what} ({err.msg})") from None
    except RecursionError:
        raise UserError(f"{where}: {what} (nested too deeply for Python's JSON reader)") from None
    except ValueError as err:  # e.g. an integer of more than 4300 digits
        raise UserError(f"{where}: {what} ({err})") from None


def _instruction_key(record):
    for key in INSTRUCTION_ALIASES:
        if key in record:
            return key
    return None


def _normalize(field, value):
    if field == "code":
        # keep the first line's indentation; drop blank lines around the program
        return value.strip("\r\n").rstrip()
    return value.strip()


def writable(text):
    """False for a str holding lone surrogates (JSON escapes like "\\ud800"): not UTF-8, no tokenizer takes it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def validate(record, special_tokens=None):
    """(clean record, None) for a valid record, or (None, drop reason).

    The clean record has exactly: id (if given), language, instruction, reasoning, intention, code.
    `special_tokens`: a compiled regex for the literals a tokenizer would turn into a special id (its
    "</s>", "<pad>" ...; filtering.special_literals); a field holding one would put an EOS or pad in
    the middle of the example.
    """
    if not isinstance(record, dict):
        return None, "not_an_object"
    clean = {}
    for field in FIELDS:
        key = _instruction_key(record) if field == "instruction" else field
        if key is None or key not in record:
            return None, f"missing_{field}"
        value = record[key]
        if not isinstance(value, str):
            return None, f"non_string_{field}"
        if not writable(value):
            return None, f"bad_unicode_{field}"
        value = _normalize(field, value)
        if not value:
            return None, f"empty_{field}"
        if any(tag in value for tag in TAGS):
            return None, f"tag_in_{field}"
        if special_tokens is not None and special_tokens.search(value):
            return None, f"special_token_in_{field}"
        clean[field] = value
    language = record.get("language", DEFAULT_LANGUAGE)
    if not isinstance(language, str) or not language.strip() or not writable(language):
        return None, "bad_language"
    language = language.strip().lower()
    if language == "python" and not python_parses(clean["code"]):
        return None, "python_syntax_error"
    out = {}
    if "id" in record and record["id"] is not None:
        if not isinstance(record["id"], (str, int, float)):  # a list or object is no id (and str() of a
            return None, "bad_id"                           # deeply nested one overflows the stack)
        out["id"] = str(record["id"])
        if not writable(out["id"]):
            return None, "bad_unicode_id"
    out["language"] = language
    out.update(clean)
    return out, None


def syntax_error(code):
    """None if `code` parses as Python, else a short message ("line 3: invalid syntax").

    Never raises: the data stages and the generation checks both judge untrusted text with it.
    """
    try:
        ast.parse(code)
    except SyntaxError as err:
        return f"line {err.lineno}: {err.msg}"
    except ValueError as err:  # e.g. NUL bytes in the source
        return str(err)
    except RecursionError:  # e.g. "x = " + "-" * 3000 + "1": the parser's own recursion overflows
        return "nested too deeply to parse"
    except MemoryError:
        return "too large to parse"
    return None


def python_parses(code):
    return syntax_error(code) is None


def content_key(record):
    """What makes two records exact duplicates (the id does not count)."""
    return (record["language"],) + tuple(record[f] for f in FIELDS)
