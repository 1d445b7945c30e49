"""--plan (reasoning_sft/train/planning.py): peak memory per category on fake tensors, before any weight is read."""

import importlib
import json
import math

import pytest
import torch
from conftest import REPO_ROOT, our_error_line

CATEGORIES = ("params", "grads", "optimizer", "activations", "temporaries")


def load_trainer(name):
    return importlib.import_module(name)  # training/ is on sys.path (conftest)


def plan_argv(model_dir, tokenizer_dir, train_dir, output_dir, *extra):
    return ["--model_name", str(model_dir), "--tokenizer_dir", str(tokenizer_dir), "--train_dir", str(train_dir),
            "--output_dir", str(output_dir), *map(str, extra)]


@pytest.fixture(scope="module")
def train_dir(encoded_dir):
    return encoded_dir / "arrow_dataset"


def test_tiny_plan_fits_names_every_category_and_writes_nothing(tiny_model_dir, tokenizer_dir, train_dir, tmp_path,
                                                                 capsys):
    out = tmp_path / "out"
    argv = plan_argv(tiny_model_dir, tokenizer_dir, train_dir, out, "--batch_tokens", 1024, "--plan",
                     "--gpu_memory_gib", 1)
    assert load_trainer("train_full").main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    table = "\n".join(lines[:-1])
    for category in CATEGORIES:
        assert f"| {category} |" in table
    assert "| **total (peak)** |" in table and "| card | 1.0 |" in table
    assert any(line.startswith("fits: peak") for line in lines)
    summary = json.loads(lines[-1])  # the last line: one JSON object
    for key in ("params_gib", "grads_gib", "optimizer_gib", "activations_gib", "peak_gib", "gpu_gib", "fits"):
        assert key in summary
    assert summary["fits"] is True and summary["gpu_gib"] == 1.0 and summary["peak_gib"] > 0
    assert not out.exists()  # nothing under --output_dir, not even the directory


def test_lora_plan_with_8bit_free_flags_runs(tiny_model_dir, tokenizer_dir, train_dir, tmp_path, capsys):
    argv = plan_argv(tiny_model_dir, tokenizer_dir, train_dir, tmp_path / "out", "--batch_tokens", 1024, "--plan",
                     "--gradient_checkpointing", "--lora_r", 4)
    assert load_trainer("train_peft").main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["fits"] is None and summary["gpu_gib"] is None  # no card given, none visible
    assert summary["optimizer_gib"] < summary["params_gib"]  # adapters and tag rows only


@pytest.mark.slow
def test_a_run_whose_plan_does_not_fit_is_refused_before_loading(tiny_model_dir, tokenizer_dir, train_dir, tmp_path,
                                                                  run_script):
    # a model directory with config.json and no weights: a run that got as far as loading would fail otherwise
    model = tmp_path / "config-only"
    model.mkdir()
    (model / "config.json").write_text((tiny_model_dir / "config.json").read_text())
    out = tmp_path / "out"
    proc = run_script("training/train_full.py", *plan_argv(model, tokenizer_dir, train_dir, out, "--batch_tokens",
                                                           1024, "--gpu_memory_gib", 0.001))
    line = our_error_line(proc, "train_full.py")
    assert "the plan does not fit" in line and "most help:" in line
    assert not out.exists()


def codellama_param_count(config, vocab):
    h, i, n = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    kv = h // config["num_attention_heads"] * config["num_key_value_heads"]
    per_layer = h * h * 2 + h * kv * 2 + 3 * h * i + 2 * h  # q, o; k, v; gate, up, down; two norms
    return 2 * vocab * h + n * per_layer + h  # embedding, head (untied), layers, final norm


def test_7b_plan_parameter_bytes_are_the_config_count_times_dtype_size(tokenizer_dir, train_dir, tmp_path):
    from reasoning_sft.train import planning, precision
    from reasoning_sft.train.loop import load_data

    model_dir = REPO_ROOT / "configs" / "models" / "CodeLlama-7b-Python-hf"
    args = load_trainer("train_full").parse_args(plan_argv(model_dir, tokenizer_dir, train_dir, tmp_path / "o",
                                                           "--adam8bit", "--flash_attn", "--plan"))
    data = load_data(args)
    policy = precision.resolve(args.precision, "full", args.flash_attn, fsdp=False)
    model, _ = planning.fake_model(args, load_trainer("train_full").FULL, data, policy, "flash-attn")
    config = json.loads((model_dir / "config.json").read_text())
    vocab = max(config["vocab_size"], len(data.tokenizer))
    n = codellama_param_count(config, vocab)
    assert n == 6_738_415_616  # CodeLlama-7B's published count
    assert sum(p.numel() * p.element_size() for p in model.parameters()) == n * 2  # bf16 (--precision auto)


def test_plan_tracks_exactly_the_parameters_it_built(tiny_model_dir, tokenizer_dir, train_dir, tmp_path):
    from reasoning_sft.train import planning

    train_full = load_trainer("train_full")
    args = train_full.parse_args(plan_argv(tiny_model_dir, tokenizer_dir, train_dir, tmp_path / "o", "--plan",
                                           "--batch_tokens", 512))
    peak, facts = planning.measure_step(args, train_full.FULL, planning.Launch(1, False, "no", "test"), "flash-attn")
    # "params" counts the parameters and the buffers (the rotary frequencies)
    assert math.isclose(peak["params"] * planning.GIB, facts["param_bytes"] + facts["buffer_bytes"], rel_tol=1e-9)
    assert facts["buffer_bytes"] < facts["param_bytes"] / 1000


def test_8bit_state_formula_matches_bitsandbytes_on_cpu():
    bnb = pytest.importorskip("bitsandbytes")
    from reasoning_sft.train.planning import AdamW8bitState, state_bytes

    torch.manual_seed(0)
    shapes = [(100,), (4095,), (4096,), (5000,), (300 * 256 + 7,), (64, 128), (33, 129)]
    for dtype in (torch.bfloat16, torch.float32):
        params = [torch.nn.Parameter(torch.randn(s, dtype=dtype)) for s in shapes]
        for p in params:
            p.grad = torch.randn_like(p)
        real = bnb.optim.AdamW8bit(params, lr=1e-3)
        real.step()
        qmaps = [v for st in real.state.values() for k, v in st.items() if k.startswith("qmap")]
        planned = AdamW8bitState(params, lr=1e-3)
        planned.step()
        for p in params:
            want = {k: (tuple(v.shape), v.dtype) for k, v in real.state[p].items()
                    if torch.is_tensor(v) and v.dim() > 0 and not k.startswith("qmap")}
            got = {k: (tuple(v.shape), v.dtype) for k, v in planned.state[p].items()}
            assert got == want, (p.shape, got, want)
        # the qmaps are two 256-entry tables shared by every parameter: 2 KiB, once
        assert state_bytes(real, shared=qmaps) - state_bytes(planned) == 2 * 256 * 4


def test_planned_varlen_saves_what_flash_attention_saves_on_cpu():
    """PlannedVarlen's formula (out + fp32 log-sum-exp [H, T] kept for backward, beyond q, k, v) against the
    CPU flash-attention kernel sdpa runs, measured under MemTracker on real tensors."""
    from torch.distributed._tools.mem_tracker import MemTracker
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from reasoning_sft.train.planning import PlannedVarlen

    T, H, D = 512, 4, 32

    def retained(fn):
        q, k, v = (torch.randn(T, H, D, dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
        tracker = MemTracker()
        tracker.track_external(q, k, v)
        with tracker:
            before = tracker.get_tracker_snapshot()[torch.device("cpu")]["Total"]
            out = fn(q, k, v)
            after = tracker.get_tracker_snapshot()[torch.device("cpu")]["Total"]
        del out
        return after - before

    def sdpa(q, k, v):
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            o = torch.nn.functional.scaled_dot_product_attention(*(x.transpose(0, 1)[None] for x in (q, k, v)),
                                                                 is_causal=True)
        return o  # [1, H, T, D]: the kernel's own output, saved for backward

    measured = retained(sdpa)
    planned = retained(lambda q, k, v: PlannedVarlen.apply(q, k, v))
    assert planned == T * H * D * 2 + H * T * 4
    assert measured == planned


@pytest.mark.slow
def test_plan_matches_the_real_cpu_step_within_5_percent(tmp_path, tokenizer_dir, train_dir):
    """A small Llama (4 layers, hidden 256) on CPU: the plan on fake tensors against two real steps of the same
    model under MemTracker, full fine-tuning with bitsandbytes' 8-bit AdamW (the formula) and LoRA."""
    pytest.importorskip("bitsandbytes")
    from transformers import LlamaConfig, LlamaForCausalLM

    from reasoning_sft.train import planning

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=1100, hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                         num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=512,
                         tie_word_embeddings=False)
    model_dir = tmp_path / "small"
    LlamaForCausalLM(config).save_pretrained(model_dir)
    launch = planning.Launch(1, False, "no", "test")
    for script, extra in (("train_full", ["--adam8bit", "--precision", "bf16-nearest"]),
                          ("train_peft", ["--lora_r", "8"])):
        module = load_trainer(script)
        args = module.parse_args(plan_argv(model_dir, tokenizer_dir, train_dir, tmp_path / "o", "--batch_tokens",
                                           2048, *extra))
        mode = module.FULL if script == "train_full" else module.LORA
        planned, _ = planning.measure_step(args, mode, launch, None, fake=True)
        real, _ = planning.measure_step(args, mode, launch, None, fake=False)
        assert abs(planned["peak"] - real["peak"]) / real["peak"] < 0.05, (script, planned, real)


@pytest.mark.parametrize("extra, words", [
    (["--model_name", "/nonexistent/model"], "cannot load a model"),
    (["--gpu_memory_gib", "-1"], "--gpu_memory_gib must be positive"),
    (["--accelerate_config", "/nonexistent/config.yaml"], "--accelerate_config"),
])
def test_bad_plan_input_is_one_user_error(tiny_model_dir, tokenizer_dir, train_dir, tmp_path, extra, words):
    from reasoning_sft.errors import UserError

    argv = plan_argv(tiny_model_dir, tokenizer_dir, train_dir, tmp_path / "out", "--plan") + extra
    with pytest.raises(UserError, match=words.replace("-", r"\-")):
        load_trainer("train_full").main(argv)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_no_plan_check_logs_the_plan_and_starts_anyway(tiny_model_dir, tokenizer_dir, train_dir, tmp_path, capsys):
    """In this process (the refusal above is the command-line run): the first stdout line and the saved model."""
    out = tmp_path / "out"
    assert load_trainer("train_full").main(plan_argv(tiny_model_dir, tokenizer_dir, train_dir, out, "--batch_tokens",
                                                     1024, "--max_steps", 1, "--report_to", "none",
                                                     "--gpu_memory_gib", 0.001, "--no_plan_check")) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("plan: peak") and "does not fit" in first
    assert (out / "model.safetensors").exists()


# ---------------------------------------------------------------- every flag a run takes, planned

# Options that do not change what a training step holds in memory (paths, schedule, logging, the output
# directory's handling, when eval/checkpoints happen, --plan's own inputs). Every other option of either
# trainer is planned below: a store_true flag set, a flag with choices at each choice, the rest at the value
# in PLANNED_VALUES. An option in neither place fails the test, so a new flag gets planned (or classified
# here, with a reason) before it can break the preflight of a GPU run.
NO_STEP_MEMORY = {
    "help", "model_name", "tokenizer_dir", "train_dir", "output_dir",  # the inputs every plan has
    "epochs", "max_steps", "lr", "lr_scheduler", "warmup_ratio", "weight_decay", "max_bad_steps", "seed",
    "eval_dir", "eval_fraction", "eval_every",  # eval runs without gradients, at most one micro-batch's activations
    "save_every", "keep_checkpoints", "resume", "reschedule", "overwrite", "log_every", "report_to", "verbose",
    "merge_lora",  # after training, on the host
    "plan", "gpu_memory_gib", "no_plan_check",
}
PLANNED_VALUES = {
    "batch_tokens": [["--batch_tokens", 512]],
    "grad_accum": [["--grad_accum", 4]],
    "max_grad_norm": [["--max_grad_norm", 0]],
    "accelerate_config": [["--accelerate_config", path] for path in sorted((REPO_ROOT / "configs").glob("*.yaml"))],
    "plan_kernel": [],  # its choices, each with --flash_attn (below)
    "lora_r": [["--lora_r", 4]],
    "lora_alpha": [["--lora_alpha", 64]],
    "lora_dropout": [["--lora_dropout", 0.1]],
    "lora_target_modules": [["--lora_target_modules", "q_proj,v_proj"]],
}
# planned flags the plan refuses in one line (UserError), by design
REFUSED = {("train_peft", "--load_in_4bit"): "--load_in_4bit",
           ("train_peft", "fsdp_full_shard.yaml"): "FSDP for full fine-tuning only"}


def trainer_options(script):
    """The trainer's argparse actions, read from the parser its parse_args builds."""
    import argparse

    captured = []

    def capture(parser, argv=None, namespace=None):
        captured.extend(parser._actions)
        raise SystemExit(0)

    real = argparse.ArgumentParser.parse_args
    argparse.ArgumentParser.parse_args = capture
    try:
        load_trainer(script).parse_args([])
    except SystemExit:
        pass
    finally:
        argparse.ArgumentParser.parse_args = real
    return captured


def planned_variants(script):
    """(flag label, extra argv) for every option of `script` that changes a step's memory."""
    variants = []
    for action in trainer_options(script):
        if action.dest in NO_STEP_MEMORY:
            continue
        flag = action.option_strings[0]
        if action.dest == "plan_kernel":
            variants += [(f"{flag} {c}", ["--flash_attn", flag, c]) for c in action.choices]
        elif action.dest in PLANNED_VALUES:
            variants += [(" ".join(map(str, extra)), extra) for extra in PLANNED_VALUES[action.dest]]
        elif action.nargs == 0:  # store_true
            variants.append((flag, [flag]))
        elif action.choices:
            variants += [(f"{flag} {c}", [flag, c]) for c in action.choices]
        else:
            raise AssertionError(f"{script} {flag}: classify it (NO_STEP_MEMORY or PLANNED_VALUES in test_plan.py)")
    return variants


@pytest.mark.slow
@pytest.mark.parametrize("script", ["train_full", "train_peft"])
def test_every_flag_that_changes_memory_plans_with_grad_accum(script, tiny_model_dir, tokenizer_dir, train_dir,
                                                               tmp_path, capsys):
    """Each such flag with --grad_accum 2 (the path that crashed torch's MemTracker, issue 30; it runs all of
    the --grad_accum 1 path and more): a plan (its JSON line) or the planner's one-line refusal, never a
    traceback."""
    from reasoning_sft.errors import UserError

    variants = planned_variants(script)
    assert len(variants) >= 15, variants
    for label, extra in variants:
        accum = [] if "--grad_accum" in label else ["--grad_accum", 2]
        argv = plan_argv(tiny_model_dir, tokenizer_dir, train_dir, tmp_path / "out", "--batch_tokens", 512,
                         "--plan", *extra, *accum)
        refusal = next((words for (s, flag), words in REFUSED.items() if s == script and flag in label), None)
        if refusal:
            with pytest.raises(UserError, match=refusal):
                load_trainer(script).main(argv)
            continue
        assert load_trainer(script).main(argv) == 0, label
        summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert summary["peak_gib"] > 0, label
    assert not (tmp_path / "out").exists()


def test_grad_accum_plans_the_gradients_the_micro_batches_before_leave(tiny_model_dir, tokenizer_dir, train_dir,
                                                                      tmp_path):
    """--grad_accum 4 gives a plan (it was a MemTracker traceback); one process keeps the earlier micro-batches'
    gradients through the largest one's forward, so they are at its peak; under FSDP each micro-batch's
    gradients are reduce-scattered into the shards, so the plan's gradients are those of --grad_accum 1."""
    from reasoning_sft.train import planning

    train_full = load_trainer("train_full")

    def plan(accum, *extra):
        args = train_full.parse_args(plan_argv(tiny_model_dir, tokenizer_dir, train_dir, tmp_path / "o", "--plan",
                                               "--batch_tokens", 512, "--grad_accum", accum, *extra))
        return planning.make_plan(args, train_full.FULL, planning.launch_settings(args))

    one, four = plan(1), plan(4)
    assert one.per_device["grads"] == 0  # the peak of one micro-batch: the end of its forward, no gradient yet
    assert four.per_device["grads"] * planning.GIB == four.setup["n_trainable"] * 4  # fp32 gradients, all of them
    fsdp = [plan(accum, "--accelerate_config", REPO_ROOT / "configs" / "fsdp_full_shard.yaml") for accum in (1, 4)]
    assert fsdp[1].per_device["grads"] <= fsdp[0].per_device["grads"]
    assert fsdp[1].setup["grad_accum"] == 4 and fsdp[0].per_device["grads"] > 0


def test_a_largest_micro_batch_alone_in_its_step_is_planned_after_another():
    """An epoch's short last step may hold the largest micro-batch alone; with --grad_accum > 1 other steps run
    it after one, so the plan puts the smallest micro-batch of another step before it."""
    from types import SimpleNamespace

    from reasoning_sft.train.planning import planned_micro_batches

    data = SimpleNamespace(train_set={"length": [10, 20, 30, 300]}, packed=True)
    full, short = [[[0]], [[1]]], [[[3]]]  # [micro-step][rank] -> rows
    schedule = [full, [[[2]], [[1]]], short]
    assert planned_micro_batches(data, full, 0, 2, schedule) == [[[0]], [[1]]]
    assert planned_micro_batches(data, short, 0, 2, schedule) == [[[0]], [[3]]]
    assert planned_micro_batches(data, short, 0, 1, schedule) == [[[3]]]
