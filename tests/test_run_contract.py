"""The resume contract and the completed-run marker (reasoning_sft/train/run_contract.py).

A --resume with any flag that shapes the run changed is refused in one line naming the flag and both
values; --reschedule stretches the rest of the saved LR schedule and a later plain --resume keeps the
stretch; --overwrite empties a training output before training starts; export.py and generate.py take
a training output's final weights only when its completed-run marker names its train_config.json's run.
The runs are the real trainers in this process (train_here): what is checked is their output; the kill
of an --overwrite run is a real process in test_crashes.py. The tests with several runs are marked slow.
"""

import json
import shutil

import pytest
from conftest import common, metrics, train_here

# a few steps per epoch on the small set; --epochs 4 leaves room for --max_steps 8
ARGS = ["--batch_tokens", 600, "--epochs", 4, "--lr", 5e-3, "--lora_r", 4, "--seed", 3, "--warmup_ratio", 0.25]


def lora(tiny_model_dir, tokenizer_dir, small_encoded, out, *extra):
    return train_here("train_peft.py", *common(tiny_model_dir, tokenizer_dir, small_encoded, out), *ARGS, *extra)


def lrs(out):
    return {r["step"]: r["lr"] for r in metrics(out) if "lr" in r}


def drop_after(out, step):
    """out as a run killed right after checkpoint-`step` leaves it: newer checkpoints and the final files gone."""
    for path in out.iterdir():
        name = path.name
        if name.startswith("checkpoint-") and int(name.split("-")[1]) > step:
            shutil.rmtree(path)
        elif name in ("adapter_model.safetensors", "run_complete.json", "loss.png"):
            path.unlink()


def test_every_trainer_flag_is_in_the_contract_unless_marked_free():
    """The contract is every flag of both trainers but the few marked free (or compared by content): a flag
    added later is held to on --resume without anyone listing it."""
    import train_full
    import train_peft

    from reasoning_sft.train import run_contract

    required = ["--model_name", "m", "--tokenizer_dir", "t", "--train_dir", "d", "--output_dir", "o"]
    manifest = {"tokenizer_fingerprint": "f", "total_tokens": 10, "source": "/x"}
    dests = set()
    for script in (train_peft, train_full):
        args = script.parse_args(required)
        dests |= set(vars(args))
        contract = run_contract.build_contract(args, "m", 1, False, 5, manifest, {})
        flags = set(vars(args)) - run_contract.MAY_CHANGE_ON_RESUME - run_contract.COMPARED_BY_CONTENT
        assert flags <= set(contract)
        assert not (run_contract.MAY_CHANGE_ON_RESUME | run_contract.COMPARED_BY_CONTENT) & set(contract)
    # what the issue names, by name
    assert {"epochs", "max_steps", "lr", "warmup_ratio", "lr_scheduler", "lora_r", "lora_alpha", "lora_dropout",
            "lora_target_modules", "precision", "adam8bit", "packing", "batch_tokens", "grad_accum",
            "seed"} <= dests - run_contract.MAY_CHANGE_ON_RESUME
    # every name marked free is a real flag (a renamed flag cannot leave a stale entry behind)
    assert run_contract.MAY_CHANGE_ON_RESUME | run_contract.COMPARED_BY_CONTENT <= dests


@pytest.mark.slow  # several trainer runs in this process
def test_a_resume_that_changes_a_flag_is_refused_in_one_line(tmp_path, tiny_model_dir, tokenizer_dir,
                                                             small_encoded):
    from reasoning_sft.errors import UserError
    from reasoning_sft.train.checkpoints import seal

    out = tmp_path / "run"
    assert lora(tiny_model_dir, tokenizer_dir, small_encoded, out, "--max_steps", 4, "--save_every", 2)[0] == 0
    drop_after(out, 2)
    before = sorted(p.name for p in out.iterdir())
    changed = {
        ("--lr", "0.001"): "--resume: --lr is 0.001 here but 0.005 in checkpoint-2; ",
        ("--lora_r", "8"): "--resume: --lora_r is 8 here but 4 in checkpoint-2; ",
        ("--warmup_ratio", "0.1"): "--resume: --warmup_ratio is 0.1 here but 0.25 in checkpoint-2; ",
        ("--lr_scheduler", "linear"): '--resume: --lr_scheduler is "linear" here but "cosine" in checkpoint-2; ',
        ("--precision", "fp32"): '--resume: --precision is "fp32" here but "auto" in checkpoint-2; ',
        ("--max_steps", "8"): "--resume: --max_steps is 8 here but 4 in checkpoint-2; pass --reschedule to ",
    }
    for (flag, value), start in changed.items():
        argv = ["--max_steps", 4, "--resume", flag, value] if flag != "--max_steps" else ["--resume", flag, value]
        with pytest.raises(UserError) as err:
            lora(tiny_model_dir, tokenizer_dir, small_encoded, out, *argv)
        message = str(err.value)
        assert "\n" not in message and message.startswith(start), message
        assert message.endswith("resume with the same value, or start over with --overwrite"), message
        assert sorted(p.name for p in out.iterdir()) == before  # nothing written, nothing resumed
    # a moved copy of the data would resume; another dataset does not (compared by content, not by path)
    with pytest.raises(UserError, match=r"^--resume: --packing is \"on\" here but \"auto\""):
        lora(tiny_model_dir, tokenizer_dir, small_encoded, out, "--max_steps", 4, "--resume", "--packing", "on")
    # what may change does: where logs go, how often, checkpoints
    code, stdout = lora(tiny_model_dir, tokenizer_dir, small_encoded, out, "--max_steps", 4, "--resume",
                        "--log_every", 2, "--save_every", 1, "--keep_checkpoints", 0)
    assert code == 0 and f"resumed from {out / 'checkpoint-2'}" in stdout
    assert sorted(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*")) == [2, 3, 4]

    # a checkpoint of an older version records only its "signature" (data order and data): that is compared,
    # and the rest is said once as not recorded
    newest = out / "checkpoint-4"
    state = json.loads((newest / "trainer_state.json").read_text())
    kept = ("batch_tokens", "grad_accum", "seed", "world_size", "packed", "rows", "eval_fraction", "dataset",
            "dataset_tokens")
    contract = state.pop("contract")
    state["signature"] = {k: contract[k] for k in kept}
    del state["schedule"]
    (newest / "trainer_state.json").write_text(json.dumps(state))
    seal(str(newest))  # as that version sealed it
    with pytest.raises(UserError, match=r"^--resume: --batch_tokens is 700 here but 600 in checkpoint-4; "):
        lora(tiny_model_dir, tokenizer_dir, small_encoded, out, "--max_steps", 4, "--resume", "--batch_tokens", 700)
    code, stdout = lora(tiny_model_dir, tokenizer_dir, small_encoded, out, "--max_steps", 4, "--resume", "--lr", 1)
    assert code == 0 and "--resume: checkpoint-4 (an older version's) does not record the trainer (LoRA or full)" \
        in stdout


@pytest.mark.slow  # several trainer runs in this process
def test_reschedule_stretches_the_rest_of_the_schedule_and_a_plain_resume_keeps_it(
        tmp_path, tiny_model_dir, tokenizer_dir, small_encoded):
    """A 4-step cosine run resumed at step 2 with --max_steps 8 --reschedule: its LR at step 2 + 3k is the
    4-step run's at step 2 + k (the rest of the curve stretched 3x), ending at 0 at step 8. That run, cut at
    its step 4 and resumed plainly, ends bit-identical to it: the stretch is saved with its checkpoints."""
    import torch
    from safetensors.torch import load_file

    from reasoning_sft.errors import UserError

    short, long_, cut = tmp_path / "short", tmp_path / "long", tmp_path / "cut"
    assert lora(tiny_model_dir, tokenizer_dir, small_encoded, short, "--max_steps", 4, "--save_every", 2)[0] == 0
    old = lrs(short)
    shutil.copytree(short, long_)
    drop_after(long_, 2)
    code, stdout = lora(tiny_model_dir, tokenizer_dir, small_encoded, long_, "--max_steps", 8, "--resume",
                        "--reschedule", "--save_every", 2, "--keep_checkpoints", 0)
    assert code == 0 and "--reschedule: the LR schedule from step 2 now ends at step 8" in stdout
    new = lrs(long_)
    assert sorted(new) == list(range(1, 9))
    assert [new[s] for s in (1, 2)] == [old[1], old[2]]  # the steps before the resume, as they were
    assert [new[s] for s in (2, 5, 8)] == [old[2], old[3], old[4]] and new[8] == 0
    assert all(new[s] > new[s + 1] for s in range(2, 8))  # no jump: it decays on from where it was
    config = json.loads((long_ / "train_config.json").read_text())
    assert config["args"]["max_steps"] == 8 and config["total_steps"] == 8

    shutil.copytree(long_, cut)
    drop_after(cut, 4)
    with pytest.raises(UserError, match=r"^--resume: --max_steps is 4 here but 8 in checkpoint-4; "):
        lora(tiny_model_dir, tokenizer_dir, small_encoded, cut, "--max_steps", 4, "--resume")
    assert lora(tiny_model_dir, tokenizer_dir, small_encoded, cut, "--max_steps", 8, "--resume",
                "--save_every", 2)[0] == 0
    assert lrs(cut) == new
    a, b = load_file(str(long_ / "adapter_model.safetensors")), load_file(str(cut / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    with pytest.raises(UserError, match=r"^--reschedule: the run is at step 8; --max_steps/--epochs must give "):
        lora(tiny_model_dir, tokenizer_dir, small_encoded, cut, "--max_steps", 6, "--resume", "--reschedule")
    with pytest.raises(UserError, match=r"^--reschedule: the saved schedule ended at step 8 "):
        lora(tiny_model_dir, tokenizer_dir, small_encoded, cut, "--max_steps", 12, "--resume", "--reschedule")


def test_overwrite_empties_a_training_output_before_training_and_nothing_else(
        tmp_path, tiny_model_dir, tokenizer_dir, small_encoded):
    """What the second run finds at its first step is only what it wrote itself; a directory that is not a
    training output is not emptied (refused in one line, untouched)."""
    from reasoning_sft.errors import UserError
    from reasoning_sft.train.loop import Callback

    out = tmp_path / "run"
    assert lora(tiny_model_dir, tokenizer_dir, small_encoded, out, "--max_steps", 2, "--merge_lora")[0] == 0
    first = sorted(p.name for p in out.iterdir())
    for name in ("adapter_model.safetensors", "adapter_config.json", "loss.png", "generation_config.json",
                 "train_config.json", "run_complete.json", "metrics.jsonl", "checkpoint-2", "merged",
                 "tokenizer_config.json"):
        assert name in first, first
    first_id = json.loads((out / "train_config.json").read_text())["run_id"]
    assert json.loads((out / "run_complete.json").read_text()) == {"run_id": first_id, "global_step": 2}
    (out / "checkpoint-1.corrupt").mkdir()  # what a failed verification leaves aside: cleared too

    seen = []

    class Look(Callback):
        def step_context(self, trainer):
            if trainer.position.global_step == 0:
                seen.extend(sorted(p.name for p in out.iterdir()))
            return super().step_context(trainer)

    code, _ = train_here("train_peft.py", *common(tiny_model_dir, tokenizer_dir, small_encoded, out), *ARGS,
                         "--max_steps", 1, "--overwrite", "--report_to", "none", callbacks=[Look()])
    assert code == 0
    assert seen == [".lock", "train_config.json"], seen  # the first run's files all gone, its lock file kept
    second_id = json.loads((out / "train_config.json").read_text())["run_id"]
    assert second_id != first_id
    assert json.loads((out / "run_complete.json").read_text())["run_id"] == second_id
    assert "merged" not in {p.name for p in out.iterdir()}

    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep me")
    with pytest.raises(UserError) as err:
        train_here("train_peft.py", *common(tiny_model_dir, tokenizer_dir, small_encoded, other), *ARGS,
                   "--max_steps", 1, "--overwrite")
    assert str(err.value) == (f"--overwrite: {other} is not a training output (no train_config.json; it holds "
                              "mine.txt) and --overwrite empties the directory; give a new or empty --output_dir")
    assert sorted(p.name for p in other.iterdir()) == [".lock", "mine.txt"]


def test_the_marker_decides_whose_final_weights_a_directory_holds(tmp_path):
    """check_run_complete on directories as a trainer leaves them: finished, unfinished, mixed, older."""
    from reasoning_sft.errors import UserError
    from reasoning_sft.train.run_contract import check_training_output_if_any

    d = tmp_path / "out"
    d.mkdir()
    check_training_output_if_any(str(d))  # not a training output (an export, a hub model): not this check's
    (d / "train_config.json").write_text(json.dumps({"mode": "lora", "args": {}}))
    check_training_output_if_any(str(d))  # written before run ids existed: taken as it is
    (d / "train_config.json").write_text(json.dumps({"mode": "lora", "run_id": "b2", "args": {}}))
    with pytest.raises(UserError) as err:
        check_training_output_if_any(str(d))
    assert str(err.value) == (f"{d}: run b2 (its train_config.json) did not finish (no run_complete.json): it was "
                              "stopped, killed or is still running, and no final model there is its own; "
                              "resume it with --resume")
    (d / "run_complete.json").write_text(json.dumps({"run_id": "a1", "global_step": 9}))
    with pytest.raises(UserError, match=r"its final model is from run a1, but train_config.json is run b2's"):
        check_training_output_if_any(str(d))
    (d / "run_complete.json").write_text(json.dumps({"run_id": "b2", "global_step": 9}))
    check_training_output_if_any(str(d))


def test_a_stretched_schedule_composes(tmp_path):
    """Two --reschedule in a row: each keeps the LR where it was and ends where its shape ends."""
    import torch

    from reasoning_sft.train import run_contract

    def curve(record, steps):
        optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        scheduler = run_contract.make_scheduler(optimizer, record)
        return [scheduler.lr_lambdas[0](t) for t in steps]

    base = run_contract.schedule_record("cosine", 2, 10)
    once = run_contract.rescheduled(base, 4, 20)
    twice = run_contract.rescheduled(once, 12, 16)
    assert twice["stretches"] == [[4, 10, 20], [12, 20, 16]]
    b, o, t = curve(base, range(21)), curve(once, range(21)), curve(twice, range(21))
    assert o[:5] == b[:5] and t[:13] == o[:13]
    assert o[20] == 0 and t[16] == 0 and o[12] == b[7]  # 4 + (12 - 4) * (10 - 4) / (20 - 4) = 7
    assert all(x >= y for x, y in zip(t[2:17], t[3:17]))
    assert run_contract.rescheduled(base, 4, 10) is base  # the same length: nothing to stretch
