"""benchmarks/gpu_check.py --smoke: the GPU check's own code, at tiny size on CPU, run as a user runs it.

The GPU run itself (bf16 kernels, an H100's numbers) cannot happen in CI; this keeps every step of
it working: stages 1-3, the correctness checks through the varlen plumbing (reference kernel),
the matmul rate, each trainer in its own process plus the transformers.Trainer baseline, the report.
"""

import json

import pytest


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """One --smoke run of every phase (one process: stages 1-3 and the model are built once for all)."""
    from conftest import run_script

    out = tmp_path_factory.mktemp("gpu_check") / "out"
    proc = run_script("benchmarks/gpu_check.py", "--smoke", "--only", "correctness,speed,precision,fsdp,scale,sampling",
                      "--steps", 2, "--warmup", 1, "--scale_budget", 0, "--out", out, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc, json.loads((out / "results.json").read_text())


@pytest.mark.slow
def test_gpu_check_smoke_runs_every_phase(smoke):
    out, proc, results = smoke
    assert sorted(p.name for p in out.iterdir()) == ["results.json", "results.md"]  # the work dir is gone
    assert "attention: varlen reference" in proc.stdout  # the trainers' first lines name the kernel


@pytest.mark.slow
def test_correctness_and_speed_phases(smoke):
    out, proc, results = smoke
    checks = results["correctness"]
    assert all(checks["ok"].values()), checks
    assert checks["kernel"].startswith("varlen reference") and checks["loss_rel_diff"] < 1e-5
    assert set(results["speed"]) == {"full_packed", "full_padded", "lora_packed", "hf_trainer"}
    for name, run in results["speed"].items():
        assert run["tokens_per_s"] > 0 and run["mfu"] > 0, (name, run)  # CPU numbers: not meaningful
    speed = results["speed"]
    assert speed["full_padded"]["batch_efficiency"] < 1 == speed["full_packed"]["batch_efficiency"]
    for name in ("full_packed", "full_padded"):  # no --precision given: the default, auto, is bf16 under --flash_attn
        assert speed[name]["precision"]["policy"] == "bf16", speed[name]
    table = (out / "results.md").read_text()
    assert "| full_packed |" in table and "| hf_trainer |" in table and "| bf16 |" in table


@pytest.mark.slow
def test_precision_phase(smoke):
    """One packed full fine-tuning run per --precision policy, each naming the policy it ran; tokens/s, and
    the weight elements changed, which bf16's stochastic rounding keeps above round-to-nearest's at lr 2e-5."""
    out, proc, results = smoke
    runs = results["precision"]
    assert list(runs) == ["fp32", "bf16", "bf16-nearest"]
    for policy, run in runs.items():
        assert run["precision"]["policy"] == policy and run["tokens_per_s"] > 0, run
        assert run["precision"]["weights_dtype"] == ("float32" if policy == "fp32" else "bfloat16")
    changed = [run["changed_fraction"] for run in runs.values()]
    assert 1 >= changed[0] > changed[1] > changed[2] > 0, changed  # fp32 > stochastic > nearest
    assert "## Precision policies" in (out / "results.md").read_text()
    assert "precision: bf16-nearest (--precision bf16-nearest)" in proc.stdout


@pytest.mark.slow
def test_scale_phase(smoke):
    """Both CodeLlama-shaped models built, trained through the trainers, the 7B run's checkpoint timed and
    verified, one step profiled; --scale_budget 0 skips the optional runs, labelled."""
    out, proc, results = smoke
    scale = results["scale"]
    assert set(scale["models"]) == {"7b", "13b"} and scale["models"]["13b"]["size"]["layers"] == 3
    runs = scale["runs"]
    assert runs["7b_full_gc"] == {"label": runs["7b_full_gc"]["label"], "skipped": "time budget"}
    for name in ("7b_full", "13b_lora"):
        assert runs[name]["tokens_per_s"] > 0 and runs[name]["batch_tokens"] == 1024, runs[name]
    checkpoint = runs["7b_full"]["checkpoint"]
    assert checkpoint["verified"] and checkpoint["gib"] > 0 and checkpoint["seal_s"] <= checkpoint["save_s"]
    profile = runs["7b_full"]["profile"]
    assert profile["categories_ms"]["matmul"] > 0 and profile["categories_ms"]["optimizer"] > 0
    assert profile["categories_ms"]["loss head"] > 0 and len(profile["top_kernels"]) == 10
    report = (out / "results.md").read_text()
    assert "| 7b_full |" in report and "### Step profile: 7b_full" in report and "checkpoint:" in report


@pytest.mark.slow
def test_fsdp_phase(smoke):
    """configs/cpu.yaml at smoke size (accelerate refuses FSDP on CPU): killed after its first checkpoint,
    resumed, the final save loads with from_pretrained."""
    fsdp = smoke[2]["fsdp"]
    assert fsdp["ok"] and fsdp["finite"], fsdp
    # killed once a checkpoint was complete: the first, or a later one the tiny run finished before the kill landed
    step = int(fsdp["killed_after"].removeprefix("checkpoint-"))
    assert step in (2, 4, 6), fsdp
    assert fsdp["resumed_line"].startswith("resumed from ") and f"{fsdp['killed_after']}: step {step}" in \
        fsdp["resumed_line"], fsdp
    # --grad_accum 2, planned first (--gpu_memory_gib on CPU): the preflight that crashed on it (issue 30)
    assert fsdp["grad_accum"] == 2 and fsdp["plan_line"].startswith("plan: peak"), fsdp
    assert fsdp["checkpoint_advice"] and "grace period" in fsdp["checkpoint_advice"][-1], fsdp


@pytest.mark.slow
def test_sampling_phase(smoke):
    """evaluate.py's transformers backend on the check's model, its samples and tokens counted; vLLM's row ran,
    or says it is not installed in this python."""
    import importlib.util

    out, proc, results = smoke
    rows = results["sampling"]["rows"]
    transformers = rows["transformers"]
    assert transformers["samples"] == 4 * 2 and 0 < transformers["generated_tokens"] <= 8 * 16, transformers
    assert transformers["samples_per_second"] > 0 and transformers["tokens_per_second"] > 0
    if importlib.util.find_spec("vllm") is None:
        assert rows["vllm"] == {"skipped": "vLLM not installed"}
    report = (out / "results.md").read_text()
    assert "## Sampling (~1.1B, 4 prompts x 2 samples" in report and "| transformers | " in report


def test_sampling_table_ratio_and_skipped_rows():
    import gpu_check

    row = {"samples_per_second": 2.0, "tokens_per_second": 512.0, "samples": 128, "generated_tokens": 32768,
           "generation_seconds": 64.0, "wall_seconds": 80.1, "device": "cuda", "dtype": "bfloat16"}
    table = gpu_check.sampling_table({"transformers": row, "vllm": dict(row, tokens_per_second=2048.0)})
    assert "| vllm | 2.00 | 2,048.0 | 4.00 |" in table and "| transformers | 2.00 | 512.0 | 1.00 |" in table
    table = gpu_check.sampling_table({"transformers": row, "vllm": {"skipped": "vLLM not installed"}})
    assert "| vllm | vLLM not installed |" in table


def test_without_bitsandbytes_or_peft_the_runs_say_so():
    """No bitsandbytes: plain AdamW everywhere, labelled; no peft: no LoRA run."""
    import argparse

    import gpu_check
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
    assert not any("--precision" in r.argv for r in with8bit)  # the speed rows run the trainers' default


def test_step_profile_categories():
    """Ranges decide first (loss head, optimizer), then kernel names; idle is wall minus the kernels' union."""

    import step_profile as sp

    step, fb, head = sp.STEP, sp.PROFILE_FORWARD_BACKWARD, sp.PROFILE_LOSS_HEAD
    assert sp.category("sm90_xmma_gemm_bf16", [head, fb, step]) == "loss head"
    assert sp.category("sm90_xmma_gemm_bf16", [fb, step]) == "matmul"
    assert sp.category("nvjet_tst_128x256", []) == "matmul"  # backward: the autograd thread, no range
    assert sp.category("flash_fwd_kernel", [fb, step]) == "attention"
    assert sp.category("kOptimizerStatic8bit2StateBlockwise", [step]) == "optimizer"
    assert sp.category("Memcpy HtoD (Pinned -> Device)", []) == "memory copies"
    assert sp.category("triton_red_fused_rms_norm_0", [fb, step]) == "element-wise/normalization"
    assert sp.busy_us([(0, 10), (5, 12), (20, 25)]) == 17
