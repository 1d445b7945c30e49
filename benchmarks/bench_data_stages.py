"""Throughput of the data stages (filter_data.py + encode_dataset.py) against the raw fast tokenizer.

    python benchmarks/bench_data_stages.py --records 50000 --out_dir bench_out --breakdown

What it does, offline and deterministically (only the timings vary from run to run):

1. builds a tiny Llama-style tokenizer (reasoning_sft.demo.tiny_llama) trained on --corpus
   (examples/sample.jsonl), asking for --vocab_size tokens (the BPE trainer stops early when
   the corpus runs out of merges; the actual size is printed), and runs stage 1 on it
   (prepare_llamatokenizer.main);
2. synthesizes --records raw records from the corpus (index-dependent words in the instruction
   and reasoning, so there are no exact duplicates; every --long_every-th record gets a
   reasoning of --long_chars characters, so a few percent exceed --max_len and are truncated)
   and writes them to OUT/raw.jsonl;
3. times filter_data.py and encode_dataset.py (--num_proc = all cores) end to end, wall clock,
   each as the command a user types: `python filter_data.py ...` in a fresh process that runs
   the script's main(argv), reading, writing, interpreter start-up and imports included (the
   fixed part is printed separately). A fresh process matters: called inside this process,
   encode's forked workers would inherit a tokenizer whose thread pool filter had already used;
4. measures the ceiling: the raw batched fast tokenizer (`tokenizer(texts)` in batches of 1000,
   add_special_tokens=True) on the exact full example texts of the filtered records, best of
   --ceiling_repeats (so a noisy neighbour can only lower the reported ratio);
5. prints a table (records, tokens, seconds, tokens/s, CPU seconds) and the ratio
   (filter+encode tokens/s) / (raw tokenizer tokens/s), and writes OUT/results.json.
   --breakdown then times the stages' library calls one by one in this process (where the
   time goes); --profile runs the stages under cProfile (OUT/filter.prof, OUT/encode.prof).

Tokens of the stages = total_tokens of the encoded dataset's manifest (BOS..EOS). The raw
tokenizer produces the same ids without the EOS the template appends as an id, so its count is
total_tokens - rows. CPU seconds = user + system time of the step's process and its workers.
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

from reasoning_sft.demo.pipeline import REPO, run_stage, tokenizer_argv

# Index-dependent words: 64**3 = 262144 distinct (w1, w2, w3) triples, and the index itself is in the text too.
WORDS = """amber basin cedar delta ember fjord garnet harbor island jasper kettle lagoon meadow nectar
orchid pebble quartz raven summit timber umber valley willow xenon yarrow zephyr anchor bramble
canyon dune falcon glacier heron indigo juniper kestrel lantern marble nimbus onyx prairie quill
ridge saffron tundra upland vervain walnut yonder zircon acorn birch cobalt drift elm flint grove
hazel iris jade kelp lotus mango nova""".split()
assert len(WORDS) == 64 and len(set(WORDS)) == 64

CEILING = "raw batched fast tokenizer (ceiling)"


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info():
    import datasets
    import tokenizers
    import transformers

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {"nproc": usable, "cpu_count": os.cpu_count(), "cpu": cpu_model(), "python": platform.python_version(),
            "platform": platform.platform(), "tokenizers": tokenizers.__version__,
            "transformers": transformers.__version__, "datasets": datasets.__version__}


def synthesize(sample, n, long_every, long_chars):
    """n raw records built deterministically from the sample records."""
    base = [r for r in sample if isinstance(r, dict) and all(isinstance(r.get(k), str) for k in
                                                             ("instruction", "reasoning", "intention", "code"))]
    if not base:
        raise SystemExit("the corpus has no usable records (instruction/reasoning/intention/code strings)")
    # donors for the over-long reasonings: the longest reasonings of the corpus
    donors = sorted(base, key=lambda r: -len(r["reasoning"]))[:max(1, len(base) // 10)]
    out = []
    for i in range(n):
        r = base[i % len(base)]
        w1, w2, w3 = WORDS[i % 64], WORDS[(i // 64) % 64], WORDS[(i // 4096) % 64]
        instruction = f"{r['instruction']} This is for the {w1} {w2} service (ticket {w3}-{i})."
        reasoning = f"The {w1} team needs this in the {w2} module, so I'll keep it self-contained. {r['reasoning']}"
        if long_every and i % long_every == long_every - 1:
            k = i // long_every
            while len(reasoning) < long_chars:
                reasoning += "\n\n" + donors[k % len(donors)]["reasoning"]
                k += 1
        out.append({"id": f"bench-{i}", "instruction": instruction, "reasoning": reasoning,
                    "intention": r["intention"], "code": r["code"], "language": r.get("language", "python")})
    return out


def cpu_seconds():
    """User + system CPU time of this process and of its reaped children (stage processes, encode's workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def machine_cpu():
    """(busy CPU seconds of the whole machine, CPU seconds stolen by the hypervisor) so far, from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return 0.0, 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields + [0] * (8 - len(fields))
    hz = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / hz, steal / hz


def timed(fn):
    """(result, (wall s, CPU s, CPU s of other processes, stolen s)) of fn().

    The last two say how much the machine was disturbed while fn ran: busy time of the whole
    machine that was not ours, and time the hypervisor gave to other guests.
    """
    (b0, s0), c0, t0 = machine_cpu(), cpu_seconds(), time.perf_counter()
    result = fn()
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    b1, s1 = machine_cpu()
    return result, (wall, cpu, max(0.0, b1 - b0 - cpu), s1 - s0)


def run_script(script, argv, profile_path=None):
    """`python SCRIPT ARGV` in a fresh process, exactly as a user runs it."""
    cmd = [sys.executable] + (["-m", "cProfile", "-o", profile_path] if profile_path else []) + [script] + argv
    print("$ python " + " ".join(os.path.relpath(a, REPO) if os.path.isabs(a) else a for a in cmd[1:]), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO)


def raw_tokenizer_tokens(tokenizer, texts, batch=1000):
    """Tokens the plain batched fast tokenizer produces for `texts` (the ceiling's work)."""
    tokens = 0
    for start in range(0, len(texts), batch):
        enc = tokenizer(texts[start:start + batch], add_special_tokens=True)["input_ids"]
        tokens += sum(map(len, enc))
    return tokens


def breakdown(paths, max_len, num_proc):
    """The stages' library calls timed one by one in this process: [(step, tokens it tokenizes, timing)].

    Unlike the real encode stage, its map runs in a process whose tokenizer thread pool has
    already been used, so the forked workers tokenize single-threaded.
    """
    import shutil

    from reasoning_sft.artifacts import load_prepared_tokenizer
    from reasoning_sft.data import filtering
    from reasoning_sft.data.encoding import encode_records
    from reasoning_sft.data.records import python_parses, read_records
    from reasoning_sft.plots import length_histogram

    scratch = os.path.join(os.path.dirname(paths["raw.jsonl"]), "breakdown")
    shutil.rmtree(scratch, ignore_errors=True)
    os.makedirs(scratch)
    rows = []

    def step(name, fn, tokens=lambda result: ""):
        result, m = timed(fn)
        rows.append((name, tokens(result), m))
        return result

    tok, _ = load_prepared_tokenizer(paths["tokenizer"])
    raw = step("filter: read raw JSONL", lambda: read_records(paths["raw.jsonl"]))
    valid, _ = step("filter: validate + de-duplicate", lambda: filtering.validate_all(raw, tok))
    records = [r for _, r in valid]
    step("  (of which ast.parse of the code)", lambda: [python_parses(r["code"]) for r in records])
    sections = step("filter: measure (tokenize every example)", lambda: filtering.measure(tok, records),
                    lambda result: sum(sum(s.values()) for s in result))
    over = [(r, sum(s.values())) for r, s in zip(records, sections) if sum(s.values()) > max_len]
    # tokens: the first pass over the over-long texts + the pass that proves the cut ones fit (+ any further round)
    step(f"filter: fit the {len(over)} over-long ones (re-tokenize)",
         lambda: filtering.fit_records(tok, [r for r, _ in over], max_len),
         lambda result: f"{sum(n for _, n in over)} + {sum(len(ids) for _, ids in result if ids is not None)}")
    kept = read_records(os.path.join(paths["filtered"], "data.json"))

    def write_json():
        with open(os.path.join(scratch, "data.json"), "w", encoding="utf-8") as f:
            json.dump(kept, f, ensure_ascii=False)

    step("filter: write data.json", write_json)
    step("filter: length_histogram.png", lambda: length_histogram(sections, max_len, os.path.join(scratch, "h.png")))
    step("encode: read data.json", lambda: read_records(os.path.join(scratch, "data.json")))
    ds = step(f"encode: datasets map, {num_proc} procs (tokenize, labels, Arrow)",
              lambda: encode_records(kept, tok, num_proc), lambda result: sum(result["length"][:]))
    step("encode: save_to_disk", lambda: ds.save_to_disk(os.path.join(scratch, "arrow_dataset")))
    return rows


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=int, default=50000, help="raw records to synthesize (>= 50000 for the report)")
    p.add_argument("--out_dir", default="bench_out", help="work directory; its contents are replaced")
    p.add_argument("--corpus", default=os.path.join(REPO, "examples", "sample.jsonl"),
                   help="records the tokenizer is trained on and the synthetic records are built from")
    p.add_argument("--vocab_size", type=int, default=32000,
                   help="BPE vocabulary asked of the tiny tokenizer (CodeLlama has 32000; the trainer stops "
                        "earlier when the corpus runs out of merges, the actual size is printed)")
    p.add_argument("--max_len", type=int, default=2048)
    p.add_argument("--long_every", type=int, default=25,
                   help="every N-th record gets a reasoning of --long_chars characters (0: none)")
    p.add_argument("--long_chars", type=int, default=9000)
    p.add_argument("--num_proc", type=int, default=None, help="encode_dataset.py --num_proc (default: all cores)")
    p.add_argument("--ceiling_repeats", type=int, default=2, help="time the raw tokenizer N times, keep the fastest")
    p.add_argument("--breakdown", action="store_true", help="also time the stages' library calls one by one")
    p.add_argument("--profile", action="store_true",
                   help="run the stages under cProfile: OUT/filter.prof, OUT/encode.prof (slower; for hot spots)")
    return p.parse_args(argv)


def print_table(header, rows):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    for row in [header] + rows:
        print("  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths))))


def main(argv=None):
    args = parse_args(argv)
    from reasoning_sft.artifacts import load_prepared_tokenizer, read_json
    from reasoning_sft.data.records import read_records
    from reasoning_sft.data.template import full_text
    from reasoning_sft.demo import tiny_llama

    machine = machine_info()
    num_proc = args.num_proc or machine["nproc"]
    out = os.path.abspath(args.out_dir)
    os.makedirs(out, exist_ok=True)
    paths = {name: os.path.join(out, name) for name in ("tiny-llama", "tokenizer", "raw.jsonl", "filtered", "encoded")}

    # ---- setup (not timed): tokenizer, stage 1, raw records
    t0 = time.perf_counter()
    tiny_llama.build(args.corpus, paths["tiny-llama"], vocab_size=args.vocab_size)
    with open(os.path.join(paths["tiny-llama"], "tokenizer.json"), encoding="utf-8") as f:
        bpe_vocab = len(json.load(f)["model"]["vocab"])
    run_stage(tokenizer_argv(paths["tiny-llama"], paths["tokenizer"]))
    raw = synthesize(read_records(args.corpus), args.records, args.long_every, args.long_chars)
    with open(paths["raw.jsonl"], "w", encoding="utf-8") as f:
        for r in raw:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    del raw
    raw_mb = os.path.getsize(paths["raw.jsonl"]) / 1e6
    print(f"setup: BPE vocab {bpe_vocab} (asked {args.vocab_size}), {args.records} raw records ({raw_mb:.1f} MB) "
          f"-> {paths['raw.jsonl']} [{time.perf_counter() - t0:.1f}s]", flush=True)

    # ---- the stages, as a user runs them
    data_json = os.path.join(paths["filtered"], "data.json")
    filter_argv = ["--json", paths["raw.jsonl"], "--tokenizer", paths["tokenizer"], "--out_dir", paths["filtered"],
                   "--max_len", str(args.max_len), "--overwrite"]
    encode_argv = ["--json", data_json, "--tokenizer", paths["tokenizer"], "--encode_dir", paths["encoded"],
                   "--max_len", str(args.max_len), "--num_proc", str(num_proc), "--overwrite"]
    prof = (lambda name: os.path.join(out, f"{name}.prof")) if args.profile else (lambda name: None)
    _, m_filter = timed(lambda: run_script("filter_data.py", filter_argv, prof("filter")))
    _, m_encode = timed(lambda: run_script("encode_dataset.py", encode_argv, prof("encode")))
    # the fixed part of each stage: interpreter start-up, imports, loading the tokenizer
    startup = ("import datasets, encode_dataset, filter_data; from reasoning_sft.artifacts import "
               f"load_prepared_tokenizer; load_prepared_tokenizer({paths['tokenizer']!r})")
    _, m_startup = timed(lambda: subprocess.run([sys.executable, "-c", startup], check=True, cwd=REPO))

    report = read_json(os.path.join(paths["filtered"], "filter_report.json"), "filter report")
    manifest = read_json(os.path.join(paths["encoded"], "manifest.json"), "manifest")
    total_tokens, rows = manifest["total_tokens"], manifest["rows"]

    # ---- the ceiling: same tokenizer, same full texts, one plain batched call per 1000 texts
    tokenizer, _ = load_prepared_tokenizer(paths["tokenizer"])
    texts = [full_text(r) for r in read_records(data_json)]
    raw_tokens, m_raw = None, None
    for _ in range(max(1, args.ceiling_repeats)):
        raw_tokens, m = timed(lambda: raw_tokenizer_tokens(tokenizer, texts))
        if m_raw is None or m[0] < m_raw[0]:
            m_raw = m
    assert raw_tokens == total_tokens - rows, (raw_tokens, total_tokens, rows)  # the EOS the template appends

    n_in = report["input_records"]
    both = tuple(a + b for a, b in zip(m_filter, m_encode))
    table = [
        ("filter_data.py", n_in, total_tokens, m_filter),
        (f"encode_dataset.py --num_proc {num_proc}", rows, total_tokens, m_encode),
        ("filter + encode", n_in, total_tokens, both),
        (CEILING, len(texts), raw_tokens, m_raw),
    ]
    rate = {name: tokens / m[0] for name, _, tokens, m in table}
    cpu_rate = {name: tokens / m[1] for name, _, tokens, m in table}
    ratio = rate["filter + encode"] / rate[CEILING]
    cpu_ratio = cpu_rate["filter + encode"] / cpu_rate[CEILING]

    print()
    print(f"machine: nproc={machine['nproc']}, {machine['cpu']}, CPU only; python {machine['python']}, "
          f"tokenizers {machine['tokenizers']}, transformers {machine['transformers']}, datasets {machine['datasets']}")
    print(f"data: {n_in} raw records ({raw_mb:.1f} MB) -> {report['kept']} kept ({report['dropped']} dropped, "
          f"{report['reasoning_truncated']} with the reasoning truncated), --max_len {args.max_len}; tokenizer "
          f"{len(tokenizer)} ids ({bpe_vocab} BPE, asked {args.vocab_size}, + 6 tags + pad)")
    print_table(("step", "records", "tokens", "seconds", "tokens/s", "cpu s", "tokens/cpu s", "others' cpu s"),
                [(name, n, tokens, f"{s:.2f}", f"{tokens / s:.0f}", f"{c:.2f}", f"{tokens / c:.0f}", f"{o:.1f}")
                 for name, n, tokens, (s, c, o, _) in table])
    print(f"fixed part of each stage's seconds (python start-up, imports, loading the tokenizer): "
          f"{m_startup[0]:.2f} s wall, {m_startup[1]:.2f} cpu s")
    print(f"ratio (filter+encode tokens/s) / (raw tokenizer tokens/s) = {ratio:.3f}   "
          f"(per CPU second: {cpu_ratio:.3f})")
    print(f"seconds are wall clock; cpu s = this step's processes; others' cpu s = busy time of the rest of the "
          f"machine meanwhile (a disturbed run shows here); hypervisor steal: {both[3] + m_raw[3]:.1f} s", flush=True)

    results = {
        "command": "python benchmarks/bench_data_stages.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine, "records": n_in, "kept": report["kept"], "dropped": report["dropped"],
        "reasoning_truncated": report["reasoning_truncated"], "max_len": args.max_len,
        "vocab_size_asked": args.vocab_size, "bpe_vocab_size": bpe_vocab, "tokenizer_len": len(tokenizer),
        "num_proc": num_proc, "total_tokens": total_tokens, "raw_tokenizer_tokens": raw_tokens,
        "stages": [{"step": name, "records": n, "tokens": tokens, "seconds": round(s, 3),
                    "tokens_per_s": round(tokens / s), "cpu_seconds": round(c, 3),
                    "tokens_per_cpu_s": round(tokens / c), "others_cpu_seconds": round(o, 2),
                    "steal_seconds": round(st, 2)}
                   for name, n, tokens, (s, c, o, st) in table],
        "startup_seconds": round(m_startup[0], 3), "startup_cpu_seconds": round(m_startup[1], 3),
        "ratio": round(ratio, 4), "cpu_ratio": round(cpu_ratio, 4),
    }

    if args.breakdown:
        print("\nbreakdown (library calls timed one by one in this process):", flush=True)
        steps = breakdown(paths, args.max_len, num_proc)
        print_table(("step", "tokens tokenized", "seconds", "cpu s", "others' cpu s"),
                    [(name, tokens, f"{s:.2f}", f"{c:.2f}", f"{o:.1f}") for name, tokens, (s, c, o, _) in steps]
                    + [(CEILING + ", for scale", raw_tokens, f"{m_raw[0]:.2f}", f"{m_raw[1]:.2f}", f"{m_raw[2]:.1f}")])
        results["breakdown"] = [{"step": name, "tokens": tokens, "seconds": round(s, 3), "cpu_seconds": round(c, 3),
                                 "others_cpu_seconds": round(o, 2)} for name, tokens, (s, c, o, _) in steps]

    with open(os.path.join(out, "results.json"), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
