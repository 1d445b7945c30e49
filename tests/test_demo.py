"""`make demo`'s own parts: the base model's pre-training, the held-out split, the one-page report.

The demo itself takes minutes and is not run here; each part is, on the session fixtures'
tiny model and data (real stage outputs: a two-step training run of each trainer and
generate.py on three prompts).
"""

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO_ROOT, our_error_line, run_script

N_PRETRAIN, N_EVAL = 24, 4


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def pretrained_dir(tmp_path_factory, sample_records):
    """A tiny model pre-trained for 3 epochs on 24 records, through the CLI the demo runs."""
    from reasoning_sft.demo import tiny_llama

    root = tmp_path_factory.mktemp("pretrained")
    train = write_jsonl(root / "train.jsonl", sample_records[:N_PRETRAIN])
    held = write_jsonl(root / "held.jsonl", sample_records[N_PRETRAIN:N_PRETRAIN + N_EVAL])
    out = root / "tiny"
    assert tiny_llama.main(["--corpus", str(train), "--out_dir", str(out), "--vocab_size", "512",
                            "--pretrain_epochs", "3", "--pretrain_seq_len", "64", "--pretrain_batch_size", "4",
                            "--pretrain_eval", str(held)]) == 0
    return out


def test_pretraining_documents_are_whole_records_without_tags(sample_records):
    from reasoning_sft.data.template import TAGS
    from reasoning_sft.demo.pretrain import pretraining_documents

    record = sample_records[0]
    docs = pretraining_documents([record, {**record, "reasoning": "use <code> here"},
                                  {k: v for k, v in record.items() if k != "code"}, "not a record",
                                  {**{k: v for k, v in record.items() if k != "instruction"}, "prompt": "Do it."}])
    assert len(docs) == 2  # the record with a tag and the one without code are left out
    assert docs[0].startswith(record["instruction"]) and docs[0].endswith(record["code"].rstrip("\n"))
    assert docs[0].index(record["reasoning"]) < docs[0].index(record["intention"])
    assert docs[1].startswith("Do it.\n\n")
    assert not any(tag in doc for doc in docs for tag in TAGS)


def test_pretraining_reads_the_instruction_the_filter_reads(sample_records):
    from reasoning_sft.data.records import validate
    from reasoning_sft.demo.pretrain import pretraining_documents

    record = {**sample_records[0], "instruction": 5, "prompt": "Do it."}  # the filter drops it: not a string
    assert validate(record)[1] == "non_string_instruction"
    assert pretraining_documents([record]) == []


TINY = ["--vocab_size", "400", "--hidden", "8", "--layers", "1", "--heads", "2", "--kv_heads", "1"]


@pytest.mark.parametrize("flag", ["--heads", "--kv_heads", "--pretrain_seq_len", "--pretrain_batch_size"])
def test_tiny_llama_refuses_zero_sizes_in_one_line(tmp_path, sample_path, flag):
    proc = subprocess.run([sys.executable, "-m", "reasoning_sft.demo.tiny_llama", "--corpus", str(sample_path),
                           "--out_dir", str(tmp_path / "m"), flag, "0"], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=60)
    assert f"{flag} must be >= 1" in our_error_line(proc, "tiny_llama.py")
    assert not (tmp_path / "m").exists()


def test_pretraining_refuses_a_corpus_it_cannot_train_on(tmp_path, sample_records):
    from reasoning_sft.demo import tiny_llama
    from reasoning_sft.errors import UserError

    no_code = write_jsonl(tmp_path / "no_code.jsonl", [{k: v for k, v in r.items() if k != "code"}
                                                        for r in sample_records[:4]])
    one = write_jsonl(tmp_path / "one.jsonl", sample_records[:1])
    for corpus, seq_len, message in ((no_code, 64, "no record to pre-train on"),
                                     (one, 100_000, "fewer than one packed row")):
        with pytest.raises(UserError, match=message):
            tiny_llama.main(["--corpus", str(corpus), "--out_dir", str(tmp_path / "m"), *TINY,
                             "--pretrain_epochs", "1", "--pretrain_seq_len", str(seq_len)])
        assert not (tmp_path / "m").exists()  # nothing half-built is left


def test_a_vocabulary_too_small_for_the_corpus_is_one_line(tmp_path, sample_records):
    from reasoning_sft.demo import tiny_llama
    from reasoning_sft.errors import UserError

    corpus = write_jsonl(tmp_path / "c.jsonl", sample_records[:4])
    with pytest.raises(UserError, match="--vocab_size 280 is too small for this corpus"):
        tiny_llama.main(["--corpus", str(corpus), "--out_dir", str(tmp_path / "m"), "--vocab_size", "280"])
    assert not (tmp_path / "m").exists()


@pytest.mark.slow
def test_build_returns_the_pretraining_summary_it_wrote(tmp_path, sample_records):
    from reasoning_sft.demo import tiny_llama
    from reasoning_sft.demo.pretrain import PRETRAIN_SUMMARY

    corpus = write_jsonl(tmp_path / "c.jsonl", sample_records[:4])
    assert tiny_llama.build(str(corpus), str(tmp_path / "plain"), 400, hidden=8, heads=2, kv_heads=1) is None
    summary = tiny_llama.build(str(corpus), str(tmp_path / "m"), 400, pretrain_epochs=1,
                               pretrain_kwargs={"seq_len": 32, "batch_size": 2}, hidden=8, heads=2, kv_heads=1)
    assert summary == json.loads((tmp_path / "m" / PRETRAIN_SUMMARY).read_text())
    assert summary["documents"] == 4 and summary["steps"] >= 1


@pytest.mark.slow
def test_pretraining_lowers_train_and_held_out_loss(pretrained_dir, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from reasoning_sft.demo.pretrain import PRETRAIN_METRICS, PRETRAIN_SUMMARY

    summary = json.loads((pretrained_dir / PRETRAIN_SUMMARY).read_text())
    rows = read_jsonl(pretrained_dir / PRETRAIN_METRICS)
    train = [r["loss"] for r in rows if "loss" in r]
    evals = [r["eval_loss"] for r in rows if "eval_loss" in r]
    assert summary["documents"] == N_PRETRAIN and summary["eval_documents"] == N_EVAL
    assert len(evals) == 3  # one per epoch
    assert train[-1] < 0.7 * train[0], train
    assert evals[-1] < evals[0], evals
    assert summary["last_eval_loss"] == evals[-1]
    model = AutoModelForCausalLM.from_pretrained(str(pretrained_dir))  # a loadable base model
    assert model.config.vocab_size == 512
    # the tests' fixture stays an untrained model, built without pre-training
    assert not (tiny_model_dir / PRETRAIN_SUMMARY).exists()


def test_demo_holds_out_its_prompts_from_every_training_step(tmp_path, sample_path, sample_records):
    import demo

    paths = demo.split_sample(str(sample_path), str(tmp_path))
    train, held = read_jsonl(paths["train"]), read_jsonl(paths["heldout"])
    assert len(held) == demo.HELD_OUT >= 16
    assert not {r["id"] for r in train} & {r["id"] for r in held}
    assert train + held == sample_records


def test_demo_refuses_a_sample_it_cannot_split_in_one_line(tmp_path, sample_records):
    small = write_jsonl(tmp_path / "small.jsonl", sample_records[:16])
    for sample, message in ((small, "16 records"), (tmp_path / "missing.jsonl", "no such file")):
        proc = run_script("demo.py", "--sample", sample, "--out_dir", tmp_path / "out", timeout=60)
        assert message in our_error_line(proc, "demo.py")
    assert not (tmp_path / "out").exists()


def wait_for_pids(path, n, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        pids = path.read_text().split() if path.exists() else []
        if len(pids) >= n:
            return [int(p) for p in pids]
        time.sleep(0.05)
    raise AssertionError(f"{n} stages did not start")


def running(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def sleeper(pid_file):
    """A stage that writes its pid and sleeps a minute (a training, as far as the demo can tell)."""
    return ["sh", "-c", f'echo $$ >> "{pid_file}"; exec sleep 60']


def test_ctrl_c_stops_every_running_stage_at_once(tmp_path):
    """Stages run in sessions of their own (Ctrl-C never reaches them): the demo kills them itself."""
    pid_file = tmp_path / "pids"
    script = ("import sys, demo; demo.run_together([('a', sys.argv[1:]), ('b', sys.argv[1:])], [])")
    # SIGINT as at a terminal: a job a non-interactive shell put in the background starts with SIGINT
    # ignored, and Python then installs no KeyboardInterrupt handler (the demo would never see the Ctrl-C)
    demo_proc = subprocess.Popen([sys.executable, "-c", script, *sleeper(pid_file)], cwd=REPO_ROOT,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    pids = []
    try:
        pids = wait_for_pids(pid_file, 2)
        t0 = time.time()
        demo_proc.send_signal(signal.SIGINT)
        _, stderr = demo_proc.communicate(timeout=20)
        assert time.time() - t0 < 10
        assert "KeyboardInterrupt" in stderr
        assert not any(running(pid) for pid in pids)
    finally:
        demo_proc.kill()
        demo_proc.wait()
        for pid in pids:
            if running(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_failing_stage_stops_the_ones_beside_it(tmp_path, capsys):
    import demo

    pid_file = tmp_path / "pids"
    fails = ["sh", "-c", f'while [ ! -s "{pid_file}" ]; do sleep 0.05; done; echo broken; exit 3']
    t0 = time.time()
    with pytest.raises(SystemExit, match="stage 'fails' failed \\(exit 3\\)"):
        demo.run_together([("fails", fails), ("sleeps", sleeper(pid_file))], [])
    assert time.time() - t0 < 20
    assert not running(int(pid_file.read_text()))
    assert "broken" in capsys.readouterr().out


def doc_commands(doc, prefix):
    """The shell commands of DOC (a path under the repository) that start with `prefix`, continuation lines
    joined, as argv lists."""
    text = (REPO_ROOT / doc).read_text(encoding="utf-8").replace("\\\n", " ")
    return [shlex.split(line.strip()) for line in text.splitlines() if line.strip().startswith(prefix)]


def test_the_docs_show_the_trainer_commands_the_demo_runs():
    """docs/training.md (the README links it for "the same commands on CPU") shows what the demo runs."""
    import demo

    launch = ["accelerate", "launch", "--config_file", "configs/cpu.yaml"]
    shown = [cmd for cmd in doc_commands("docs/training.md", " ".join(launch)) if "demo_out/tiny-llama" in cmd]
    ran = [cmd for _, cmd in demo.trainer_stages(demo.parse_args([]), "demo_out/tiny-llama",
                                                 demo.stage_dirs("demo_out"), launch)]
    assert shown == ran


# ------------------------------------------------------------------ the report

@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory, tiny_model_dir, tokenizer_dir, encoded_dir, sample_path):
    """Both trainers for two steps, then generate.py on three prompts: real outputs, tiny."""
    import train_full
    import train_peft

    import generate

    root = tmp_path_factory.mktemp("runs")
    runs = []
    for name, trainer, flag in (("LoRA", train_peft, "--adapter_dir"), ("full", train_full, "--model_dir")):
        out, gen = root / name, root / f"generations_{name}.jsonl"
        assert trainer.main([str(a) for a in (
            "--model_name", tiny_model_dir, "--tokenizer_dir", tokenizer_dir,
            "--train_dir", encoded_dir / "arrow_dataset", "--output_dir", out, "--max_steps", 2,
            "--batch_tokens", 2048, "--eval_fraction", 0.05, "--eval_every", 1, "--log_every", 1)]) == 0
        assert generate.main([str(a) for a in (
            "--model_name", tiny_model_dir, "--tokenizer_dir", tokenizer_dir, flag, out, "--prompts", sample_path,
            "--limit", 3, "--max_new_tokens", 8, "--batch_size", 3, "--out", gen)]) == 0
        runs.append((name, str(out), str(gen)))
    return runs


def test_report_is_written_and_every_image_it_references_exists(tmp_path, tiny_runs, filtered_dir, encoded_dir,
                                                                 pretrained_dir):
    from reasoning_sft.demo import report

    timings = tmp_path / "timings.json"
    timings.write_text(json.dumps({"stages": [{"stage": "stage 4: LoRA", "seconds": 3.5, "alongside": ["x"]}],
                                   "wall_seconds": 9.0}))
    page = tmp_path / "report.html"
    argv = ["--out", str(page), "--filtered", str(filtered_dir), "--encoded", str(encoded_dir),
            "--pretrained", str(pretrained_dir), "--timings", str(timings)]
    for run in tiny_runs:
        argv += ["--run", *run]
    for _ in range(2):  # a second build replaces the first
        assert report.main(argv) == 0
    text = page.read_text(encoding="utf-8")
    images = re.findall(r'<img[^>]*\ssrc="([^"]+)"', text)
    assert len(images) == 3  # length histogram, loss curves of both runs, pre-training curve
    for src in images:
        path = page.parent / src
        assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", src
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "report_files", "timings.json"]
    filter_report = json.loads((filtered_dir / "filter_report.json").read_text())
    assert f"<td>kept</td><td class=\"n\">{filter_report['kept']}</td>" in text
    for name, _, gen in tiny_runs:
        summary = json.loads(Path(gen.replace(".jsonl", "_summary.json")).read_text())
        n = summary["outputs"]
        assert f"{name} {summary['format_ok']}/{n}" in text
        assert f"{summary['syntax_ok']}/{n}" in text
    assert "stage 4: LoRA" in text and "9.0" in text
    assert "No output passes the check" in text  # two steps of training do not learn the format


def test_report_refuses_a_missing_generations_file(tmp_path, tiny_runs, filtered_dir):
    from reasoning_sft.demo import report
    from reasoning_sft.errors import UserError

    name, out, _ = tiny_runs[0]
    with pytest.raises(UserError, match="generations"):
        report.main(["--out", str(tmp_path / "r.html"), "--filtered", str(filtered_dir),
                     "--run", name, out, str(tmp_path / "nope.jsonl")])
    assert list(tmp_path.iterdir()) == []


def test_report_finds_the_summary_where_generate_writes_it():
    import generate
    from reasoning_sft.demo import report
    from reasoning_sft.serve import generation

    assert generate.summary_path is report.summary_path is generation.summary_path  # one definition
    assert generation.summary_path("out/gen.v2.jsonl") == "out/gen.v2_summary.json"


def test_jsonl_reader_skips_only_a_torn_last_line_and_names_the_line(tmp_path):
    from reasoning_sft.artifacts import read_jsonl
    from reasoning_sft.errors import UserError

    torn = tmp_path / "metrics.jsonl"
    torn.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "lo', encoding="utf-8")  # killed mid-write
    assert read_jsonl(str(torn), "training metrics", torn_last_line_ok=True) == [{"step": 1, "loss": 2.0}]
    with pytest.raises(UserError, match=r"metrics.jsonl:2: unreadable generations"):  # not a log: torn is bad
        read_jsonl(str(torn), "generations")
    middle = tmp_path / "middle.jsonl"
    middle.write_text('{"step": 1}\n{"step": \n{"step": 3}\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"middle.jsonl:2: unreadable training metrics"):
        read_jsonl(str(middle), "training metrics", torn_last_line_ok=True)
    not_object = write_jsonl(tmp_path / "list.jsonl", [{"step": 1}, [1, 2]])
    with pytest.raises(UserError, match=r"list.jsonl:2: .*not a JSON object"):
        read_jsonl(str(not_object), "generations")
    with pytest.raises(UserError, match="is a directory"):
        read_jsonl(str(tmp_path), "generations")


def test_report_reads_a_killed_runs_metrics_and_refuses_a_bad_generations_file(tmp_path, tiny_runs, filtered_dir):
    """A metrics.jsonl whose last line a kill cut off still makes a page; a corrupt generations file
    or a directory in its place is one UserError naming it, never a JSONDecodeError traceback."""
    import shutil

    from reasoning_sft.demo import report
    from reasoning_sft.errors import UserError

    name, out, gen = tiny_runs[0]
    killed = tmp_path / "killed"
    killed.mkdir()
    for file in ("metrics.jsonl", "train_config.json"):
        shutil.copy(Path(out) / file, killed / file)
    with open(killed / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write('{"step": 99, "loss": 1.2')
    bad_gen = tmp_path / "gen.jsonl"
    shutil.copy(Path(gen.replace(".jsonl", "_summary.json")), tmp_path / "gen_summary.json")

    def build(generations):
        return report.main(["--out", str(tmp_path / "r.html"), "--filtered", str(filtered_dir),
                            "--run", name, str(killed), str(generations)])

    shutil.copy(gen, bad_gen)
    assert build(bad_gen) == 0 and (tmp_path / "r.html").is_file()
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "r.html").stat().st_mode & 0o777 == 0o666 & ~umask  # written like every artifact
    assert (tmp_path / "r_files").stat().st_mode & 0o777 == 0o777 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gen.jsonl", "gen_summary.json", "killed", "r.html",
                                                          "r_files"]
    bad_gen.write_text(Path(gen).read_text(encoding="utf-8") + "{not json}\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"gen.jsonl:4: unreadable generations"):
        build(bad_gen)
    with pytest.raises(UserError, match="is a directory"):
        build(killed)


def generation_row(record, output, stop="</code>"):
    """One row as generate.py writes it, for `output` as the model's continuation."""
    from reasoning_sft.serve.generation import evaluate

    result = evaluate({"output": output, "n_tokens": len(output.split()), "stop": stop, "section_tokens": None})
    row = {"id": record["id"], "instruction": record["instruction"]}
    row.update({k: result[k] for k in ("output", "ok", "errors", "reasoning", "intention", "code", "syntax_ok",
                                       "n_tokens", "stop")})
    return row


def test_side_by_side_prefers_one_prompt_that_passes_and_fails(sample_records):
    from reasoning_sft.data.template import target_text
    from reasoning_sft.demo.report import generation_card, pick_examples

    a, b = sample_records[:2]
    right = {r["id"]: target_text(r["reasoning"], r["intention"], r["code"] + "# a < b\n") for r in (a, b)}
    wrong = {k: v.replace("</intention>", "", 1) for k, v in right.items()}
    runs = [{"name": "small", "generations": [generation_row(a, wrong[a["id"]]), generation_row(b, wrong[b["id"]])]},
            {"name": "big", "generations": [generation_row(a, wrong[a["id"]]), generation_row(b, right[b["id"]])]}]
    good, bad = pick_examples(runs)
    assert good[0] == "big" and bad[0] == "small" and good[1]["id"] == bad[1]["id"] == b["id"]

    passing, failing = generation_card(good, True), generation_card(bad, False)
    assert "passes the format check" in passing and "code parses as Python" in passing
    assert "fails the format check" in failing and "<li><code>missing &lt;/intention&gt;</code></li>" in failing
    assert "# a &lt; b" in passing and "# a < b" not in passing  # the model's text is escaped
    assert passing.count('class="tag"') == 5  # every tag of the continuation is marked
    assert "No output passes" in generation_card(None, True)

    # a passing output whose code does not parse is shown only when no other passes
    broken = target_text(a["reasoning"], a["intention"], "def (:\n")
    runs[1]["generations"][0] = generation_row(a, broken)
    assert pick_examples(runs)[0][1]["id"] == b["id"]
    runs[1]["generations"][1] = generation_row(b, wrong[b["id"]])
    good, bad = pick_examples(runs)
    assert good[1]["id"] == a["id"] and good[1]["syntax_ok"] is False and not bad[1]["ok"]
    runs[1]["generations"][0] = generation_row(a, wrong[a["id"]])
    assert pick_examples(runs)[0] is None
