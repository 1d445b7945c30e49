"""Stage 2 logic: validate, deduplicate, and fit every example into max_len tokens.

Code, instruction and intention are never cut (a cut program is a wrong target); when the
example is too long only the reasoning is shortened, at a line or sentence boundary when
one is near. The lengths are measured with the exact template and tokenizer that
encode_dataset.py uses, so "every encoded sequence is <= max_len" holds by construction.
"""

import collections
import re

import numpy as np

from reasoning_sft.data.records import content_key, validate
from reasoning_sft.data.template import TAGS, full_text, prompt_text, section_lengths, tag_ids, tokenize_examples
from reasoning_sft.progress import progress

BATCH = 1000
# A boundary this close to the token cut (in characters) is preferred over a mid-sentence cut.
BOUNDARY_WINDOW = 300
_BOUNDARY = re.compile(r"\n|(?<=[.!?;:])\s")


def special_literals(tokenizer):
    """A regex for text the tokenizer turns into a special or added id ("</s>", "<pad>" ...), except the tags
    (reported as tag_in_*); None without a tokenizer.

    One alternation, not a substring test per literal: the demo's tokenizer has 260 such literals (its
    byte tokens <0x00>..<0xFF> are added ones), and 260 `in` tests per field took 12 s of CPU on 50,000
    records where the regex takes 0.1 s (measured on the data-stage benchmark's records).
    """
    if tokenizer is None:
        return None
    literals = (set(tokenizer.all_special_tokens) | set(tokenizer.get_added_vocab())) - set(TAGS)
    if not literals:
        return None
    return re.compile("|".join(map(re.escape, sorted(literals, key=len, reverse=True))))


def validate_all(raw_records, tokenizer=None):
    """Valid, de-duplicated records (with their input index) and a Counter of drop reasons."""
    kept, drops, seen = [], collections.Counter(), set()
    specials = special_literals(tokenizer)
    for index, raw in enumerate(progress(raw_records, desc="validate", unit="rec")):
        record, reason = validate(raw, specials)
        if record is None:
            drops[reason] += 1
            continue
        key = content_key(record)
        if key in seen:
            drops["duplicate"] += 1
            continue
        seen.add(key)
        kept.append((index, record))
    return kept, drops


def measure(tokenizer, records, desc="tokenize"):
    """Token count per section (prompt, reasoning, intention, code, eos) of each example."""
    tags, out = tag_ids(tokenizer), []
    for start in progress(range(0, len(records), BATCH), desc=desc, unit="batch"):
        out.extend(section_lengths(ids, tags) for ids in tokenize_examples(tokenizer, records[start:start + BATCH]))
    return out


def _cut_point(reasoning, char_cut):
    """Largest line/sentence boundary at or before char_cut, if one is near; else char_cut."""
    best = None
    for m in _BOUNDARY.finditer(reasoning, max(0, char_cut - BOUNDARY_WINDOW), char_cut + 1):
        if m.start() <= char_cut:
            best = m.start()
    return best if best else char_cut


def _shorten(record, input_ids, offsets, max_len):
    """The record with its reasoning cut by the tokens it is over max_len, or None when it cannot shrink enough.

    (input_ids, offsets) encode full_text(record); the caller re-measures the result.
    """
    length = len(input_ids) + 1
    r_start = len(prompt_text(record["instruction"]))
    r_end = r_start + len(record["reasoning"])
    in_reasoning = [end for start, end in offsets if start >= r_start and end <= r_end and end > start]
    keep = len(in_reasoning) - (length - max_len)
    if keep < 1:
        return None
    char_cut = in_reasoning[keep - 1] - r_start
    cut = _cut_point(record["reasoning"], char_cut)
    shortened = record["reasoning"][:cut].rstrip()
    if not shortened:
        shortened = record["reasoning"][:char_cut].rstrip()
    if not shortened:
        return None
    return dict(record, reasoning=shortened)


def _encode_with_offsets(tokenizer, records):
    enc = tokenizer([full_text(r) for r in records], add_special_tokens=True, return_offsets_mapping=True)
    return zip(enc["input_ids"], enc["offset_mapping"])


def fit_record(tokenizer, record, length, max_len):
    """(record, truncated?) fitted into max_len, or (None, False) when code+instruction+intention alone are too long."""
    if length <= max_len:
        return record, False
    for _ in range(8):  # re-measure: a cut can change how the neighbouring text merges
        ids, offsets = next(iter(_encode_with_offsets(tokenizer, [record])))
        if len(ids) + 1 <= max_len:
            return record, True
        record = _shorten(record, ids, offsets, max_len)
        if record is None:
            return None, False
    return None, False


def fit_records(tokenizer, records, max_len):
    """fit_record for records longer than max_len, each round tokenized in batches (all cores).

    Returns per record (shortened record, its input ids with EOS), or (None, None) when it cannot fit.
    """
    out = [(None, None)] * len(records)
    active = list(enumerate(records))
    for _ in range(8):  # re-measure: a cut can change how the neighbouring text merges
        shorter = []
        for start in progress(range(0, len(active), BATCH), desc="fit max_len", unit="batch"):
            batch = active[start:start + BATCH]
            for (i, record), (ids, offsets) in zip(batch, _encode_with_offsets(tokenizer, [r for _, r in batch])):
                if len(ids) + 1 <= max_len:
                    out[i] = (record, ids + [tokenizer.eos_token_id])
                    continue
                record = _shorten(record, ids, offsets, max_len)
                if record is not None:
                    shorter.append((i, record))
        active = shorter
        if not active:
            break
    return out


def length_stats(lengths):
    if not lengths:
        return {"count": 0}
    a = np.asarray(lengths)
    return {"count": int(a.size), "min": int(a.min()), "mean": round(float(a.mean()), 1),
            "median": int(np.median(a)), "p95": int(np.percentile(a, 95)), "max": int(a.max()),
            "total": int(a.sum())}


def filter_records(raw_records, tokenizer, max_len, truncate=True):
    """(kept records, their section token counts, report dict)."""
    valid, drops = validate_all(raw_records, tokenizer)
    records = [r for _, r in valid]
    sections = measure(tokenizer, records)
    lengths = [sum(s.values()) for s in sections]
    # only the over-long ones are tokenized again (with offsets), a batch at a time
    over = [i for i, length in enumerate(lengths) if length > max_len] if truncate else []
    fitted = dict(zip(over, fit_records(tokenizer, [records[i] for i in over], max_len)))
    tags = tag_ids(tokenizer)
    kept, kept_sections, cut = [], [], []
    for i, (record, length, counts) in enumerate(zip(records, lengths, sections)):
        if length > max_len:
            record, ids = fitted.get(i, (None, None))
            if record is None:
                drops["too_long"] += 1
                continue
            # the shortened record changed length: count the ids that proved it fits
            cut.append(len(kept))
            counts = section_lengths(ids, tags)
        kept.append(record)
        kept_sections.append(counts)
    kept_lengths = [sum(s.values()) for s in kept_sections]
    report = {
        "input_records": len(raw_records),
        "kept": len(kept),
        "dropped": sum(drops.values()),
        "drop_reasons": dict(sorted(drops.items(), key=lambda kv: -kv[1])),
        "reasoning_truncated": len(cut),
        "max_len": max_len,
        "truncate": truncate,
        "tokens_before": length_stats(lengths),
        "tokens_after": length_stats(kept_lengths),
    }
    return kept, kept_sections, report
