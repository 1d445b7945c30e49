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
