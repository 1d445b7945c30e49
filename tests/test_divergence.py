"""A run that diverges stops clean (issue 17, part 3).

The non-finite steps come from real inputs: a base model with NaN in the input embedding rows of
tokens that only some training rows hold (the steps with those rows give a NaN loss, the others
train as usual), and a learning rate so high that the weights overflow after a few steps.
"""

import json
import math
from collections import Counter

import numpy as np
import pytest
import torch
from conftest import common, metrics, one_and_two_processes, run_train, train_here

BATCH_TOKENS = 600  # one sample row a step (the rows are 300-740 tokens)
BAD_STEPS = (3, 6)  # the steps whose row carries a token with a NaN embedding


def strict_json_rows(path):
    """metrics.jsonl read as jq or a browser reads it: a bare NaN or Infinity is an error."""
    def refuse(token):
        raise ValueError(f"not strict JSON: {token}")

    with open(path, encoding="utf-8") as f:
        return [json.loads(line, parse_constant=refuse) for line in f]


def tokens_only_in(dataset, row, avoid):
    """Token ids that training row `row` holds and no other row does (nor `avoid`)."""
    seen = Counter()
    for ids in dataset["input_ids"]:
        seen.update(set(ids))
    return sorted(t for t in set(dataset[row]["input_ids"]) if seen[t] == 1 and t not in avoid)


def model_with_nan_rows(tiny_model_dir, out_dir, token_ids):
    """The tiny model with NaN in the input embedding rows of `token_ids` (its head is not tied to them)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    assert not model.config.tie_word_embeddings
    with torch.no_grad():
        model.get_input_embeddings().weight[token_ids] = float("nan")
    model.save_pretrained(str(out_dir))
    return out_dir


@pytest.fixture(scope="session")
def nan_row_model(tmp_path_factory, tiny_model_dir, small_encoded, prepared_tokenizer):
    """A base model whose NaN rows are hit by the rows of BAD_STEPS (one process, BATCH_TOKENS, seed 42)."""
    import datasets

    from reasoning_sft.data.batching import step_schedule

    tokenizer = prepared_tokenizer[0]
    dataset = datasets.load_from_disk(str(small_encoded))
    plan = step_schedule(np.asarray(dataset["length"]), BATCH_TOKENS, False, 42, 0, 1, 1)
    # the new tag rows start at the mean of their names' pieces: a NaN there would be in every row
    pieces = {i for name in ("reasoning", "intention", "code")
              for i in tokenizer(name, add_special_tokens=False)["input_ids"]}
    bad = []
    for step in BAD_STEPS:
        (row,), = plan[step - 1][0]  # the one row of that step's one micro-batch on the one rank
        bad.append(tokens_only_in(dataset, row, pieces)[0])
    return model_with_nan_rows(tiny_model_dir, tmp_path_factory.mktemp("nan_rows") / "model", bad)


def skipped_steps(out):
    return [r["step"] for r in metrics(out) if r.get("skipped")]


def checkpoint_state(checkpoint):
    """What a step may change: trainable weights, optimizer state, LR scheduler."""
    return (torch.load(checkpoint / "0_trainable_params.pt"),
            torch.load(checkpoint / "optimizer.bin", weights_only=False)["state"],
            torch.load(checkpoint / "custom_checkpoint_0.pkl", weights_only=False))


def assert_same(a, b, where=""):
    """Equal, bit for bit, NaN where NaN (a NaN row of the base model stays NaN)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif torch.is_tensor(a):
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True, msg=where)
    else:
        assert a == b, where


@pytest.mark.slow
def test_a_non_finite_step_is_skipped_changes_nothing_and_the_run_goes_on(
        tmp_path, nan_row_model, tokenizer_dir, small_encoded):
    from safetensors.torch import load_file

    out = tmp_path / "full"
    code, stdout = train_here("train_full.py", *common(nan_row_model, tokenizer_dir, small_encoded, out),
                              "--batch_tokens", BATCH_TOKENS, "--max_steps", BAD_STEPS[-1], "--lr", 1e-3,
                              "--log_every", 2, "--save_every", 1, "--keep_checkpoints", 0)
    assert code == 0
    for step in BAD_STEPS:
        assert f"step {step}: loss nan, gradient norm nan: not finite, update skipped (1 in a row" in stdout
    assert f"done: {BAD_STEPS[-1]} steps, 2 skipped (not finite)" in stdout, stdout

    rows = {r["step"]: r for r in strict_json_rows(out / "metrics.jsonl")}
    # a skipped step has its own record whatever --log_every (2 here), its loss and norm as null
    assert sorted(rows) == [1, 2, 3, 4, 6] and skipped_steps(out) == list(BAD_STEPS)
    for step in BAD_STEPS:
        assert rows[step]["loss"] is None and rows[step]["grad_norm"] is None and rows[step]["bad_in_a_row"] == 1
    assert rows[3]["lr"] == rows[2]["lr"] != rows[4]["lr"]  # no scheduler step on a skipped step
    assert all(math.isfinite(rows[s]["loss"]) and not rows[s].get("skipped") for s in (1, 2, 4))

    # the run went on: the steps between the bad ones trained
    key = "model.model.layers.0.mlp.up_proj.weight"  # the loss wrapper's "model." before the model's names
    assert not torch.equal(checkpoint_state(out / "checkpoint-2")[0][key],
                           checkpoint_state(out / "checkpoint-4")[0][key])
    # no periodic checkpoint in a streak of skipped steps; the last step was skipped: its end checkpoint,
    # weights, optimizer and scheduler, and the final model equal those of the step before
    assert not (out / "checkpoint-3").exists()
    assert_same(checkpoint_state(out / "checkpoint-5"), checkpoint_state(out / "checkpoint-6"))
    final = load_file(str(out / "model.safetensors"))
    weights_5 = {k.removeprefix("model."): v for k, v in checkpoint_state(out / "checkpoint-5")[0].items()}
    assert_same(weights_5, {k: final[k] for k in weights_5})
    assert final["model.embed_tokens.weight"].isnan().any(dim=1).sum() == len(BAD_STEPS)  # the base's NaN rows only


@pytest.mark.slow
def test_non_finite_steps_in_a_row_stop_the_run_with_one_line(tmp_path, tiny_model_dir, tokenizer_dir,
                                                               small_encoded):
    """An LR far too high without clipping: the weights overflow after two steps; three non-finite
    steps in a row stop the run with one line naming them and the last good checkpoint, exit 3,
    and no adapter written."""
    out = tmp_path / "lora"
    args = common(tiny_model_dir, tokenizer_dir, small_encoded, out) + [
        "--batch_tokens", BATCH_TOKENS, "--max_steps", 12, "--lr", 1e20, "--max_grad_norm", 0,
        "--lr_scheduler", "constant_with_warmup", "--warmup_ratio", 0.25, "--save_every", 2]
    proc = run_train("train_peft.py", *args, launcher="python")
    assert proc.returncode == 3 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    ours = [line for line in proc.stderr.splitlines() if line.startswith("train_peft.py: ")]
    assert ours == [f"train_peft.py: error: loss or gradient norm not finite at steps 3-5 (3 in a row, "
                    f"--max_bad_steps 3): no update was applied from them and no final model was written; "
                    f"last good checkpoint: {out / 'checkpoint-2'}"]
    assert sorted(p.name for p in out.iterdir() if p.name != ".lock") == ["checkpoint-2", "metrics.jsonl",
                                                                        "train_config.json"]
    rows = strict_json_rows(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]
    assert [r.get("bad_in_a_row") for r in rows] == [None, None, 1, 2, 3] and rows[2]["loss"] is None

    from reasoning_sft.errors import UserError  # a refusal of the arguments: what the CLI prints with exit 2

    with pytest.raises(UserError, match="--max_bad_steps must be >= 1"):
        train_here("train_peft.py", *args, "--max_bad_steps", 0)


@pytest.mark.slow
def test_every_process_skips_the_same_steps(tmp_path, nan_row_model, tokenizer_dir, small_encoded):
    """2 processes (gloo): a NaN row lands on one rank; the reduced loss tells both, so both skip that step.
    Same skipped steps, step losses and weights as 1 process with --grad_accum 2."""
    from safetensors.torch import load_file

    one, two = one_and_two_processes(tmp_path, nan_row_model, tokenizer_dir, small_encoded)
    n_steps = len(metrics(one))
    assert 1 <= len(skipped_steps(one)) < n_steps and skipped_steps(one) == skipped_steps(two)
    losses = {run: {r["step"]: r["loss"] for r in metrics(run) if not r.get("skipped")} for run in (one, two)}
    assert losses[one].keys() == losses[two].keys()
    assert list(losses[one].values()) == pytest.approx(list(losses[two].values()), rel=1e-5)
    a, b = load_file(str(one / "model.safetensors")), load_file(str(two / "model.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, equal_nan=True)


def test_metrics_log_writes_strict_json(tmp_path, capsys):
    """NaN and infinities become null; the plain log line and the closing summary still print."""
    from accelerate import Accelerator

    from reasoning_sft.plots import loss_curves
    from reasoning_sft.train.metrics import MetricsLog

    log = MetricsLog(Accelerator(cpu=True), str(tmp_path), 3, 0)
    log.write({"step": 1, "loss": 2.5, "grad_norm": 1.0, "lr": 1e-3})
    log.write({"step": 2, "loss": float("nan"), "grad_norm": float("inf"), "lr": 1e-3, "loss_code": -float("inf"),
               "skipped": True})
    log.write({"step": 3, "eval_loss": float("nan")})
    log.close()
    rows = strict_json_rows(tmp_path / "metrics.jsonl")
    assert rows[1] == {"step": 2, "loss": None, "grad_norm": None, "lr": 1e-3, "loss_code": None, "skipped": True}
    assert rows[2] == {"step": 3, "eval_loss": None}
    assert log.closing_summary() == ", 1 skipped (not finite), loss 2.5000"
    loss_curves(str(tmp_path / "metrics.jsonl"), str(tmp_path / "loss.png"))  # the plot reads null losses
    assert (tmp_path / "loss.png").stat().st_size > 0
