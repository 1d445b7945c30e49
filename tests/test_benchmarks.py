"""The training benchmark runs as a user runs it (--quick: a tiny model, 16 records, whole processes)."""

import json

import pytest
from conftest import run_script


@pytest.mark.slow
def test_bench_train_quick_times_ours_against_trainer(tmp_path):
    out = tmp_path / "bench"
    proc = run_script("benchmarks/bench_train.py", "--quick", "--only", "trainer_group,ours_padded",
                      "--out_dir", out, "--threads", 1, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["target_tokens"] > 0
    assert set(results["target_tokens_per_s"]) == {"trainer_group", "ours_padded"}
    assert all(rate > 0 for rate in results["target_tokens_per_s"].values())
    assert "ours_padded/trainer_group" in results["ratios"] and "ours_padded/trainer_group" in proc.stdout


def test_ours_packed_runs_wherever_the_trainer_has_a_varlen_kernel():
    """The benchmark asks the trainer's own kernel choice (flash-attn or PyTorch's varlen_attn), not for flash-attn."""

    import bench_train  # benchmarks/ is on sys.path (conftest)
    import torch

    from reasoning_sft.train import attention
    with attention.kernel_override(attention.reference_kernel()):  # a kernel without the flash-attn package
        assert bench_train.packed_skip_reason() is None
    if not torch.cuda.is_available():
        assert "torch.nn.attention.varlen" in bench_train.packed_skip_reason()


def test_bench_optimizer_step_times_every_optimizer_and_policy():
    proc = run_script("benchmarks/bench_optimizer_step.py", "--params", 3, "--shape", 8, 8, "--repeat", 1, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line.split() for line in proc.stdout.splitlines() if line.startswith("  ")]
    assert [row[0] for row in rows] == ["adamw_foreach", "adamw_fused", "adamw8bit"] * 2
    assert all(float(row[-1]) > 0 for row in rows)
    assert "fp32: AdamW foreach / fused = " in proc.stdout and "bf16: AdamW foreach / fused = " in proc.stdout


def test_markdown_table_is_the_one_table_format_of_the_benchmarks():
    from tables import markdown_table

    table = markdown_table(("run", "tokens/s"), [("full", "1,024"), ("lora", "")], right=(1,))
    assert table.splitlines() == ["| run | tokens/s |", "|---|---:|", "| full | 1,024 |", "| lora |  |"]


@pytest.mark.slow
def test_bench_batching_runs_old_and_new_batching_as_a_user_runs_it(tmp_path):
    """Batch statistics of both batchings and one fine-tuning step each: the old one from git history."""
    out = tmp_path / "batching"
    proc = run_script("benchmarks/bench_batching.py", "--out_dir", out, "--steps", 1, "--layouts", "packed",
                      "--pretrain_epochs", 0, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    packed = results["sets"]["lognormal"]["layouts"]["packed"]
    assert packed["new"]["remeet"] < 0.1 < packed["old"]["remeet"]
    assert packed["new"]["mean_cv"] > 0.9 * packed["random_groups_cv"] > 100 * packed["old"]["mean_cv"]
    losses = results["heldout_loss"]
    assert set(losses) == {"old_ref", "packed/old", "packed/new"}
    assert all(0 < losses[k]["loss"] < 20 for k in ("packed/old", "packed/new"))
    assert not (out / "old_code" / "reasoning_sft" / "data" / "batching.py").read_text().count("MEGA_BATCHES")
