"""Stage 2: drop invalid records, de-duplicate, and fit every example into --max_len tokens.

    python filter_data.py --json examples/sample.jsonl --tokenizer demo_out/tokenizer \
        --out_dir demo_out/filtered --max_len 1024

Writes OUT/data.json (clean records), OUT/filter_report.json (counts per drop reason,
token-length statistics before/after) and OUT/length_histogram.png. Only the reasoning
is ever shortened; --no_truncate drops over-long records instead.
"""

import argparse
import json
import os
import time

from reasoning_sft.artifacts import (
    FILTER_REPORT,
    atomic_output_dir,
    check_output_dir,
    load_prepared_tokenizer,
    prepared_tokenizer_meta,
    write_json,
)
from reasoning_sft.data.filtering import filter_records
from reasoning_sft.data.records import read_records
from reasoning_sft.data.template import TEMPLATE_VERSION
from reasoning_sft.errors import UserError, add_verbose_flag, run_cli


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", required=True, help="raw records: JSON array or JSON Lines, optionally gzipped")
    p.add_argument("--tokenizer", required=True, help="directory written by prepare_llamatokenizer.py")
    p.add_argument("--out_dir", required=True)
    p.add_argument("--max_len", type=int, required=True, help="max tokens per example (BOS..EOS)")
    p.add_argument("--no_truncate", action="store_true",
                   help="drop over-long records instead of shortening the reasoning")
    p.add_argument("--no_plot", action="store_true", help="skip length_histogram.png")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out_dir")
    add_verbose_flag(p)
    args = p.parse_args(argv)
    if args.max_len < 16:
        p.error("--max_len must be at least 16")
    return args


def main(argv=None):
    args = parse_args(argv)
    t0 = time.time()
    check_output_dir(args.out_dir, args.overwrite)
    prepared_tokenizer_meta(args.tokenizer)  # cheap checks first: a bad input fails fast, before the slow load
    raw = read_records(args.json)
    tokenizer, tok_meta = load_prepared_tokenizer(args.tokenizer)
    kept, sections, report = filter_records(raw, tokenizer, args.max_len, truncate=not args.no_truncate)
    if not kept:
        raise UserError(f"{args.json}: no record survived the filter (drops: {report['drop_reasons']}); "
                        "check the field names and --max_len")
    report.update(source=os.path.abspath(args.json), tokenizer_fingerprint=tok_meta["fingerprint"],
                  template_version=TEMPLATE_VERSION, seconds=round(time.time() - t0, 2))
    with atomic_output_dir(args.out_dir, overwrite=args.overwrite) as tmp:
        with open(os.path.join(tmp, "data.json"), "w", encoding="utf-8") as f:
            json.dump(kept, f, ensure_ascii=False)
        write_json(os.path.join(tmp, FILTER_REPORT), report)
        if not args.no_plot:
            from reasoning_sft.plots import length_histogram
            length_histogram(sections, args.max_len, os.path.join(tmp, "length_histogram.png"))
    after = report["tokens_after"]
    print(f"filter: {report['input_records']} records -> {report['kept']} kept, {report['dropped']} dropped "
          f"{report['drop_reasons']}, {report['reasoning_truncated']} reasoning truncated; "
          f"{after['total']} tokens (max {after['max']} <= {args.max_len}) -> {args.out_dir} "
          f"[{report['seconds']}s]")
    return 0


if __name__ == "__main__":
    run_cli(main)
