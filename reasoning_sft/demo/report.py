"""One static HTML page that shows a pipeline run: data stages, training, generations.

    python -m reasoning_sft.demo.report --out demo_out/report.html \
        --filtered demo_out/filtered --encoded demo_out/encoded \
        --run LoRA demo_out/lora demo_out/generations_lora.jsonl \
        --run "full fine-tuning" demo_out/full demo_out/generations_full.jsonl \
        [--pretrained demo_out/tiny-llama] [--timings demo_out/timings.json]

`make demo` ends with it. Everything on the page is read from the stages' own outputs
(filter_report.json, manifest.json, metrics.jsonl, train_config.json, generate.py's
per-prompt JSONL and summary). Images go to OUT_STEM_files/ beside the page, which is
written last, atomically.
"""

import argparse
import datetime
import html
import os
import re
import shutil

from reasoning_sft.artifacts import (
    FILTER_REPORT,
    MANIFEST,
    atomic_output_dir,
    read_json,
    read_jsonl,
    write_file_atomic,
)
from reasoning_sft.data.template import CLOSE, OPEN, TAGS
from reasoning_sft.errors import run_cli
from reasoning_sft.plots import SECTION_COLORS, loss_curves_compare, pretrain_curve
from reasoning_sft.serve.generation import summary_path

TAG_RE = re.compile("|".join(re.escape(t) for t in TAGS))
CSS = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 1.5em auto; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.5em 0; } td, th { border: 1px solid #ccc; padding: 0.25em 0.6em; }
th { background: #f4f4f4; text-align: left; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
.big { font-size: 1.3em; font-weight: 600; } .muted { color: #666; font-size: 0.9em; }
.side { display: grid; grid-template-columns: 1fr 1fr; gap: 1em; }
.card { border: 1px solid #ccc; border-radius: 6px; padding: 0.6em 0.8em; overflow: hidden; }
.card.ok { border-color: #2ca02c; } .card.bad { border-color: #d62728; }
.verdict { font-weight: 600; } .ok .verdict { color: #1a7f1a; } .bad .verdict { color: #c0392b; }
pre { white-space: pre-wrap; word-break: break-word; font-size: 0.82em; background: #fafafa; padding: 0.5em;
      max-height: 42em; overflow-y: auto; }
.tag { font-weight: 700; color: #fff; border-radius: 3px; padding: 0 2px; }
img { max-width: 100%; border: 1px solid #eee; }
"""


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="the HTML page to write (replaced if it exists)")
    p.add_argument("--filtered", required=True, help="filter_data.py's --out_dir")
    p.add_argument("--encoded", help="encode_dataset.py's --encode_dir")
    p.add_argument("--run", nargs=3, action="append", metavar=("NAME", "OUTPUT_DIR", "GENERATIONS"), required=True,
                   help="a training run's --output_dir and generate.py's --out for it (repeatable)")
    p.add_argument("--pretrained", help="a model dir pre-trained by reasoning_sft.demo.pretrain (the demo's base)")
    p.add_argument("--timings", help="seconds per stage, as demo.py writes them (timings.json)")
    p.add_argument("--title", default="reasoning-sft demo")
    return p.parse_args(argv)


# ---------------------------------------------------------------- reading the stages' outputs

def load_run(name, output_dir, generations):
    return {
        "name": name,
        "dir": output_dir,
        "rows": read_jsonl(os.path.join(output_dir, "metrics.jsonl"), "training metrics", torn_last_line_ok=True),
        "config": read_json(os.path.join(output_dir, "train_config.json"), "training config"),
        "generations": read_jsonl(generations, "generations (generate.py --out)"),
        "generations_path": generations,
        "summary": read_json(summary_path(generations), "generation summary"),
    }


def pick_examples(runs):
    """(passing, failing) generations to show side by side: (run name, row) each, or None.

    Best: one prompt that one model answers in the right format and another does not,
    preferably with code that parses. Else any passing output and any failing one.
    """
    pairs = []
    for i in range(min(len(r["generations"]) for r in runs)):
        rows = [(r["name"], r["generations"][i]) for r in runs]
        good = sorted((x for x in rows if x[1]["ok"]), key=lambda x: not x[1].get("syntax_ok"))
        bad = [x for x in rows if not x[1]["ok"]]
        if good and bad:
            pairs.append((good[0], bad[0]))
    if pairs:
        return min(pairs, key=lambda pair: not pair[0][1].get("syntax_ok"))  # first with parsing code
    good = sorted(((r["name"], row) for r in runs for row in r["generations"] if row["ok"]),
                  key=lambda x: not x[1].get("syntax_ok"))
    bad = next(((r["name"], row) for r in reversed(runs) for row in r["generations"] if not row["ok"]), None)
    return (good[0] if good else None), bad


# ---------------------------------------------------------------- HTML pieces

def esc(value):
    return html.escape(str(value))


def pct(k, n):
    return f"{k}/{n} ({k / n:.0%})" if n else "n/a"


def table(header, rows, numeric=()):
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f'<td class="n">{esc(c)}</td>' if i in numeric else f"<td>{esc(c)}</td>"
                                     for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def highlight(output):
    """The generated text, escaped, each tag a coloured label (colour of the section it opens/closes)."""
    parts, pos = [], 0
    for m in TAG_RE.finditer(output):
        parts.append(esc(output[pos:m.start()]))
        color = SECTION_COLORS[m.group(0).strip("</>")]
        parts.append(f'<span class="tag" style="background:{color}">{esc(m.group(0))}</span>')
        pos = m.end()
    parts.append(esc(output[pos:]))
    return "".join(parts)


def generation_card(picked, passing):
    if picked is None:
        what = "passes" if passing else "fails"
        return f'<div class="card"><p class="muted">No output {what} the check.</p></div>'
    name, row = picked
    verdict = "passes the format check" if row["ok"] else "fails the format check"
    errors = "".join(f"<li><code>{esc(e)}</code></li>" for e in row["errors"])
    syntax = {True: "code parses as Python", False: "code does not parse", None: "no code section"}[row["syntax_ok"]]
    return (f'<div class="card {"ok" if row["ok"] else "bad"}">'
            f'<p><b>{esc(name)}</b> &middot; <span class="verdict">{verdict}</span> &middot; {esc(syntax)}'
            f' &middot; {row["n_tokens"]} tokens, stopped at <code>{esc(row["stop"])}</code></p>'
            + (f"<p>errors:</p><ul>{errors}</ul>" if errors else "")
            + f'<p class="muted">prompt{" " + esc(row["id"]) if row.get("id") else ""}:</p>'
            f"<pre>{esc(row['instruction'])}\n\n{esc(OPEN['reasoning'])}</pre>"
            f'<p class="muted">generated:</p><pre>{highlight(row["output"])}</pre></div>')


def results_section(runs):
    rows = []
    for r in runs:
        s = r["summary"]
        n = s["outputs"]
        errors = ", ".join(f"{e} ({c})" for e, c in list(s["error_counts"].items())[:4]) or "none"
        rows.append([r["name"], pct(s["format_ok"], n), pct(s["syntax_ok"], n), s["mean_output_tokens"],
                     ", ".join(f"{k}: {v}" for k, v in s["stop_reasons"].items()), errors])
    settings = runs[0]["summary"].get("settings", {})
    decoding = "greedy" if not settings.get("temperature") else f"temperature {settings['temperature']}"
    return ("<h2>Format compliance on held-out prompts</h2>"
            f'<p class="muted">{runs[0]["summary"]["outputs"]} prompts never seen in training; {decoding} decoding, '
            f"at most {settings.get('max_new_tokens')} new tokens; generate.py's strict check: every tag once, "
            "in order, nothing after <code>&lt;/code&gt;</code>. Syntax-valid: format-compliant and the code "
            "parses with <code>ast</code>.</p>"
            + table(["model", "format compliance", "syntax-valid", "mean tokens", "stopped at", "most frequent errors"],
                    rows, numeric=(3,)))


def examples_section(runs):
    good, bad = pick_examples(runs)
    same = good and bad and good[1].get("instruction") == bad[1].get("instruction")
    note = "the same prompt, answered by two models" if same else "two prompts"
    return (f'<h2>Two generations side by side</h2><p class="muted">{note}. The check judges the format '
            "and the code's syntax, not whether the code solves the task.</p>"
            f'<div class="side">{generation_card(good, True)}{generation_card(bad, False)}</div>')


def data_section(filtered_dir, encoded_dir, images):
    rep = read_json(os.path.join(filtered_dir, FILTER_REPORT), "filter report")
    rows = [["input records", rep["input_records"]], ["kept", rep["kept"]], ["dropped", rep["dropped"]]]
    rows += [[f"  dropped: {reason}", n] for reason, n in rep.get("drop_reasons", {}).items()]
    rows += [["kept with the reasoning truncated to fit", rep.get("reasoning_truncated", 0)]]
    before, after = rep.get("tokens_before", {}), rep.get("tokens_after", {})
    stats = [[k, before.get(k, ""), after.get(k, "")]
             for k in ("count", "min", "median", "mean", "p95", "max", "total")]
    parts = ["<h2>Data stages</h2>",
             f"<h3>filter_data.py (--max_len {rep.get('max_len')})</h3>",
             '<div class="side"><div>', table(["", "records"], rows, numeric=(1,)), "</div><div>",
             table(["tokens per example", "before", "after"], stats, numeric=(1, 2)), "</div></div>"]
    if encoded_dir:
        man = read_json(os.path.join(encoded_dir, MANIFEST), "dataset manifest")
        parts += ["<h3>encode_dataset.py</h3>",
                  f"<p>{man['rows']} rows, {man['total_tokens']} tokens of which {man['trained_tokens']} are "
                  f"trained on (the target: reasoning, intention, code, tags and EOS), longest {man['longest']} "
                  f"&le; {man['max_len']}; ids stored as {esc(man.get('id_dtype'))}.</p>"]
    if "histogram" in images:
        parts.append(f'<img src="{esc(images["histogram"])}" alt="length histogram">')
    return "".join(parts)


def last(rows, key):
    values = [r[key] for r in rows if r.get(key) is not None]
    return values[-1] if values else None


def first(rows, key):
    values = [r[key] for r in rows if r.get(key) is not None]
    return values[0] if values else None


def fmt(x):
    return "" if x is None else f"{x:.3f}"


def eval_set(run):
    args = run["config"].get("args", {})
    if args.get("eval_dir"):
        return f"<code>{esc(args['eval_dir'])}</code> (records never trained on)"
    if args.get("eval_fraction"):
        return f"a held-out {args['eval_fraction']:.0%} of the training set"
    return "nothing (no eval set)"


def training_section(runs, images):
    rows = []
    for r in runs:
        args = r["config"].get("args", {})
        rows.append([r["name"], r["config"].get("mode"), f"{args.get('epochs'):g}", r["config"].get("total_steps"),
                     args.get("lr"), fmt(first(r["rows"], "loss")), fmt(last(r["rows"], "loss")),
                     fmt(first(r["rows"], "eval_loss")), fmt(last(r["rows"], "eval_loss"))]
                    + [fmt(last(r["rows"], f"eval_loss_{s}")) for s in ("reasoning", "intention", "code")])
    return ("<h2>Training</h2>"
            + table(["run", "mode", "epochs", "steps", "lr", "first train loss", "last train loss",
                     "first eval loss", "last eval loss", "eval: reasoning", "eval: intention", "eval: code"],
                    rows, numeric=tuple(range(2, 12)))
            + '<p class="muted">Loss per section: the mean cross-entropy over the target tokens of that section '
              f"(a section includes its closing tag). Solid: train; dashed: eval on {eval_set(runs[0])}.</p>"
            + f'<img src="{esc(images["losses"])}" alt="loss curves per section">')


def pretrain_section(pretrained, images):
    from reasoning_sft.demo.pretrain import PRETRAIN_SUMMARY
    s = read_json(os.path.join(pretrained, PRETRAIN_SUMMARY), "pre-training summary")
    c = read_json(os.path.join(pretrained, "config.json"), "model config")
    return ("<h2>The base model</h2>"
            f"<p>A Llama-architecture model built here ({c['num_hidden_layers']} layers, width {c['hidden_size']}, "
            f"vocabulary {c['vocab_size']}), then pre-trained as a plain causal LM on the training split's text "
            f"without tags: {s['documents']} documents (a record's instruction, reasoning, intention and code "
            f"separated by blank lines), {s['tokens_per_epoch']} tokens per epoch, {s['epochs']:g} epochs "
            f"({s['steps']} steps, lr {s['lr']}), loss {s['first_loss']:.2f} &rarr; {s['last_loss']:.2f}"
            + (f" (held-out records: {s['last_eval_loss']:.2f})" if s.get("last_eval_loss") is not None else "")
            + f" in {s['seconds']:.0f} s. "
            "Like a real base model it knows the language of the corpus, not the "
            f"{esc(OPEN['reasoning'])}&hellip;{esc(CLOSE['code'])} format: fine-tuning teaches that.</p>"
            f'<img src="{esc(images["pretrain"])}" alt="pre-training loss" style="max-width:600px">')


def timings_section(timings):
    """demo.py's timings.json: {"stages": [{"stage", "seconds", "alongside": [stages run at the same time]}],
    "wall_seconds": up to the report}."""
    rows = [[t["stage"], f"{t['seconds']:.1f}", ", ".join(t.get("alongside", []))] for t in timings["stages"]]
    if timings.get("wall_seconds") is not None:
        rows.append(["all of the above (wall clock)", f"{timings['wall_seconds']:.1f}", ""])
    return "<h2>Time per stage</h2>" + table(["stage", "seconds", "ran at the same time as"], rows, numeric=(1,))


# ---------------------------------------------------------------- the page

def write_images(files_dir, filtered_dir, runs, pretrained):
    """The page's images, in a fresh directory that replaces files_dir; returns {key: path relative to the page}."""
    rel = os.path.basename(files_dir)
    with atomic_output_dir(files_dir, overwrite=True) as tmp:
        return _write_images(tmp, rel, filtered_dir, runs, pretrained)


def _write_images(files_dir, rel, filtered_dir, runs, pretrained):
    images = {}
    hist = os.path.join(filtered_dir, "length_histogram.png")
    if os.path.exists(hist):
        shutil.copyfile(hist, os.path.join(files_dir, "length_histogram.png"))
        images["histogram"] = f"{rel}/length_histogram.png"
    loss_curves_compare([(r["name"], r["rows"]) for r in runs], os.path.join(files_dir, "losses.png"))
    images["losses"] = f"{rel}/losses.png"
    if pretrained:
        from reasoning_sft.demo.pretrain import PRETRAIN_METRICS
        pretrain_curve(os.path.join(pretrained, PRETRAIN_METRICS), os.path.join(files_dir, "pretrain.png"))
        images["pretrain"] = f"{rel}/pretrain.png"
    return images


def build_report(out, filtered_dir, runs, encoded_dir=None, pretrained=None, timings=None, title="reasoning-sft demo"):
    """Write the page `out` and its images (OUT_STEM_files/); returns `out`.

    runs: [(name, training output_dir, generations .jsonl)].
    """
    loaded = [load_run(*r) for r in runs]
    out = os.path.abspath(out)
    files_dir = os.path.splitext(out)[0] + "_files"
    images = write_images(files_dir, filtered_dir, loaded, pretrained)
    headline = ", ".join(f"{r['name']} {pct(r['summary']['format_ok'], r['summary']['outputs'])}" for r in loaded)
    body = [f"<h1>{esc(title)}</h1>",
            f'<p class="muted">written {datetime.datetime.now().strftime("%Y-%m-%d %H:%M")}</p>',
            f'<p class="big">Format compliance on held-out prompts: {esc(headline)}</p>',
            '<p>Every number and figure below is read from the stages\' own outputs: filter_report.json, '
            "manifest.json, the trainers' metrics.jsonl and train_config.json, generate.py's per-prompt results "
            "and summary.</p>",
            results_section(loaded), examples_section(loaded)]
    if pretrained:
        body.append(pretrain_section(pretrained, images))
    body += [training_section(loaded, images), data_section(filtered_dir, encoded_dir, images)]
    if timings:
        body.append(timings_section(timings))
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>\n")
    write_file_atomic(out, lambda f: f.write(page))
    return out


def main(argv=None):
    args = parse_args(argv)
    timings = read_json(args.timings, "stage timings") if args.timings else None
    out = build_report(args.out, args.filtered, args.run, encoded_dir=args.encoded, pretrained=args.pretrained,
                       timings=timings, title=args.title)
    print(f"report -> {out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
