"""Bad input through the real command line: exit code 2, one line on stderr, no traceback,
and no output directory (nor a temporary sibling of it) left behind. Also: a stage that is
interrupted or killed while writing leaves no artifact that a later stage would accept."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO_ROOT, leftovers, our_error_line, run_script

from reasoning_sft.errors import UserError, run_cli

GOOD = {"instruction": "Write add(a, b).", "reasoning": "Addition is one operator.", "intention": "Return a + b.",
        "code": "def add(a, b):\n    return a + b"}


def assert_user_error(proc, script, out_dir, *fragments):
    line = our_error_line(proc, script)
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    assert proc.stdout == ""
    assert leftovers(out_dir) == [], leftovers(out_dir)
    return line


def filter_cli(src, tokenizer, cwd, *extra, out="filtered"):
    return run_script("filter_data.py", "--json", src, "--tokenizer", tokenizer, "--out_dir", out,
                      "--max_len", "256", *extra, cwd=cwd)


# ---------------------------------------------------------------- filter_data.py: the input file

def test_malformed_json_array_names_file_and_line(tmp_path, tokenizer_dir):
    good = json.dumps(GOOD)
    (tmp_path / "bad.json").write_text(f"[\n{good},\n{good},\n{{\"instruction\": \"x\",, }}\n]\n", encoding="utf-8")
    proc = filter_cli("bad.json", tokenizer_dir, tmp_path)
    assert_user_error(proc, "filter_data.py", tmp_path / "filtered", "bad.json:4:", "malformed JSON")


def test_malformed_jsonl_line_names_the_line(tmp_path, tokenizer_dir):
    lines = [json.dumps(dict(GOOD, id=i)) for i in range(5)]
    lines[3] = lines[3][:-5]  # truncated record on line 5 (after a blank line)
    (tmp_path / "bad.jsonl").write_text(lines[0] + "\n\n" + "\n".join(lines[1:]) + "\n", encoding="utf-8")
    proc = filter_cli("bad.jsonl", tokenizer_dir, tmp_path)
    assert_user_error(proc, "filter_data.py", tmp_path / "filtered", "bad.jsonl:5:", "malformed JSON Lines record")


def test_invalid_utf8_names_the_line(tmp_path, tokenizer_dir):
    good = json.dumps(GOOD).encode()
    (tmp_path / "latin1.jsonl").write_bytes(good + b"\n" + good + b"\n" + good.replace(b"add", b"\xe9t\xe9", 1) + b"\n")
    proc = filter_cli("latin1.jsonl", tokenizer_dir, tmp_path)
    assert_user_error(proc, "filter_data.py", tmp_path / "filtered", "latin1.jsonl:3:", "invalid UTF-8")


def test_missing_input_file(tmp_path, tokenizer_dir):
    proc = filter_cli("nope.jsonl", tokenizer_dir, tmp_path)
    assert_user_error(proc, "filter_data.py", tmp_path / "filtered", "nope.jsonl: no such file")


def test_empty_input_file(tmp_path, tokenizer_dir):
    (tmp_path / "empty.jsonl").write_text("\n  \n", encoding="utf-8")
    proc = filter_cli("empty.jsonl", tokenizer_dir, tmp_path)
    assert_user_error(proc, "filter_data.py", tmp_path / "filtered", "empty.jsonl: the file is empty")


def test_no_record_survives(tmp_path, tokenizer_dir):
    records = [{"prompt_text": "x", "answer": "y"}, dict(GOOD, code="def broken(:"), "text"]
    (tmp_path / "junk.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    proc = filter_cli("junk.jsonl", tokenizer_dir, tmp_path)
    line = assert_user_error(proc, "filter_data.py", tmp_path / "filtered", "no record survived the filter")
    assert "missing_instruction" in line and "python_syntax_error" in line and "not_an_object" in line


# ---------------------------------------------------------------- filter_data.py: the output and the tokenizer

def small_sample(tmp_path, sample_records, n=20):
    path = tmp_path / "small.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in sample_records[:n]), encoding="utf-8")
    return path


def test_existing_output_needs_overwrite(tmp_path, tokenizer_dir, sample_records):
    out = tmp_path / "filtered"
    out.mkdir()
    (out / "data.json").write_text("old", encoding="utf-8")
    src = small_sample(tmp_path, sample_records)
    proc = filter_cli(src.name, tokenizer_dir, tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr == "filter_data.py: error: filtered already exists; pass --overwrite to replace it\n"
    assert (out / "data.json").read_text(encoding="utf-8") == "old"  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["filtered", "small.jsonl"]

    proc = filter_cli(src.name, tokenizer_dir, tmp_path, "--overwrite", "--no_plot")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr  # no progress bars when stderr is not a terminal
    assert proc.stdout.startswith("filter: ") and "-> filtered" in proc.stdout
    assert sorted(p.name for p in out.iterdir()) == ["data.json", "filter_report.json"]
    assert len(json.loads((out / "data.json").read_text(encoding="utf-8"))) > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["filtered", "small.jsonl"]  # old one gone, no temp left


def test_tokenizer_dir_not_written_by_stage1(tmp_path, tiny_model_dir, sample_path):
    proc = filter_cli(sample_path, tiny_model_dir, tmp_path)
    assert_user_error(proc, "filter_data.py", tmp_path / "filtered", "not written by prepare_llamatokenizer.py",
                      "sft_tokenizer.json")


FAIL_FAST = """
import sys
import filter_data
from reasoning_sft.errors import UserError
try:
    filter_data.main(["--json", "missing.jsonl", "--tokenizer", sys.argv[1], "--out_dir", "out", "--max_len", "64"])
except UserError as err:
    print("transformers" in sys.modules, "torch" in sys.modules, err)
"""


def test_input_errors_fail_before_the_slow_tokenizer_load(tmp_path, tokenizer_dir):
    proc = subprocess.run([sys.executable, "-c", FAIL_FAST, str(tokenizer_dir)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)))
    assert proc.stdout.startswith("False False missing.jsonl: no such file"), proc.stdout + proc.stderr


# ---------------------------------------------------------------- encode_dataset.py

@pytest.fixture(scope="module")
def other_tokenizer_dir(tmp_path_factory, sample_path):
    """A stage 1 tokenizer from a differently-built tiny model (another vocabulary)."""
    import prepare_llamatokenizer
    from reasoning_sft.demo import tiny_llama

    root = tmp_path_factory.mktemp("other")
    tiny_llama.build(corpus=str(sample_path), out_dir=str(root / "model"), vocab_size=512)
    assert prepare_llamatokenizer.main(["--model", str(root / "model"), "--out_dir", str(root / "tok")]) == 0
    return root / "tok"


def encode_cli(data_json, tokenizer, cwd, max_len="256"):
    return run_script("encode_dataset.py", "--json", data_json, "--tokenizer", tokenizer, "--encode_dir", "encoded",
                      "--max_len", max_len, "--num_proc", "1", cwd=cwd)


def test_encode_refuses_a_tokenizer_other_than_the_filters(tmp_path, filtered_dir, tokenizer_dir, other_tokenizer_dir):
    ours = json.loads((tokenizer_dir / "sft_tokenizer.json").read_text())["fingerprint"]
    theirs = json.loads((other_tokenizer_dir / "sft_tokenizer.json").read_text())["fingerprint"]
    assert ours != theirs
    proc = encode_cli(filtered_dir / "data.json", other_tokenizer_dir, tmp_path)
    assert_user_error(proc, "encode_dataset.py", tmp_path / "encoded", f"filtered with tokenizer {ours}", theirs)


def test_encode_refuses_a_smaller_max_len_than_the_filters(tmp_path, filtered_dir, tokenizer_dir):
    proc = encode_cli(filtered_dir / "data.json", tokenizer_dir, tmp_path, max_len="128")
    assert_user_error(proc, "encode_dataset.py", tmp_path / "encoded", "--max_len 256 > 128")


def test_encode_cli_succeeds_quietly(tmp_path, filtered_dir, tokenizer_dir, encoded_dir):
    """The happy path through the CLI: one stdout line, nothing on stderr (no datasets progress bars)."""
    proc = encode_cli(filtered_dir / "data.json", tokenizer_dir, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "", proc.stderr
    assert proc.stdout.startswith("encode: ") and len(proc.stdout.splitlines()) == 1
    ours = json.loads((tmp_path / "encoded" / "manifest.json").read_text())
    theirs = json.loads((encoded_dir / "manifest.json").read_text())
    assert {k: v for k, v in ours.items()} == theirs


# ---------------------------------------------------------------- run_cli itself

def test_run_cli_turns_user_errors_into_one_line_and_exit_2(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/some/where/stage.py"])

    def bad(argv):
        raise UserError("data.jsonl:7: malformed")

    with pytest.raises(SystemExit) as exc:
        run_cli(bad)
    assert exc.value.code == 2
    assert capsys.readouterr().err == "stage.py: error: data.jsonl:7: malformed\n"

    def interrupted(argv):
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as exc:
        run_cli(interrupted)
    assert exc.value.code == 130
    assert capsys.readouterr().err == "stage.py: interrupted; nothing is left half-written (what was complete stays)\n"

    with pytest.raises(ZeroDivisionError):  # a bug is not a user error: the traceback stays
        run_cli(lambda argv: 1 / 0)


# ---------------------------------------------------------------- interrupted stages

def test_filter_failing_mid_write_leaves_nothing(tmp_path, tokenizer_dir, sample_path, monkeypatch):
    import filter_data
    from reasoning_sft import plots

    written = []

    def crash(section_counts, max_len, path, **kw):
        written.extend(os.listdir(os.path.dirname(path)))  # data.json and the report are already written
        raise KeyboardInterrupt

    monkeypatch.setattr(plots, "length_histogram", crash)
    out = tmp_path / "filtered"
    with pytest.raises(KeyboardInterrupt):
        filter_data.main(["--json", str(sample_path), "--tokenizer", str(tokenizer_dir), "--out_dir", str(out),
                          "--max_len", "256"])
    assert sorted(written) == ["data.json", "filter_report.json"]
    assert leftovers(out) == []


def test_encode_failing_mid_write_keeps_the_old_artifact(tmp_path, tokenizer_dir, filtered_dir, encoded_dir,
                                                         monkeypatch):
    import shutil

    import datasets

    import encode_dataset

    out = tmp_path / "encoded"
    shutil.copytree(encoded_dir, out)
    before = (out / "manifest.json").read_text()

    def disk_full(self, path, **kw):
        os.makedirs(path)
        with open(os.path.join(path, "data-00000-of-00001.arrow"), "wb") as f:
            f.write(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(datasets.Dataset, "save_to_disk", disk_full)
    with pytest.raises(OSError, match="No space left"):
        encode_dataset.main(["--json", str(filtered_dir / "data.json"), "--tokenizer", str(tokenizer_dir),
                             "--encode_dir", str(out), "--max_len", "256", "--num_proc", "1", "--overwrite"])
    assert leftovers(out) == ["encoded"]
    assert (out / "manifest.json").read_text() == before
    assert (out / "arrow_dataset" / "data-00000-of-00001.arrow").read_bytes() != b"half"


KILL_WRAPPER = """
import os, runpy, sys, time
import reasoning_sft.plots as plots

def stall(section_counts, max_len, path, **kw):
    open(os.environ["STALL_MARKER"], "w").close()  # data.json is written, the plot is not
    time.sleep(600)

plots.length_histogram = stall
sys.argv = [sys.argv[1]] + sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_filter_killed_mid_write_leaves_no_artifact(tmp_path, tokenizer_dir, sample_records):
    import filter_data

    sample_path = small_sample(tmp_path, sample_records)
    marker, out = tmp_path / "stalled", tmp_path / "work" / "filtered"
    env = dict(os.environ, STALL_MARKER=str(marker), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.Popen([sys.executable, "-c", KILL_WRAPPER, str(REPO_ROOT / "filter_data.py"),
                             "--json", str(sample_path), "--tokenizer", str(tokenizer_dir), "--out_dir", str(out),
                             "--max_len", "256"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while not marker.exists():
            assert proc.poll() is None, proc.communicate()[1].decode()
            assert time.time() < deadline, "the filter never reached the write"
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()
    # what a kill leaves is only a hidden temporary sibling, never the artifact's name
    partial = [p.name for p in out.parent.iterdir()]
    assert len(partial) == 1 and partial[0].startswith(".filtered.tmp-"), partial
    # ... which the next stage does not accept, and which does not block a re-run
    from encode_dataset import checked_records

    with pytest.raises(UserError, match="no such file"):
        checked_records(str(out / "data.json"), {"fingerprint": "x"}, 256)
    assert filter_data.main(["--json", str(sample_path), "--tokenizer", str(tokenizer_dir), "--out_dir", str(out),
                             "--max_len", "256", "--no_plot"]) == 0
    assert (out / "data.json").is_file()
