"""The training benchmark runs as a user runs it (--quick: a tiny model, 16 records, whole processes)."""

import json

from conftest import run_script


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
