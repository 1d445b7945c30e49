"""--precision: bf16 weights that keep every update (stochastic rounding), fp32, and round-to-nearest.

Optimizer-level tests check the arithmetic (small updates to weights near 1.0, unbiased rounding,
the random bits' determinism and resumability); trainer-level tests run train_full.py as users do:
bf16 and fp32 loss curves agree, two gloo processes hold identical bf16 weights, the policy is logged.
"""

import json
import sys

import pytest
import torch
from conftest import REPO_ROOT, common, free_port, metrics, train_here, train_losses


def make_optimizer(kind, params, lr, weight_decay=0.0):
    if kind == "adamw8bit":
        import bitsandbytes as bnb
        return bnb.optim.AdamW8bit(params, lr=lr, weight_decay=weight_decay)
    from reasoning_sft.train.loop import adamw  # the trainers' own AdamW (fused)
    return adamw([{"params": params, "weight_decay": weight_decay}], lr)


def train_ones(kind, policy, steps=200, lr=1e-4, seed=3):
    """Weights at 1.0 (an RMSNorm's), pushed down by noisy unit gradients: each update is ~lr, a 40th
    of the bf16 step just below 1.0 (2**-8). Returns the weights' mean after `steps` updates."""
    from reasoning_sft.train.precision import POLICIES, wrap_optimizer

    weight = torch.nn.Parameter(torch.ones(32, 256, dtype=POLICIES[policy].weights))
    optimizer = wrap_optimizer(make_optimizer(kind, [weight], lr), POLICIES[policy], seed)
    noise = torch.Generator().manual_seed(0)
    for _ in range(steps):
        weight.grad = (1 + 0.1 * torch.randn(weight.shape, generator=noise)).to(weight.dtype)
        optimizer.step()
        optimizer.zero_grad()
    return weight.detach().float().mean().item()


@pytest.mark.parametrize("kind", ["adamw", "adamw8bit"])
def test_small_updates_to_weights_near_one_accumulate_as_in_fp32(kind):
    exact = 1 - train_ones(kind, "fp32")
    assert exact == pytest.approx(200 * 1e-4, rel=0.01)  # AdamW's update is ~lr per step here
    assert train_ones(kind, "bf16-nearest") == 1.0       # every update lost: round-to-nearest
    assert 1 - train_ones(kind, "bf16") == pytest.approx(exact, rel=0.02)


def test_rounding_lands_on_a_neighbour_and_is_unbiased():
    from reasoning_sft.train.precision import round_stochastically_

    step = 2 ** -7  # bf16's spacing in [1, 2)
    for low, fraction in ((1.0, 0.3), (-1.5, 0.9), (1.0 + 5 * step, 0.01)):
        value = torch.full((200_000,), low + (step if low > 0 else -step) * fraction)
        target = torch.empty(value.shape, dtype=torch.bfloat16)
        round_stochastically_(target, value, torch.Generator().manual_seed(0))
        high = low + (step if low > 0 else -step)
        assert set(target.float().unique().tolist()) <= {low, high}
        assert target.float().mean().item() == pytest.approx(value[0].item(), abs=step * 0.01)


def test_special_values_survive_rounding():
    from reasoning_sft.train.precision import round_stochastically_

    value = torch.tensor([0.0, -0.0, float("inf"), -float("inf"), 3.0, -2.5, float("nan")])
    target = torch.empty(value.shape, dtype=torch.bfloat16)
    round_stochastically_(target, value, torch.Generator().manual_seed(1))
    assert target[:6].float().tolist() == [0.0, -0.0, float("inf"), -float("inf"), 3.0, -2.5]
    assert torch.signbit(target[1]) and torch.isnan(target[6])


def run_steps(optimizer, params, steps, first=0):
    for step in range(first, first + steps):
        grads = torch.Generator().manual_seed(step)
        for p in params:
            p.grad = torch.randn(p.shape, generator=grads).to(p.dtype)
        optimizer.step()
        optimizer.zero_grad()


def fresh_params():
    torch.manual_seed(0)
    return [torch.nn.Parameter(torch.randn(64, 80).to(torch.bfloat16)),
            torch.nn.Parameter(torch.randn(80).to(torch.bfloat16)),
            torch.nn.Parameter(torch.randn(16, 16))]  # an fp32 parameter (one a model keeps in fp32) steps as usual


@pytest.mark.parametrize("kind", ["adamw", "adamw8bit"])
def test_rounding_is_deterministic_and_resumes_from_the_state_dict(kind):
    from reasoning_sft.train.precision import POLICIES, wrap_optimizer

    def wrapped(params, seed=5):
        return wrap_optimizer(make_optimizer(kind, params, 1e-3, 0.01), POLICIES["bf16"], seed)

    whole = fresh_params()
    run_steps(wrapped(whole), whole, 6)

    cut = fresh_params()
    first = wrapped(cut)
    run_steps(first, cut, 4)
    saved = first.state_dict()
    assert saved["stochastic_rounding"]["steps"] == 4
    resumed_params = [torch.nn.Parameter(p.detach().clone()) for p in cut]
    resumed = wrapped(resumed_params)
    resumed.load_state_dict(saved)
    run_steps(resumed, resumed_params, 2, first=4)
    for a, b in zip(whole, resumed_params):
        assert a.dtype == b.dtype and torch.equal(a, b)

    other_seed = fresh_params()
    run_steps(wrapped(other_seed, seed=6), other_seed, 6)
    assert not torch.equal(other_seed[0], whole[0])  # the bits come from the seed
    assert torch.equal(other_seed[2], whole[2])       # fp32 parameters are not rounded at all


def test_auto_policy_and_refusals():
    from reasoning_sft.errors import UserError
    from reasoning_sft.train.precision import resolve

    assert resolve("auto", "full", flash_attn=True, fsdp=False).name == "bf16"
    assert resolve("auto", "full", flash_attn=True, fsdp=False).stochastic
    assert resolve("auto", "full", flash_attn=True, fsdp=True).name == "fp32"
    assert resolve("auto", "full", flash_attn=False, fsdp=False).name == "fp32"
    assert resolve("auto", "lora", flash_attn=True, fsdp=False).weights == torch.bfloat16
    assert resolve("auto", "lora", flash_attn=False, fsdp=False).name == "fp32"
    assert not resolve("bf16", "lora", flash_attn=False, fsdp=False).stochastic  # adapters are fp32
    assert resolve("bf16-nearest", "full", flash_attn=False, fsdp=True).name == "bf16-nearest"
    with pytest.raises(UserError, match="not supported under FSDP"):
        resolve("bf16", "full", flash_attn=True, fsdp=True)


# ------------------------------------------------------------------ the trainers

ARGS = ["--batch_tokens", 1024, "--epochs", 2, "--max_steps", 12, "--lr", 1e-3, "--seed", 4, "--warmup_ratio", 0,
        "--lr_scheduler", "constant", "--adam8bit"]


@pytest.fixture(scope="module")
def two_policies(tmp_path_factory, tiny_model_dir, tokenizer_dir, small_encoded):
    """The same full fine-tuning run with fp32 and with bf16 weights (bf16-nearest runs in the GPU check's
    smoke test, tests/test_gpu_check.py, where it changes fewer weights than bf16); (output dir, stdout) each.
    In this process: the two-process test below runs the trainer as users do."""
    root = tmp_path_factory.mktemp("precision")
    runs = {}
    for policy in ("fp32", "bf16"):
        out = root / policy
        code, stdout = train_here("train_full.py", *common(tiny_model_dir, tokenizer_dir, small_encoded, out), *ARGS,
                                  "--precision", policy)
        assert code == 0
        runs[policy] = (out, stdout)
    return runs


@pytest.mark.slow
def test_bf16_and_fp32_loss_curves_agree(two_policies):
    """Stochastic rounding adds noise of at most half a bf16 step per weight per step, and bf16 compute
    on top: the curves agree within 2% at every step (measured here: within 0.05%)."""
    fp32 = train_losses(two_policies["fp32"][0])
    bf16 = train_losses(two_policies["bf16"][0])
    assert len(fp32) == len(bf16) >= 8
    assert bf16 == pytest.approx(fp32, rel=0.02)
    assert sum(fp32[-4:]) / 4 < sum(fp32[:4]) / 4 - 0.1  # it learned


@pytest.mark.slow
def test_the_policy_is_logged_and_saved(two_policies):
    from safetensors.torch import load_file

    out, stdout = two_policies["bf16"]
    assert "precision: bf16 (--precision bf16): bfloat16 weights, update rounding stochastic" in stdout
    assert "AdamW8bit state 2 bytes per parameter" in stdout
    saved = json.loads((out / "train_config.json").read_text())["precision"]
    assert saved["policy"] == "bf16" and saved["weights_dtype"] == "bfloat16"
    assert saved["update_rounding"].startswith("stochastic")
    assert {t.dtype for t in load_file(str(out / "model.safetensors")).values()} == {torch.bfloat16}
    assert "float32 weights" in two_policies["fp32"][1]


DUMP_WEIGHTS = """
import os, runpy, sys, torch
import reasoning_sft.train.loop as training

real_finish = training.finish

def finish(trainer, metrics, mode):
    model = trainer.accelerator.unwrap_model(trainer.wrapper).model
    rank = trainer.accelerator.process_index
    torch.save({k: v.detach().clone() for k, v in model.state_dict().items()},
               os.path.join(os.environ["DUMP_DIR"], f"rank{rank}.pt"))
    real_finish(trainer, metrics, mode)

training.finish = finish
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.slow
def test_two_processes_hold_identical_bf16_weights(tmp_path, tiny_model_dir, tokenizer_dir, small_encoded):
    """Each rank draws the same rounding bits, so data-parallel replicas never drift apart."""
    import os
    import subprocess

    out = tmp_path / "out"
    wrapper = tmp_path / "dump_weights.py"
    wrapper.write_text(DUMP_WEIGHTS)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
           str(wrapper), "training/train_full.py", *map(str, common(tiny_model_dir, tokenizer_dir, small_encoded,
                                                                    out)),
           "--batch_tokens", "700", "--epochs", "1", "--max_steps", "3", "--lr", "3e-4", "--precision", "bf16",
           "--adam8bit"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1",
               ACCELERATE_USE_CPU="true", DUMP_DIR=str(tmp_path))
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "MULTI_CPU x2" in proc.stdout and "update rounding stochastic" in proc.stdout
    rank0, rank1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        assert rank0[key].dtype == torch.bfloat16 and torch.equal(rank0[key], rank1[key]), key
    assert len([r for r in metrics(out) if "loss" in r]) >= 2
