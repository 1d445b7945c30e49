"""benchmarks/gpu_check.py --smoke: the GPU check's own code, at tiny size on CPU, run as a user runs it.

The GPU run itself (bf16 kernels, an H100's numbers) cannot happen in CI; this keeps every step of
it working: stages 1-3, the correctness checks through the varlen plumbing (reference kernel),
the matmul rate, each trainer in its own process plus the transformers.Trainer baseline, the report.
"""

import json

import pytest


@pytest.mark.slow
def test_gpu_check_smoke_runs_every_step(tmp_path, run_script):
    out = tmp_path / "out"
    proc = run_script("benchmarks/gpu_check.py", "--smoke", "--steps", 2, "--warmup", 1, "--out", out, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    checks = results["correctness"]
    assert all(checks["ok"].values()), checks
    assert checks["kernel"].startswith("varlen reference") and checks["loss_rel_diff"] < 1e-5
    assert set(results["speed"]) == {"full_packed", "full_padded", "lora_packed", "hf_trainer"}
    for name, run in results["speed"].items():
        assert run["tokens_per_s"] > 0 and run["mfu"] > 0, (name, run)  # CPU numbers: not meaningful
    speed = results["speed"]
    assert speed["full_padded"]["batch_efficiency"] < 1 == speed["full_packed"]["batch_efficiency"]
    assert "attention: varlen reference" in proc.stdout  # the trainers' first lines name the kernel
    table = (out / "results.md").read_text()
    assert "| full_packed |" in table and "| hf_trainer |" in table
    assert sorted(p.name for p in out.iterdir()) == ["results.json", "results.md"]  # the work dir is gone


def test_without_bitsandbytes_or_peft_the_runs_say_so():
    """No bitsandbytes: plain AdamW everywhere, labelled; no peft: no LoRA run."""
    import argparse
    import importlib.util

    from conftest import REPO_ROOT

    spec = importlib.util.spec_from_file_location("gpu_check", REPO_ROOT / "benchmarks" / "gpu_check.py")
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    args = argparse.Namespace(steps=4, warmup=2)
    runs = gpu_check.speed_runs(args, gpu_check.SMOKE, ("m", "t", "d"), adam8bit=False, have_peft=False,
                                trainer_batch=3)
    assert [r.name for r in runs] == ["full_packed", "full_padded", "hf_trainer"]
    for run in runs:
        assert "--adam8bit" not in run.argv and "bitsandbytes missing" in run.label
    with8bit = gpu_check.speed_runs(args, gpu_check.SMOKE, ("m", "t", "d"), adam8bit=True, have_peft=True,
                                    trainer_batch=3)
    assert [r.name for r in with8bit] == ["full_packed", "full_padded", "lora_packed", "hf_trainer"]
    assert all("--adam8bit" in r.argv for r in with8bit if r.kind != "train_peft")
