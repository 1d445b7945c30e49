"""Stage 3: tokenize filtered records into an Arrow dataset the trainers read.

    python encode_dataset.py --json demo_out/filtered/data.json --tokenizer demo_out/tokenizer \
        --encode_dir demo_out/encoded --max_len 1024

Writes ENCODE_DIR/arrow_dataset (datasets.save_to_disk; columns input_ids, labels with -100
on prompt tokens, length) and ENCODE_DIR/manifest.json (tokenizer fingerprint, template
version, max_len, rows, total and trained tokens). Trainers refuse a dataset whose
fingerprint does not match their --tokenizer_dir.
"""

import argparse
import os
import sys
import time

from reasoning_sft.artifacts import (
    DATASET_DIRNAME,
    FILTER_REPORT,
    MANIFEST,
    atomic_output_dir,
    check_output_dir,
    load_prepared_tokenizer,
    prepared_tokenizer_meta,
    read_json,
    write_json,
)
from reasoning_sft.data.encoding import encode_records, id_dtype, token_totals
from reasoning_sft.data.records import read_records, validate
from reasoning_sft.data.template import TEMPLATE_VERSION
from reasoning_sft.errors import UserError, add_verbose_flag, run_cli


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", required=True, help="data.json written by filter_data.py")
    p.add_argument("--tokenizer", required=True, help="directory written by prepare_llamatokenizer.py")
    p.add_argument("--encode_dir", required=True)
    p.add_argument("--max_len", type=int, required=True, help="the --max_len given to filter_data.py")
    p.add_argument("--num_proc", type=int, default=os.cpu_count(), help="tokenizer processes (default: all cores)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --encode_dir")
    add_verbose_flag(p)
    return p.parse_args(argv)


def checked_records(path, tok_meta, max_len):
    """Records of data.json, checked against the filter report written beside it."""
    report_path = os.path.join(os.path.dirname(os.path.abspath(path)), FILTER_REPORT)
    records = read_records(path)
    if os.path.exists(report_path):
        report = read_json(report_path, "filter report")
        if report.get("tokenizer_fingerprint") != tok_meta["fingerprint"]:
            raise UserError(f"{path} was filtered with tokenizer {report.get('tokenizer_fingerprint')}, not "
                            f"{tok_meta['fingerprint']}; re-run filter_data.py with this --tokenizer")
        if report.get("max_len", max_len) > max_len:
            raise UserError(f"{path} was filtered with --max_len {report['max_len']} > {max_len}; "
                            "re-run filter_data.py with the same --max_len")
        return records
    print(f"encode: warning: no {FILTER_REPORT} beside {path}; validating records here", file=sys.stderr)
    clean = []
    for index, record in enumerate(records):
        record, reason = validate(record)
        if record is None:
            raise UserError(f"{path}: record {index} is invalid ({reason}); run filter_data.py first")
        clean.append(record)
    return clean


def main(argv=None):
    args = parse_args(argv)
    t0 = time.time()
    check_output_dir(args.encode_dir, args.overwrite)
    # cheap checks first (input file, filter report vs tokenizer metadata), then the slow tokenizer load
    records = checked_records(args.json, prepared_tokenizer_meta(args.tokenizer), args.max_len)
    tokenizer, tok_meta = load_prepared_tokenizer(args.tokenizer)
    if not sys.stderr.isatty():  # our bars follow tqdm's TTY rule; datasets' own bars need switching off
        import datasets
        datasets.disable_progress_bars()
    dataset = encode_records(records, tokenizer, args.num_proc)
    lengths = dataset.data.column("length").to_numpy()  # column-wise: iterating dataset["length"] formats each row
    longest = int(lengths.max())
    if longest > args.max_len:
        over = int((lengths > args.max_len).sum())
        raise UserError(f"{over} examples are longer than --max_len {args.max_len} (longest {longest}); "
                        "run filter_data.py with the same --max_len and tokenizer")
    total, trained = token_totals(dataset)
    manifest = {
        "tokenizer_fingerprint": tok_meta["fingerprint"], "base_model": tok_meta["base_model"],
        "template_version": TEMPLATE_VERSION, "max_len": args.max_len, "rows": len(dataset),
        "total_tokens": total, "trained_tokens": trained, "longest": longest,
        "id_dtype": id_dtype(len(tokenizer)), "pad_token_id": tokenizer.pad_token_id,
        "source": os.path.abspath(args.json),
    }
    with atomic_output_dir(args.encode_dir, overwrite=args.overwrite) as tmp:
        dataset.save_to_disk(os.path.join(tmp, DATASET_DIRNAME))
        write_json(os.path.join(tmp, MANIFEST), manifest)
    print(f"encode: {len(dataset)} rows, {total} tokens ({trained} trained), longest {longest} <= {args.max_len} "
          f"-> {os.path.join(args.encode_dir, DATASET_DIRNAME)} [{time.time() - t0:.1f}s]")
    return 0


if __name__ == "__main__":
    run_cli(main)
