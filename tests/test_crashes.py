"""Crashes and clashes of the trainers: real SIGKILLs at seeded-random points, a second run on a busy
--output_dir, a truncated newest checkpoint, a disk that fills during a save.

The kill points are chosen by a seeded generator and reached deterministically: a small wrapper (this
file's STALL_WRAPPER, test code only) runs the real training script and, after the chosen call of
Accelerator.backward, touches a marker and sleeps; the test then sends SIGKILL. With --grad_accum 2 an
odd call is the first micro-batch of an optimizer step, so the kill lands between micro-steps, with
gradients accumulated and not yet applied. Everything else is the product as users run it.
"""

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import xxhash
from conftest import REPO_ROOT, common, metrics, train_cmd, train_here

STALL_WRAPPER = """
import os, runpy, sys, time
import accelerate

target, calls = int(os.environ["STALL_AT_BACKWARD"]), [0]
real_backward = accelerate.Accelerator.backward

def backward(self, loss, **kw):
    real_backward(self, loss, **kw)
    calls[0] += 1
    if calls[0] == target:
        open(os.environ["STALL_MARKER"], "w").close()
        time.sleep(600)

accelerate.Accelerator.backward = backward
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""

ENV = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")


def start_stalling(script, args, backward_call, marker):
    """The trainer as a child process that stops after its `backward_call`-th backward (1-based)."""
    env = dict(ENV, STALL_AT_BACKWARD=str(backward_call), STALL_MARKER=str(marker))
    cmd = [sys.executable, "-c", STALL_WRAPPER] + train_cmd(script, *args, launcher="python")[1:]
    child = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not Path(marker).exists():
        if child.poll() is not None:
            raise AssertionError(f"the trainer ended before backward call {backward_call}: "
                                 f"{child.stderr.read()[-3000:]}")
        assert time.time() < deadline, "the trainer never reached the kill point"
        time.sleep(0.02)
    os.remove(marker)
    return child


def sigkill(child):
    child.send_signal(signal.SIGKILL)
    assert child.wait(timeout=60) == -signal.SIGKILL
    child.stdout.close()
    child.stderr.close()


def checkpoint_steps(out):
    return sorted(int(p.name.split("-")[1]) for p in out.iterdir()
                  if p.name.startswith("checkpoint-") and p.name.split("-")[1].isdigit())


def final_weights(out):
    from safetensors.torch import load_file

    name = "adapter_model.safetensors" if (out / "adapter_model.safetensors").exists() else "model.safetensors"
    return load_file(str(out / name))


def assert_bit_identical(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def train_losses_by_step(out):
    return {r["step"]: r["loss"] for r in metrics(out) if "loss" in r}


SAVE_EVERY = 2
LORA_ARGS = ["--batch_tokens", 1100, "--grad_accum", 2, "--epochs", 2, "--lr", 5e-3, "--lora_r", 4,
             "--lora_dropout", 0.1, "--save_every", SAVE_EVERY, "--keep_checkpoints", 2, "--seed", 5]


@pytest.mark.slow
def test_lora_killed_between_micro_steps_and_across_an_epoch_resumes_bit_identical(
        tmp_path, tiny_model_dir, tokenizer_dir, small_encoded, capsys):
    """Two SIGKILLs at seeded-random micro-steps (the first before the epoch boundary, so the resumed run
    replays across it), a second run refused on the busy directory, the newest checkpoint truncated
    before the last --resume: the run still ends with exactly the weights of a run never stopped.
    The killed runs are processes of their own; the reference, the refused run and the last --resume
    run in this process (train_here): what they are checked for is their output, not their process."""
    from reasoning_sft.errors import UserError
    from reasoning_sft.train.checkpoints import verify

    whole = tmp_path / "whole"
    assert train_here("train_peft.py", *common(tiny_model_dir, tokenizer_dir, small_encoded, whole), *LORA_ARGS)[0] == 0
    reference = train_losses_by_step(whole)
    epochs = [r["epoch"] for r in metrics(whole) if "loss" in r]
    per_epoch = sum(1 for e in epochs if e <= 1)
    total = len(reference)
    assert per_epoch >= 2 * SAVE_EVERY and total == 2 * per_epoch, (per_epoch, total)

    rng = random.Random(20261126)
    out, marker = tmp_path / "cut", tmp_path / "stalled"
    args = common(tiny_model_dir, tokenizer_dir, small_encoded, out) + LORA_ARGS
    # kill 1: first micro-batch of a seeded step after the first checkpoint, up to the first step of epoch 2
    step1 = rng.randint(SAVE_EVERY + 1, per_epoch + 1)
    first = start_stalling("train_peft.py", args, 2 * (step1 - 1) + 1, marker)

    # while it runs, a second run on the same directory (--overwrite!) is refused, naming the first
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    with pytest.raises(UserError) as second:  # what the command line prints as its one error line, exit 2
        train_here("train_peft.py", *args, "--overwrite")
    assert "\n" not in str(second.value) and f"in use by another run (pid {first.pid} on " in str(second.value)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before  # nothing deleted or written
    assert first.poll() is None  # the first run is untouched
    sigkill(first)
    resumed_at = SAVE_EVERY * ((step1 - 1) // SAVE_EVERY)  # in epoch 1: the resumed run replays across the boundary
    assert checkpoint_steps(out) == [s for s in (resumed_at - SAVE_EVERY, resumed_at) if s > 0]
    assert verify(str(out / f"checkpoint-{resumed_at}")) is None

    # kill 2, in the resumed run: a seeded step of epoch 2, past one more checkpoint, between its micro-steps
    step2 = rng.randint(max(resumed_at + SAVE_EVERY + 1, per_epoch + 1), total)
    resumed = start_stalling("train_peft.py", args + ["--resume"], 2 * (step2 - resumed_at - 1) + 1, marker)
    sigkill(resumed)
    saved = checkpoint_steps(out)
    newest_step = SAVE_EVERY * ((step2 - 1) // SAVE_EVERY)
    assert saved == [newest_step - SAVE_EVERY, newest_step], (step2, saved)

    # the newest checkpoint is truncated (a node crash before its data reached the disk): --resume says
    # so in one line and uses the one before
    newest = out / f"checkpoint-{saved[-1]}"
    victim = max((p for p in newest.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    victim_name, full_size = victim.relative_to(newest), victim.stat().st_size
    victim.write_bytes(victim.read_bytes()[: full_size // 2])
    capsys.readouterr()
    code, stdout = train_here("train_peft.py", *args, "--resume")
    assert code == 0
    stderr = capsys.readouterr().err
    said = [line for line in stderr.splitlines() if line.startswith("--resume: ")]
    assert len(said) == 1, stderr
    assert said[0].startswith(f"--resume: checkpoint-{saved[-1]} is incomplete or corrupt "
                              f"({victim_name} has {full_size // 2} bytes, {full_size} expected (truncated)); "
                              f"moved to checkpoint-{saved[-1]}.corrupt, using checkpoint-{saved[-2]}"), said
    assert f"resumed from {out / f'checkpoint-{saved[-2]}'}" in stdout

    assert_bit_identical(final_weights(whole), final_weights(out))
    assert train_losses_by_step(out) == reference  # every step logged once, with the same loss


@pytest.mark.slow
@pytest.mark.parametrize("precision", [["--precision", "fp32"], ["--precision", "bf16", "--adam8bit"]],
                         ids=["fp32", "bf16-stochastic-adam8bit"])
def test_full_killed_at_a_random_time_resumes_bit_identical(tmp_path, tiny_model_dir, tokenizer_dir, small_encoded,
                                                            precision):
    """A SIGKILL at a seeded-random moment after the first checkpoint (it may land in a save, a log
    line or a step); --resume ends with exactly the weights of a run never stopped. Under bf16 with
    stochastic rounding too: the rounding's bits and the fp32 optimizer state come back from the checkpoint.
    The killed run is a process of its own; the reference and the --resume run are in this process."""
    args = ["--batch_tokens", 600, "--grad_accum", 2, "--epochs", 2, "--lr", 1e-3, "--save_every", 1,
            "--keep_checkpoints", 2, "--seed", 9, *precision]
    whole, out = tmp_path / "whole", tmp_path / "cut"
    t0 = time.time()
    assert train_here("train_full.py", *common(tiny_model_dir, tokenizer_dir, small_encoded, whole), *args)[0] == 0
    child = subprocess.Popen(train_cmd("train_full.py", *common(tiny_model_dir, tokenizer_dir, small_encoded, out),
                                       *args, launcher="python"), cwd=REPO_ROOT, env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = t0 + 600
    while not (out / "checkpoint-1").exists():
        assert child.poll() is None and time.time() < deadline
        time.sleep(0.01)
    time.sleep(random.Random(7).uniform(0, 2.0))
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)
    assert train_here("train_full.py", *common(tiny_model_dir, tokenizer_dir, small_encoded, out), *args,
                      "--resume")[0] == 0
    assert_bit_identical(final_weights(whole), final_weights(out))
    assert train_losses_by_step(out) == train_losses_by_step(whole)


@pytest.mark.slow
def test_a_full_disk_during_a_save_is_one_line_and_keeps_the_previous_checkpoint(
        tmp_path, tiny_model_dir, tokenizer_dir, small_encoded, monkeypatch):
    """Once checkpoint-2 is saved the disk is full: torch.save writes part of a file and fails the way it
    does on a full filesystem (its message, seen on a 200 KiB tmpfs, is a RuntimeError, not an OSError);
    then, a second time, the trainer state's JSON write gets ENOSPC."""
    import train_full

    from reasoning_sft.errors import UserError
    from reasoning_sft.train.checkpoints import verify

    out = tmp_path / "full"
    real_save = torch.save

    def save_until_full(obj, f, *a, **kw):
        if not (out / "checkpoint-2").exists():
            return real_save(obj, f, *a, **kw)
        with open(f, "wb") as partial:
            partial.write(b"PK\x03\x04" + b"\0" * 100)
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    monkeypatch.setattr(torch, "save", save_until_full)
    with pytest.raises(UserError) as err:
        train_full.main([str(a) for a in common(tiny_model_dir, tokenizer_dir, small_encoded, out, "--batch_tokens",
                                                2048, "--max_steps", 6, "--save_every", 2)])
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"cannot write checkpoint-4 in {out}: torch.save could not write"), message
    assert "GiB free there. checkpoint-2 is intact; free space and run again with --resume" in message
    assert sorted(p.name for p in out.iterdir() if "checkpoint" in p.name) == ["checkpoint-2"]  # no temp dir
    assert verify(str(out / "checkpoint-2")) is None

    def json_disk_full(*a, **kw):
        raise OSError(28, "No space left on device")

    from reasoning_sft.train import checkpoints
    monkeypatch.setattr(torch, "save", real_save)
    monkeypatch.setattr(checkpoints, "write_json", json_disk_full)  # the trainer state, after the tensors
    with pytest.raises(UserError, match=r"cannot write checkpoint-4 in .*: No space left on device; .* "
                                        r"checkpoint-2 is intact"):
        train_full.main([str(a) for a in common(tiny_model_dir, tokenizer_dir, small_encoded, out, "--batch_tokens",
                                                2048, "--max_steps", 6, "--save_every", 2, "--resume")])
    assert sorted(p.name for p in out.iterdir() if "checkpoint" in p.name) == ["checkpoint-2"]
    assert verify(str(out / "checkpoint-2")) is None


@pytest.mark.slow
def test_an_overwrite_killed_mid_way_leaves_no_final_model_of_the_earlier_run(
        tmp_path, tiny_model_dir, tokenizer_dir, small_encoded):
    """A finished LoRA run, then an --overwrite run SIGKILLed at its third backward: nothing of the first run
    is left (its adapter, tokenizer, loss plot, generation config, checkpoints), and export.py and generate.py
    refuse the directory in one line. Even with the first run's adapter put back beside the new
    train_config.json (what --overwrite used to leave), both refuse it: no completed-run marker names the new
    run. The finished run is in this process; the killed one, export.py and generate.py are processes."""
    from conftest import our_error_line

    from reasoning_sft.errors import UserError
    from reasoning_sft.serve.export import export

    out, marker, aside = tmp_path / "run", tmp_path / "stalled", tmp_path / "first"
    args = common(tiny_model_dir, tokenizer_dir, small_encoded, out) + ["--batch_tokens", 600, "--max_steps", 4,
                                                                        "--lora_r", 4, "--save_every", 1]
    assert train_here("train_peft.py", *args)[0] == 0
    first = {p.name for p in out.iterdir()}
    assert {"adapter_model.safetensors", "run_complete.json", "loss.png", "generation_config.json",
            "tokenizer_config.json", "checkpoint-4"} <= first, first
    shutil.copytree(out, aside)

    child = start_stalling("train_peft.py", args + ["--overwrite"], 3, marker)
    sigkill(child)
    left = {p.name for p in out.iterdir()}
    # the new run's own files only (it stalled in step 3, after its checkpoints 1 and 2; the first run's were 3, 4)
    assert left - {"tensorboard"} == {".lock", "train_config.json", "metrics.jsonl", "checkpoint-1",
                                      "checkpoint-2"}, left
    config = json.loads((out / "train_config.json").read_text())
    assert config["run_id"] != json.loads((aside / "train_config.json").read_text())["run_id"]
    with pytest.raises(UserError, match=r"the run has no final model \(mode 'lora', no adapter_config.json\)"):
        export(str(out), str(tmp_path / "served"))

    for name in first - left - {"run_complete.json"}:  # the earlier run's final files, back beside the new config
        if (aside / name).is_file():
            shutil.copy(aside / name, out / name)
    cli = dict(cwd=REPO_ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    proc = subprocess.run([sys.executable, "export.py", "--model_dir", str(out), "--out_dir",
                           str(tmp_path / "served")], **cli)
    assert our_error_line(proc, "export.py") == (
        f"export.py: error: {out}: run {config['run_id']} (its train_config.json) did not finish (no "
        "run_complete.json): it was stopped, killed or is still running, and no final model there is its own; "
        "resume it with --resume")
    assert not (tmp_path / "served").exists()
    proc = subprocess.run([sys.executable, "generate.py", "--tokenizer_dir", str(tokenizer_dir), "--model_name",
                           str(tiny_model_dir), "--adapter_dir", str(out), "--prompt", "add two numbers",
                           "--out", str(tmp_path / "gen.jsonl")], **cli)
    assert f"run {config['run_id']} (its train_config.json) did not finish" in our_error_line(proc, "generate.py")
    assert not (tmp_path / "gen.jsonl").exists()


def test_integrity_record_catches_every_kind_of_damage(tmp_path):
    from reasoning_sft.errors import UserError
    from reasoning_sft.train.checkpoints import INTEGRITY, newest_intact_checkpoint, seal, verify

    def checkpoint(step, payload):
        path = tmp_path / f"checkpoint-{step}"
        (path / "sub").mkdir(parents=True)
        (path / "trainer_state.json").write_text("{}")
        (path / "sub" / "weights.bin").write_bytes(payload)
        seal(str(path))
        return path

    good, bad = checkpoint(1, b"a" * 1000), checkpoint(2, b"b" * 1000)
    record = json.loads((good / INTEGRITY).read_text())["files"]
    assert verify(str(good)) is None and record.keys() == {"trainer_state.json", "sub/weights.bin"}
    assert record["sub/weights.bin"] == {"size": 1000, "xxh3_128": xxhash.xxh3_128(b"a" * 1000).hexdigest()}
    weights = bad / "sub" / "weights.bin"
    weights.write_bytes(b"b" * 999 + b"c")  # same size, other content
    assert verify(str(bad)) == "sub/weights.bin does not match its xxh3_128 (corrupt)"
    weights.write_bytes(b"b" * 10)
    assert verify(str(bad)) == "sub/weights.bin has 10 bytes, 1000 expected (truncated)"
    weights.unlink()
    assert verify(str(bad)) == "sub/weights.bin is missing"
    for broken in ('{"files": ["sub/weights.bin"]}', '{"files": {"x": 3}}', "[]",  # valid JSON, wrong shape
                   '{"files": {"sub/weights.bin": {"size": 1000, "md5": "00"}}}'):  # a digest this version lacks
        (bad / INTEGRITY).write_text(broken)
        assert verify(str(bad)).startswith("unreadable integrity.json"), broken
    (bad / INTEGRITY).write_text('{"files": ')
    assert verify(str(bad)).startswith("unreadable integrity.json")

    said = []
    assert newest_intact_checkpoint(str(tmp_path), say=said.append) == str(good)
    assert said == ["--resume: checkpoint-2 is incomplete or corrupt (unreadable integrity.json (JSONDecodeError)); "
                    "moved to checkpoint-2.corrupt, using checkpoint-1"]
    (good / "sub" / "weights.bin").write_bytes(b"")
    with pytest.raises(UserError, match=r"no intact checkpoint .*checkpoint-1: sub/weights.bin has 0 bytes"):
        newest_intact_checkpoint(str(tmp_path), say=said.append)
    # a checkpoint from before integrity records: resumed from, unverified, and said so
    legacy = tmp_path / "checkpoint-3"
    legacy.mkdir()
    (legacy / "trainer_state.json").write_text("{}")
    said.clear()
    assert newest_intact_checkpoint(str(tmp_path), say=said.append) == str(legacy)
    assert said == ["--resume: checkpoint-3 has no integrity.json (written by an older version); "
                    "resuming from it unverified"]


def test_records_sealed_with_sha256_by_older_versions_still_verify(tmp_path):
    """The record names its digest per file: a checkpoint sealed with sha256 before xxh3-128 verifies, and
    damage to it is still caught."""
    from reasoning_sft.train.checkpoints import INTEGRITY, seal, verify

    path = tmp_path / "checkpoint-1"
    (path / "sub").mkdir(parents=True)
    files = {"trainer_state.json": b"{}", "sub/weights.bin": bytes(range(256)) * 300}
    for name, payload in files.items():
        (path / name).write_bytes(payload)
    old_record = {"files": {name: {"size": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}
                            for name, payload in files.items()}}  # what the sha256 version of seal() wrote
    (path / INTEGRITY).write_text(json.dumps(old_record))
    assert verify(str(path)) is None
    (path / "sub" / "weights.bin").write_bytes(files["sub/weights.bin"][:-1] + b"x")
    assert verify(str(path)) == "sub/weights.bin does not match its sha256 (corrupt)"
    seal(str(path))  # sealing again writes the new digest
    assert verify(str(path)) is None
    assert {"xxh3_128", "size"} == json.loads((path / INTEGRITY).read_text())["files"]["sub/weights.bin"].keys()


def test_many_files_hash_in_parallel_to_the_same_digests(tmp_path):
    from reasoning_sft.digests import digest_files, file_digest

    paths = []
    for i in range(12):  # more files than threads, sizes across the read chunk
        paths.append(str(tmp_path / f"f{i}"))
        with open(paths[-1], "wb") as f:
            f.write(os.urandom(i * 3 * 2**20 + i))
    seen = []
    parallel = digest_files(paths, "xxh3_128", on_bytes=seen.append, threads=4)
    assert parallel == {p: xxhash.xxh3_128(open(p, "rb").read()).hexdigest() for p in paths}
    assert sum(seen) == sum(os.path.getsize(p) for p in paths)
    assert file_digest(paths[5], "sha256") == hashlib.sha256(open(paths[5], "rb").read()).hexdigest()


def test_the_lock_names_its_holder_and_dies_with_it(tmp_path):
    """flock: a second holder is refused with the first one's pid; a SIGKILLed holder's lock is gone at once."""
    from reasoning_sft.errors import UserError
    from reasoning_sft.train.locking import OutputDirLock

    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from reasoning_sft.train.locking import "
                               "OutputDirLock; lock = OutputDirLock(sys.argv[1]).acquire(); print('held', flush=True); "
                               "time.sleep(600)", str(tmp_path / "out")], stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(UserError, match=rf"out is in use by another run \(pid {holder.pid} on .* since .*: -c "):
            OutputDirLock(str(tmp_path / "out")).acquire()
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    lock = OutputDirLock(str(tmp_path / "out")).acquire()  # no stale lock after a kill
    lock.release()


# ------------------------------------------------------------------ the data stages, SIGKILLed

def artifact_files(path):
    """{relative path: bytes} of a stage's output, without what legitimately differs between runs."""
    out = {}
    for p in sorted(Path(path).rglob("*")):
        if not p.is_file() or p.name in ("state.json", "dataset_info.json"):  # datasets' random fingerprints
            continue
        data = p.read_bytes()
        if p.name == "filter_report.json":
            data = json.dumps({k: v for k, v in json.loads(data).items() if k != "seconds"}).encode()
        out[str(p.relative_to(path))] = data
    return out


def stage_runs(tiny_model_dir, tokenizer_dir, sample_path, filtered_dir):
    """(script, argv without the output flag, output flag, reference fixture name) for each data stage."""
    return [("prepare_llamatokenizer.py", ["--model", tiny_model_dir], "--out_dir"),
            ("filter_data.py", ["--json", sample_path, "--tokenizer", tokenizer_dir, "--max_len", 256], "--out_dir"),
            ("encode_dataset.py", ["--json", filtered_dir / "data.json", "--tokenizer", tokenizer_dir,
                                   "--max_len", 256, "--num_proc", 1], "--encode_dir")]


@pytest.mark.slow
def test_data_stages_killed_at_random_leave_nothing_that_looks_complete(
        tmp_path, tiny_model_dir, tokenizer_dir, sample_path, filtered_dir, encoded_dir):
    """Each stage SIGKILLed twice: at a seeded-random time after start, and at a seeded-random moment after
    its temporary output appeared (while it writes). Afterwards the output's name is absent (only a hidden
    temporary sibling may remain) or holds the whole artifact; a rerun gives byte-identical output."""
    import importlib

    references = {"prepare_llamatokenizer.py": tokenizer_dir, "filter_data.py": filtered_dir,
                  "encode_dataset.py": encoded_dir}
    rng, mid_write = random.Random(11), 0
    for script, argv, out_flag in stage_runs(tiny_model_dir, tokenizer_dir, sample_path, filtered_dir):
        reference = artifact_files(references[script])
        for attempt, when in enumerate(("after start", "while writing")):
            out = tmp_path / f"{script[:-3]}-{attempt}" / "artifact"
            out.parent.mkdir()
            child = subprocess.Popen([sys.executable, str(REPO_ROOT / script), *map(str, argv), out_flag, str(out)],
                                     env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if when == "after start":
                time.sleep(rng.uniform(0.5, 4.0))
            else:
                deadline = time.time() + 240
                while not any(p.name.startswith(".artifact.tmp-") for p in out.parent.iterdir()):
                    if child.poll() is not None or time.time() > deadline:
                        break
                    time.sleep(0.005)
                time.sleep(rng.uniform(0, 0.3))
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=60)
            left = sorted(p.name for p in out.parent.iterdir())
            mid_write += any(name.startswith(".artifact.tmp-") for name in left)
            assert all(name == "artifact" or name.startswith(".artifact.tmp-") for name in left), left
            if out.exists():  # it had finished: the whole artifact
                assert artifact_files(out) == reference, (script, when)
            module = importlib.import_module(script[:-3])
            assert module.main([*map(str, argv), out_flag, str(out), "--overwrite"]) == 0
            assert artifact_files(out) == reference, (script, when)
    assert mid_write >= 1, "no kill landed while a stage was writing: the test tested nothing"


# ------------------------------------------------------------------ accounting, end to end

def test_every_record_and_token_is_accounted_for_from_raw_data_to_the_train_log(
        tmp_path, sample_records, tokenizer_dir, tiny_model_dir):
    """raw = kept + dropped by reason (filter report); kept = rows encoded (manifest); one epoch trains
    exactly the encoded target tokens (metrics.jsonl)."""
    import datasets
    import train_full

    import encode_dataset
    import filter_data

    good = list(sample_records[:12])
    raw = good + [good[0], {"instruction": "x"}, dict(good[1], code="def f(:"), "text",
                  dict(good[2], reasoning="see </s> here"), dict(good[3], reasoning="x " * 3000)]
    (tmp_path / "raw.json").write_text(json.dumps(raw))
    assert filter_data.main(["--json", str(tmp_path / "raw.json"), "--tokenizer", str(tokenizer_dir), "--out_dir",
                             str(tmp_path / "f"), "--max_len", "512", "--no_truncate", "--no_plot"]) == 0
    report = json.loads((tmp_path / "f" / "filter_report.json").read_text())
    kept = json.loads((tmp_path / "f" / "data.json").read_text())
    assert report["input_records"] == len(raw) == report["kept"] + sum(report["drop_reasons"].values())
    assert report["kept"] == len(kept)
    assert {"duplicate", "missing_reasoning", "python_syntax_error", "not_an_object", "special_token_in_reasoning",
            "too_long"} <= report["drop_reasons"].keys()

    assert encode_dataset.main(["--json", str(tmp_path / "f" / "data.json"), "--tokenizer", str(tokenizer_dir),
                                "--encode_dir", str(tmp_path / "e"), "--max_len", "512", "--num_proc", "1"]) == 0
    manifest = json.loads((tmp_path / "e" / "manifest.json").read_text())
    encoded = datasets.load_from_disk(str(tmp_path / "e" / "arrow_dataset"))
    assert manifest["rows"] == len(encoded) == report["kept"]
    assert manifest["total_tokens"] == report["tokens_after"]["total"] == sum(encoded["length"])
    assert manifest["trained_tokens"] == sum(sum(1 for x in row if x != -100) for row in encoded["labels"])

    out = tmp_path / "train"
    assert train_full.main(["--model_name", str(tiny_model_dir), "--tokenizer_dir", str(tokenizer_dir),
                            "--train_dir", str(tmp_path / "e" / "arrow_dataset"), "--output_dir", str(out),
                            "--batch_tokens", "2048", "--epochs", "2", "--log_every", "1"]) == 0
    steps = [r for r in metrics(out) if "loss" in r]
    for epoch in (1, 2):
        in_epoch = [r["tokens"] for r in steps if epoch - 1 < r["epoch"] <= epoch]
        assert sum(in_epoch) == manifest["trained_tokens"], epoch
