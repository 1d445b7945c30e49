"""Stage 4: the shared training loop, both trainers, on the tiny model (CPU, offline).

Model-level invariants are checked in-process (fast); the trainers are also run as users
run them: `accelerate launch --config_file configs/cpu.yaml training/...`, and on two CPU
processes through torchrun with ACCELERATE_USE_CPU=true (gloo).
"""

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import (
    REPO_ROOT,
    common,
    metrics,
    one_and_two_processes,
    our_error_line,
    run_train,
    train_cmd,
    train_here,
    train_losses,
)


@pytest.fixture(scope="session")
def prepared(tokenizer_dir):
    from reasoning_sft.artifacts import load_prepared_tokenizer
    return load_prepared_tokenizer(str(tokenizer_dir))[0]


def fresh_model(tiny_model_dir, tokenizer, seed=0):
    from reasoning_sft.train.modeling import load_causal_lm, resize_and_init_new_tokens
    torch.manual_seed(seed)
    model = load_causal_lm(str(tiny_model_dir))
    resize_and_init_new_tokens(model, tokenizer)
    return model


def rows(path, n, start=0):
    import datasets

    from reasoning_sft.train.loop import fetch_rows
    return fetch_rows(datasets.load_from_disk(str(path)), range(start, start + n))




# ------------------------------------------------------------------ model-level invariants

def test_new_token_rows_start_from_their_names_and_pad_is_zero(tiny_model_dir, prepared):
    from transformers import AutoModelForCausalLM

    from reasoning_sft.data.template import TAGS

    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    model = fresh_model(tiny_model_dir, prepared)
    emb, head = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    assert emb.shape[0] == len(prepared)
    for tag in TAGS:
        pieces = prepared(tag.strip("</>"), add_special_tokens=False)["input_ids"]
        tag_id = prepared.convert_tokens_to_ids(tag)
        assert torch.allclose(emb[tag_id], base.get_input_embeddings().weight[pieces].mean(0))
        assert torch.allclose(head[tag_id], base.get_output_embeddings().weight[pieces].mean(0))
    assert emb[prepared.pad_token_id].abs().sum() == 0 and head[prepared.pad_token_id].abs().sum() == 0
    # old rows untouched
    old = base.get_input_embeddings().weight.shape[0]
    assert torch.equal(emb[:old], base.get_input_embeddings().weight)


def test_resize_is_deterministic_under_a_seed(tiny_model_dir, prepared):
    a, b = fresh_model(tiny_model_dir, prepared, seed=1), fresh_model(tiny_model_dir, prepared, seed=1)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_spare_rows_past_the_vocabulary_are_initialized_not_trusted(tiny_model_dir, prepared):
    """deepseek-coder-like: the model has more rows than its tokenizer has tokens, so stage 1 gives the
    tags ids of existing, never-trained rows. They get the name-mean init; nothing shrinks."""
    from reasoning_sft.data.template import TAGS
    from reasoning_sft.train.modeling import load_causal_lm, resize_and_init_new_tokens

    torch.manual_seed(0)
    model = load_causal_lm(str(tiny_model_dir))
    base_rows = model.get_input_embeddings().weight.shape[0]
    model.resize_token_embeddings(len(prepared) + 57, mean_resizing=False)  # spare rows: random junk
    tag_rows = resize_and_init_new_tokens(model, prepared)
    emb, head = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    assert emb.shape[0] == len(prepared) + 57 and min(tag_rows) == base_rows
    for tag in TAGS:
        pieces = prepared(tag.strip("</>"), add_special_tokens=False)["input_ids"]
        tag_id = prepared.convert_tokens_to_ids(tag)
        assert torch.allclose(emb[tag_id], emb[pieces].mean(0)) and torch.allclose(head[tag_id], head[pieces].mean(0))
    assert emb[prepared.pad_token_id].abs().sum() == 0


def test_a_model_trained_here_keeps_its_tag_rows(tiny_model_dir, prepared):
    from reasoning_sft.train.modeling import TAG_IDS_KEY, mark_tag_rows_trained, resize_and_init_new_tokens

    model = fresh_model(tiny_model_dir, prepared)
    with torch.no_grad():
        model.get_input_embeddings().weight.add_(1.0)  # "training" moved every row
    before = model.get_input_embeddings().weight.clone()
    mark_tag_rows_trained(model, prepared)
    assert getattr(model.config, TAG_IDS_KEY)["<code>"] == prepared.convert_tokens_to_ids("<code>")
    resize_and_init_new_tokens(model, prepared)
    assert torch.equal(model.get_input_embeddings().weight, before)


def test_an_adapter_dir_is_not_a_model(tmp_path):
    from reasoning_sft.errors import UserError
    from reasoning_sft.train.modeling import load_causal_lm

    (tmp_path / "adapter_config.json").write_text("{}")
    with pytest.raises(UserError, match="is a LoRA adapter, not a model"):
        load_causal_lm(str(tmp_path))


def test_resize_runs_on_meta_weights(tiny_model_dir, prepared):
    """Under FSDP's cpu_ram_efficient_loading, ranks other than 0 hold meta weights until rank 0's are
    broadcast: resizing and initializing the new rows must not need real data there."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from reasoning_sft.train.modeling import resize_and_init_new_tokens

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(str(tiny_model_dir)))
    new_ids = resize_and_init_new_tokens(model, prepared)
    assert len(new_ids) == 6 and model.get_output_embeddings().weight.shape[0] == len(prepared)
    assert model.get_input_embeddings().weight.is_meta


@pytest.mark.parametrize("packed", [False, True])
def test_no_sequence_attends_to_another(tiny_model_dir, prepared, small_encoded, packed):
    """Per-sequence losses of a batch equal those of the sequences run one at a time."""
    from reasoning_sft.data.batching import collate
    from reasoning_sft.data.template import tag_ids
    from reasoning_sft.train.modeling import ChunkedLossLM

    wrapper = ChunkedLossLM(fresh_model(tiny_model_dir, prepared)).eval()
    tags, pad = tag_ids(prepared), prepared.pad_token_id
    batch_rows = rows(small_encoded, 5)
    with torch.no_grad():
        alone = [wrapper(**collate([r], pad, packed, tags)) for r in batch_rows]
        together_loss, together_sections = wrapper(**collate(batch_rows, pad, packed, tags))
        # position by position: hidden states of the joined batch equal the separate runs
        batch = collate(batch_rows, pad, packed, tags)
        decoder = wrapper.model.get_decoder()
        hidden = decoder(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask"),
                         position_ids=batch.get("position_ids"), use_cache=False).last_hidden_state
        offset = 0
        for i, r in enumerate(batch_rows):
            n = len(r["input_ids"])
            one = decoder(input_ids=torch.tensor([r["input_ids"]], dtype=torch.long), use_cache=False).last_hidden_state
            got = hidden[0, offset:offset + n] if packed else hidden[i, :n]
            torch.testing.assert_close(got, one[0], rtol=1e-4, atol=1e-5)
            offset += n
    torch.testing.assert_close(together_loss, sum(loss for loss, _ in alone), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(together_sections, sum(s for _, s in alone), rtol=1e-5, atol=1e-4)


def test_chunked_loss_equals_full_logits_loss(tiny_model_dir, prepared, small_encoded):
    from reasoning_sft.data.batching import collate
    from reasoning_sft.data.template import tag_ids
    from reasoning_sft.train.modeling import ChunkedLossLM

    model = fresh_model(tiny_model_dir, prepared)
    r = rows(small_encoded, 1)[0]
    batch = collate([r], prepared.pad_token_id, False, tag_ids(prepared))
    wrapper = ChunkedLossLM(model, chunk=7).train()  # many chunks, fused head + loss
    loss_sum, _ = wrapper(**batch)
    n = (batch["targets"] != -100).sum()
    reference = model(input_ids=torch.tensor([r["input_ids"]], dtype=torch.long),
                      labels=torch.tensor([r["labels"]], dtype=torch.long)).loss  # HF: mean over shifted labels
    torch.testing.assert_close(loss_sum / n, reference, rtol=1e-5, atol=1e-5)
    (loss_sum / n).backward()
    chunked_grad = model.get_output_embeddings().weight.grad.clone()
    model.zero_grad()
    reference.backward()
    torch.testing.assert_close(chunked_grad, model.get_output_embeddings().weight.grad, rtol=1e-4, atol=1e-6)


def assert_rel_close(got, want, rel=1e-5):
    """Equal to rel 1e-5 of the tensor's scale (elements near zero are judged against the largest)."""
    torch.testing.assert_close(got, want, rtol=rel, atol=rel * float(want.abs().max()))


def full_logits_loss_and_grads(model, batch):
    """The reference: every position's logits, then the summed cross-entropy at the labelled ones."""
    model.zero_grad()
    logits = model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask"),
                   position_ids=batch.get("position_ids"), use_cache=False).logits
    keep = batch["targets"] != -100
    loss = torch.nn.functional.cross_entropy(logits[keep].float(), batch["targets"][keep], reduction="sum")
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def assert_chunked_equals_full_logits(model, batch, chunk):
    """ChunkedLossLM's loss and the gradient of every trainable parameter == full logits (rel 1e-5)."""
    from reasoning_sft.train.modeling import ChunkedLossLM

    want_loss, want = full_logits_loss_and_grads(model, batch)
    model.zero_grad()
    loss_sum, _ = ChunkedLossLM(model, chunk=chunk).train()(**batch)
    loss_sum.backward()
    assert_rel_close(loss_sum.detach(), want_loss)
    for name, param in model.named_parameters():
        if param.requires_grad:
            assert_rel_close(param.grad, want[name])


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_fused_head_loss_and_every_gradient_equal_full_logits(tiny_model_dir, prepared, small_encoded, mode):
    """The fused head + loss (gradients computed in forward, chunk by chunk) == full logits, fp32, rel 1e-5:
    the loss and the gradient of every trainable parameter, the tag rows of embedding and head under LoRA."""
    from reasoning_sft.data.batching import collate
    from reasoning_sft.data.template import tag_ids
    from reasoning_sft.train.fused_head import head_weight_and_bias
    from reasoning_sft.train.modeling import ChunkedLossLM, decoder_and_head, lora_model

    model = fresh_model(tiny_model_dir, prepared)
    if mode == "lora":
        model = lora_model(model, sorted(tag_ids(prepared).values()), 4, 8, 0.0, "all-linear")
        for name, param in model.named_parameters():  # B starts at zero: give A a gradient to carry
            if "lora_B" in name:
                torch.nn.init.normal_(param, std=0.02)
    head = decoder_and_head(model)[1]
    assert head_weight_and_bias(head, torch.zeros(1, model.config.hidden_size)) is not None  # the fused path runs
    batch = collate(rows(small_encoded, 3), prepared.pad_token_id, False, tag_ids(prepared))
    want_loss, want = full_logits_loss_and_grads(model, batch)
    model.zero_grad()
    wrapper = ChunkedLossLM(model, chunk=97).train()  # several chunks, the last one short
    loss_sum, per_section = wrapper(**batch)
    loss_sum.backward()
    assert_rel_close(loss_sum.detach(), want_loss)
    assert_rel_close(per_section.sum(), want_loss)
    got = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert got.keys() == want.keys()
    if mode == "lora":
        assert sum("trainable_tokens_delta" in n for n in got) == 2 and any("lora_A" in n for n in got)
    for name, grad in want.items():
        assert grad.abs().sum() > 0, name
        assert_rel_close(got[name], grad)


def test_a_head_that_is_not_one_linear_map_falls_back_to_recompute(tiny_model_dir, prepared, small_encoded):
    """LoRA on lm_head (three linear calls): no fused path, yet the same loss and gradients as full logits."""
    from peft import LoraConfig, get_peft_model

    from reasoning_sft.data.batching import collate
    from reasoning_sft.data.template import tag_ids
    from reasoning_sft.train.fused_head import head_weight_and_bias
    from reasoning_sft.train.modeling import decoder_and_head

    model = get_peft_model(fresh_model(tiny_model_dir, prepared),
                           LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["lm_head", "q_proj"]))
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.02)
    assert head_weight_and_bias(decoder_and_head(model)[1], torch.zeros(1, model.config.hidden_size)) is None
    batch = collate(rows(small_encoded, 2), prepared.pad_token_id, False, tag_ids(prepared))
    assert_chunked_equals_full_logits(model, batch, chunk=97)


def test_fused_head_handles_a_bias_and_a_tied_head():
    """A head with a bias, and one that shares its Parameter with the embedding: same loss and gradients."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from reasoning_sft.train.fused_head import fused_linear_cross_entropy

    torch.manual_seed(0)
    hidden = torch.randn(50, 16, requires_grad=True)
    weight = torch.randn(300, 16, requires_grad=True)
    bias = torch.randn(300, requires_grad=True)
    targets = torch.randint(0, 300, (50,))
    loss, token_losses = fused_linear_cross_entropy(hidden, weight, bias, targets, 16)
    (3.0 * loss).backward()  # backward scales the stored gradients by grad_output
    got = [hidden.grad.clone(), weight.grad.clone(), bias.grad.clone()]
    for t in (hidden, weight, bias):
        t.grad = None
    want_tokens = torch.nn.functional.cross_entropy(hidden @ weight.T + bias, targets, reduction="none")
    (3.0 * want_tokens.sum()).backward()
    assert_rel_close(token_losses, want_tokens.detach())
    for g, t in zip(got, (hidden, weight, bias)):
        assert_rel_close(g, t.grad)

    config = LlamaConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    model = LlamaForCausalLM(config)
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    ids = torch.randint(0, 300, (2, 20))
    batch = {"input_ids": ids, "targets": torch.cat([ids[:, 1:], torch.full((2, 1), -100)], 1),
             "sections": torch.zeros_like(ids)}
    assert_chunked_equals_full_logits(model, batch, chunk=7)


@pytest.mark.parametrize("packed", [False, True])
def test_grad_accum_gives_the_global_token_mean(tiny_model_dir, prepared, small_encoded, packed):
    """4 micro-batches of 2 sequences == 1 batch of 8: same loss and same gradients."""
    from accelerate import Accelerator

    from reasoning_sft.data.batching import collate
    from reasoning_sft.data.template import tag_ids
    from reasoning_sft.train.loop import train_step
    from reasoning_sft.train.modeling import ChunkedLossLM

    accelerator = Accelerator(cpu=True)
    tags, pad = tag_ids(prepared), prepared.pad_token_id
    eight = rows(small_encoded, 8)
    results = []
    for groups in ([eight[i:i + 2] for i in range(0, 8, 2)], [eight]):
        wrapper = ChunkedLossLM(fresh_model(tiny_model_dir, prepared)).train()
        batches = [collate(g, pad, packed, tags) for g in groups]
        loss_sum, tokens, *_ = train_step(accelerator, wrapper, batches)
        grads = {n: p.grad.clone() for n, p in wrapper.named_parameters() if p.grad is not None}
        results.append((loss_sum / tokens, grads))
    (loss_a, grads_a), (loss_b, grads_b) = results
    torch.testing.assert_close(loss_a, loss_b, rtol=1e-5, atol=1e-6)
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], rtol=1e-4, atol=1e-6)


def test_gradient_checkpointing_keeps_lora_gradients(tiny_model_dir, prepared, small_encoded):
    """Recomputing activations must not cut the gradient to LoRA weights and tag rows (frozen inputs)."""
    from reasoning_sft.data.batching import collate
    from reasoning_sft.data.template import tag_ids
    from reasoning_sft.train.modeling import ChunkedLossLM, lora_model

    batch = collate(rows(small_encoded, 3), prepared.pad_token_id, False, tag_ids(prepared))
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = fresh_model(tiny_model_dir, prepared)
        model = lora_model(model, sorted(tag_ids(prepared).values()), 4, 8, 0.0, "all-linear")
        for name, param in model.named_parameters():  # B starts at zero: give A a gradient to carry
            if "lora_B" in name:
                torch.nn.init.normal_(param, std=0.02)
        if checkpointing:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            assert model.is_activation_checkpointing
        wrapper = ChunkedLossLM(model).train()
        loss_sum, _ = wrapper(**batch)
        loss_sum.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad})
    plain, checkpointed = grads
    assert plain.keys() == checkpointed.keys() and any("lora_A" in n for n in plain)
    for name, grad in plain.items():
        assert grad.abs().sum() > 0, name
        torch.testing.assert_close(checkpointed[name], grad, rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------ the trainers as users run them

@pytest.mark.slow
def test_lora_trains_tag_rows_only_and_adapter_reloads(tmp_path, tiny_model_dir, tokenizer_dir, prepared,
                                                       small_encoded):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = tmp_path / "lora"
    proc = run_train("train_peft.py", *common(tiny_model_dir, tokenizer_dir, small_encoded, out),
                     "--batch_tokens", 1024, "--max_steps", 4, "--lr", 1e-2, "--lora_r", 4, "--lora_alpha", 8,
                     "--merge_lora", "--seed", 3)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "adapter_model.safetensors").exists() and (out / "tokenizer.json").exists()
    assert len(train_losses(out)) == 4 and all(r["tokens"] > 0 for r in metrics(out) if "loss" in r)
    from safetensors import safe_open
    with safe_open(str(out / "adapter_model.safetensors"), "pt") as saved:  # LoRA + tag rows, no copy of the base
        assert all("lora_" in k or "trainable_tokens_delta" in k for k in saved.keys()), list(saved.keys())

    base = fresh_model(tiny_model_dir, prepared, seed=3)
    before = {n: p.clone() for n, p in base.state_dict().items()}
    tuned = PeftModel.from_pretrained(fresh_model(tiny_model_dir, prepared, seed=3), str(out)).eval()
    tag_ids = [prepared.convert_tokens_to_ids(t) for t in ("<reasoning>", "</reasoning>", "<intention>",
                                                           "</intention>", "<code>", "</code>")]
    deltas = {n: p for n, p in tuned.named_parameters() if "trainable_tokens_delta" in n}
    assert len(deltas) == 2  # input embedding and output head
    for name, delta in deltas.items():
        assert delta.shape[0] == len(tag_ids) and delta.abs().sum() > 0, name
    for name, param in tuned.named_parameters():  # every base weight is exactly as loaded
        if "lora_" in name or "trainable_tokens_delta" in name:
            continue
        key = name.replace("base_model.model.", "", 1).replace(".base_layer", "").replace(
            ".token_adapter", "")
        if key in before:
            assert torch.equal(param, before[key]), name
    merged = AutoModelForCausalLM.from_pretrained(str(out / "merged")).eval()
    emb_merged = merged.get_input_embeddings().weight
    moved = (emb_merged - before["model.embed_tokens.weight"]).abs().sum(-1).nonzero().flatten().tolist()
    assert moved == sorted(tag_ids)  # only the tag rows of the embedding changed
    ids = torch.tensor([rows(small_encoded, 1)[0]["input_ids"]], dtype=torch.long)
    with torch.no_grad():
        torch.testing.assert_close(tuned(input_ids=ids).logits, merged(input_ids=ids).logits, rtol=1e-4, atol=1e-4)
        assert not torch.allclose(base(input_ids=ids).logits, merged(input_ids=ids).logits)
    # servable as trained: the merged dir has the tokenizer (chat template) and stops at the EOS after </code>
    from transformers import AutoTokenizer, GenerationConfig
    stops = [prepared.eos_token_id]  # right after </code> (generation_config.serving_stop_ids)
    for served in (out, out / "merged"):
        assert GenerationConfig.from_pretrained(str(served)).eos_token_id == stops
    merged_tok = AutoTokenizer.from_pretrained(str(out / "merged"))
    assert merged_tok.chat_template == prepared.chat_template and len(merged_tok) == len(prepared)


@pytest.mark.slow
def test_full_adam8bit_overfits_and_saves_a_loadable_model(tmp_path, tiny_model_dir, tokenizer_dir, prepared,
                                                           small_encoded):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "full"
    proc = run_train("train_full.py", *common(tiny_model_dir, tokenizer_dir, small_encoded, out),
                     "--batch_tokens", 16384, "--epochs", 25, "--lr", 3e-3, "--adam8bit", "--warmup_ratio", 0,
                     "--lr_scheduler", "constant")
    assert proc.returncode == 0, proc.stderr[-3000:]
    # uint8 m and v: 2 bytes per parameter for large tensors (bitsandbytes keeps tensors under
    # 4096 elements, and per-block scales, in fp32, which weighs a lot in a tiny model); AdamW: 8
    per_param = float(re.search(r"optimizer state: ([0-9.]+) bytes", proc.stdout).group(1))
    assert 2.0 <= per_param < 3.0, proc.stdout
    losses = train_losses(out)
    assert losses[-1] < 0.6 * losses[0], losses
    model = AutoModelForCausalLM.from_pretrained(str(out))
    assert model.get_input_embeddings().weight.shape[0] == len(prepared)
    assert model.generation_config.eos_token_id == [prepared.eos_token_id]  # right after </code>
    assert (out / "loss.png").stat().st_size > 10_000
    # a second run on this model keeps the tag rows it learned
    from reasoning_sft.train.modeling import resize_and_init_new_tokens
    learned = model.get_input_embeddings().weight.clone()
    resize_and_init_new_tokens(model, prepared)
    assert torch.equal(model.get_input_embeddings().weight, learned)


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_exits(tmp_path, tiny_model_dir, tokenizer_dir, small_encoded):
    out = tmp_path / "preempted"
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    child = subprocess.Popen(train_cmd("train_full.py", *common(tiny_model_dir, tokenizer_dir, small_encoded, out),
                                       "--batch_tokens", 300, "--epochs", 50, launcher="python"),
                             cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(metrics(out) if (out / "metrics.jsonl").exists() else []) < 2:
        time.sleep(0.05)
    child.send_signal(signal.SIGTERM)
    stdout, stderr = child.communicate(timeout=120)
    assert child.returncode != 0
    assert "SIGTERM: saved" in stdout, stdout + stderr
    # no checkpoint before this one: no measured time to compare with a grace period, the estimate was logged
    assert "SIGTERM: the current step is done; writing a checkpoint\n" in stdout
    assert "checkpoints: " in stdout and "should take about" in stdout
    checkpoints = [p.name for p in out.iterdir() if p.name.startswith("checkpoint-")]
    assert len(checkpoints) == 1
    state = json.loads((out / checkpoints[0] / "trainer_state.json").read_text())
    assert state["global_step"] >= 2


def worker_pids(parent_pid):
    """{LOCAL_RANK: pid} of the processes whose parent is parent_pid (Linux /proc)."""
    workers = {}
    for entry in Path("/proc").iterdir():
        try:
            if not entry.name.isdigit() or (entry / "stat").read_text().rsplit(")", 1)[1].split()[1] != str(parent_pid):
                continue
            env = dict(v.split("=", 1) for v in (entry / "environ").read_text().split("\0") if "=" in v)
        except OSError:  # gone meanwhile
            continue
        if "LOCAL_RANK" in env:
            workers[int(env["LOCAL_RANK"])] = int(entry.name)
    return workers


@pytest.mark.slow
def test_sigterm_to_one_of_two_processes_stops_both_at_one_checkpoint(tmp_path, tiny_model_dir, tokenizer_dir,
                                                                     small_encoded):
    """Only rank 1 gets SIGTERM: its vote rides in the step's all-reduce, so rank 0 (which logs and was not
    signalled) stops at the same step, both write one complete checkpoint together and exit, and nothing hangs."""
    out = tmp_path / "preempted"
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", ACCELERATE_USE_CPU="true")
    child = subprocess.Popen(train_cmd("train_full.py", *common(tiny_model_dir, tokenizer_dir, small_encoded, out),
                                       "--batch_tokens", 300, "--epochs", 50, launcher="torchrun"),
                             cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and len(metrics(out) if (out / "metrics.jsonl").exists() else []) < 2:
            time.sleep(0.05)
        workers = worker_pids(child.pid)
        assert sorted(workers) == [0, 1], workers
        os.kill(workers[1], signal.SIGTERM)
        stdout, stderr = child.communicate(timeout=120)
    finally:
        child.kill()
    assert child.returncode != 0
    assert "SIGTERM: saved" in stdout, stdout[-3000:] + stderr[-3000:]
    checkpoints = [p for p in out.iterdir() if p.name.startswith("checkpoint-")]
    assert len(checkpoints) == 1
    state = json.loads((checkpoints[0] / "trainer_state.json").read_text())
    assert state["global_step"] >= 2
    assert not (out / "model.safetensors").exists()


def test_sigterm_is_ours_only_while_steps_run(tmp_path, tiny_model_dir, tokenizer_dir, small_encoded, monkeypatch):
    """After the loop, finish() (last eval, checkpoint, full save) gets the SIGTERM handler there was before."""
    import train_full

    from reasoning_sft.train import loop

    def before(signum, frame):
        pass

    seen_in_finish = []

    def finish(*args):
        seen_in_finish.append(signal.getsignal(signal.SIGTERM))
        return real_finish(*args)

    real_finish = loop.finish
    monkeypatch.setattr(loop, "finish", finish)
    previous = signal.signal(signal.SIGTERM, before)
    try:
        assert train_full.main([str(a) for a in common(tiny_model_dir, tokenizer_dir, small_encoded, tmp_path / "o",
                                                       "--max_steps", 1, "--batch_tokens", 1024)]) == 0
        assert seen_in_finish == [before]
        assert signal.getsignal(signal.SIGTERM) is before
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_preemption_restores_the_handler_it_replaced():
    from reasoning_sft.train.checkpoints import Preemption

    previous = signal.getsignal(signal.SIGTERM)
    with Preemption() as preemption:
        os.kill(os.getpid(), signal.SIGTERM)  # delivered to the flag, not the default (which would end pytest)
        assert preemption.requested
    assert signal.getsignal(signal.SIGTERM) is previous


@pytest.mark.slow
def test_two_processes_match_one_with_grad_accum(tmp_path, tiny_model_dir, tokenizer_dir, small_encoded):
    """2 CPU processes (gloo) with grad_accum 1 == 1 process with grad_accum 2: same step losses, same weights."""
    from safetensors.torch import load_file

    one, two = one_and_two_processes(tmp_path, tiny_model_dir, tokenizer_dir, small_encoded)
    assert train_losses(one) == pytest.approx(train_losses(two), rel=1e-5)
    assert [r["tokens"] for r in metrics(one) if "loss" in r] == [r["tokens"] for r in metrics(two) if "loss" in r]
    a, b = load_file(str(one / "model.safetensors")), load_file(str(two / "model.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ refusals

@pytest.mark.parametrize("flag, value", [("--log_every", 0), ("--max_steps", -1), ("--eval_every", -1),
                                         ("--save_every", -1), ("--keep_checkpoints", -1)])
def test_refuses_step_settings_that_would_crash_or_mislead(flag, value):
    from reasoning_sft.errors import UserError
    from reasoning_sft.train.loop import check_args, common_parser

    base = ["--model_name", "m", "--tokenizer_dir", "t", "--train_dir", "d", "--output_dir", "o", "--report_to", "none"]
    check_args(common_parser("").parse_args(base + ["--keep_checkpoints", "0", "--max_steps", "0"]))  # 0: keep all
    with pytest.raises(UserError, match=f"{flag} must be >="):
        check_args(common_parser("").parse_args(base + [flag, str(value)]))


def test_an_output_dir_that_cannot_be_one_is_one_line(tmp_path):
    import train_full

    from reasoning_sft.errors import UserError

    a_file = tmp_path / "a_file"
    a_file.write_text("not a directory")
    for output_dir, message in ((a_file, "is a file"), (a_file / "sub", "Not a directory")):
        with pytest.raises(UserError, match=message):
            train_full.main(["--model_name", "m", "--tokenizer_dir", "t", "--train_dir", "d", "--output_dir",
                             str(output_dir), "--report_to", "none"])
    assert a_file.read_text() == "not a directory"


def test_refuses_a_dataset_from_another_tokenizer(tmp_path, tiny_model_dir, small_encoded, sample_path, run_script):
    import prepare_llamatokenizer
    from reasoning_sft.demo import tiny_llama

    other_model = tmp_path / "other"
    tiny_llama.build(corpus=str(sample_path), out_dir=str(other_model), vocab_size=700)
    other_tok = tmp_path / "other_tok"
    assert prepare_llamatokenizer.main(["--model", str(other_model), "--out_dir", str(other_tok)]) == 0
    proc = run_script("training/train_full.py", *common(tiny_model_dir, other_tok, small_encoded, tmp_path / "o"))
    assert "re-encode" in our_error_line(proc, "train_full.py")


def test_flash_attn_missing_is_one_line_with_the_install_hint(tmp_path, tiny_model_dir, tokenizer_dir, small_encoded,
                                                              run_script):
    pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: a varlen kernel may exist")
    proc = run_script("training/train_peft.py", *common(tiny_model_dir, tokenizer_dir, small_encoded, tmp_path / "o"),
                      "--flash_attn")
    assert "pip install -r requirements-gpu.txt" in our_error_line(proc, "train_peft.py")
    assert "torch.nn.attention.varlen" in proc.stderr, proc.stderr  # PyTorch's own kernel is the other way


def test_report_to_a_missing_tracker_is_one_line(tmp_path, tiny_model_dir, tokenizer_dir, small_encoded, run_script):
    import importlib.util

    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here")
    proc = run_script("training/train_full.py", *common(tiny_model_dir, tokenizer_dir, small_encoded, tmp_path / "o"),
                      "--report_to", "wandb")
    assert "pip install wandb" in our_error_line(proc, "train_full.py")
    assert not (tmp_path / "o").exists()


def test_report_to_tensorboard_writes_events_beside_metrics(tmp_path, tiny_model_dir, tokenizer_dir, small_encoded):
    pytest.importorskip("tensorboard")
    out = tmp_path / "tb"
    proc = run_train("train_full.py", *common(tiny_model_dir, tokenizer_dir, small_encoded, out), "--max_steps", 2,
                     "--batch_tokens", 1024, "--report_to", "tensorboard", launcher="python")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(train_losses(out)) == 2 and (out / "loss.png").exists()
    assert list((out / "tensorboard").rglob("events.out.tfevents.*"))


def test_every_accelerate_config_loads():
    from accelerate.commands.config.config_args import load_config_from_file

    configs = sorted((REPO_ROOT / "configs").glob("*.yaml"))
    assert len(configs) >= 5
    for path in configs:
        config = load_config_from_file(str(path))
        assert config.num_processes >= 1, path
        if "fsdp" in path.name:  # FSDP2, the wrap unit from the model (tests/test_fsdp.py)
            assert config.fsdp_config["fsdp_version"] == 2
            assert "fsdp_transformer_layer_cls_to_wrap" not in config.fsdp_config


def test_prefetch_hands_out_the_planned_steps_in_order():
    """The background thread only fetches earlier: each step gets its own batches, a skipped key is loaded directly."""
    from reasoning_sft.train.loop import Prefetcher

    loaded = []

    def load(epoch, step):
        loaded.append((epoch, step))
        return [f"batches of {epoch}.{step}"]

    keys = [(0, 0), (0, 1), (1, 0), (1, 1)]
    with Prefetcher(load) as prefetch:
        got = [prefetch.get(key, nxt) for key, nxt in zip(keys, keys[1:] + [None])]
        assert prefetch.get((5, 5), None) == ["batches of 5.5"]  # not the prefetched key: loaded now
    assert got == [[f"batches of {e}.{s}"] for e, s in keys]
    assert loaded == keys + [(5, 5)]


def test_filler_batch_adds_zero_loss_but_reaches_every_parameter(tiny_model_dir, prepared):
    """A rank with no batch left still joins DDP's gradient all-reduce, contributing nothing."""
    from reasoning_sft.data.batching import empty_batch
    from reasoning_sft.train.modeling import ChunkedLossLM

    wrapper = ChunkedLossLM(fresh_model(tiny_model_dir, prepared)).train()
    loss, sections = wrapper(**empty_batch(prepared.pad_token_id))
    loss.backward()
    assert loss.item() == 0 and sections.sum() == 0
    for name, param in wrapper.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() == 0, name


@pytest.mark.slow
def test_qlora_trains_on_4bit_base_weights(tmp_path, tiny_model_dir, tokenizer_dir, small_encoded, capsys):
    """--load_in_4bit: NF4 base weights (bitsandbytes runs them on CPU too), LoRA on top."""
    import train_peft

    counts = {}
    for name, extra in (("fp32", []), ("nf4", ["--load_in_4bit"])):
        out = tmp_path / name
        assert train_peft.main([str(a) for a in common(tiny_model_dir, tokenizer_dir, small_encoded, out,
                                                       "--max_steps", 2, "--batch_tokens", 2048, *extra)]) == 0
        line = next(l for l in capsys.readouterr().out.splitlines() if "parameters trainable" in l)
        counts[name] = [int(n.replace(",", "")) for n in re.findall(r"([\d,]+) of ([\d,]+) parameters", line)[0]]
        assert (out / "adapter_model.safetensors").exists()
        assert all(np.isfinite(r["loss"]) for r in metrics(out) if "loss" in r)
    assert counts["nf4"][0] == counts["fp32"][0]  # same LoRA and tag rows train
    assert counts["nf4"][1] < counts["fp32"][1]   # 4-bit weights pack two values per stored element


@pytest.mark.slow
def test_compile_trains_to_the_same_losses(tmp_path, tiny_model_dir, tokenizer_dir, small_encoded):
    """--compile (each decoder layer through torch.compile, dynamic shapes: a packed row's length changes every
    step) gives the eager run's losses within float tolerance, on CPU through Inductor's C++ backend. The
    compiled run is launched as users launch it (and keeps Inductor out of the test process); the eager
    reference runs in this process."""
    runs = {}
    for name, extra in (("eager", []), ("compiled", ["--compile"])):
        out = tmp_path / name
        argv = common(tiny_model_dir, tokenizer_dir, small_encoded, out, "--batch_tokens", 2048, "--max_steps", 3,
                      *extra)
        if extra:
            proc = run_train("train_full.py", *argv, timeout=600)
            assert proc.returncode == 0, proc.stderr[-3000:]
        else:
            assert train_here("train_full.py", *argv)[0] == 0
        runs[name] = train_losses(out)
    assert len(runs["compiled"]) == 3
    assert runs["compiled"] == pytest.approx(runs["eager"], rel=1e-4), runs


def test_callbacks_see_every_step_and_every_checkpoint(tmp_path, tiny_model_dir, tokenizer_dir, small_encoded):
    """What benchmarks observe instead of patching the loop: step_context around each optimizer step (with
    the steps done before it), on_checkpoint after each checkpoint with its save and seal seconds."""
    import contextlib

    import train_full

    from reasoning_sft.train.loop import Callback

    class Recorder(Callback):
        steps, checkpoints = [], []

        @contextlib.contextmanager
        def step_context(self, trainer):
            self.steps.append(trainer.position.global_step)
            yield

        def on_checkpoint(self, trainer, path, seconds):
            self.checkpoints.append((os.path.basename(path), sorted(seconds), min(seconds.values()) >= 0))

    out = tmp_path / "o"
    assert train_full.main([str(a) for a in common(tiny_model_dir, tokenizer_dir, small_encoded, out, "--max_steps", 3,
                                                   "--batch_tokens", 1024, "--save_every", 2)],
                           callbacks=[Recorder()]) == 0
    assert Recorder.steps == [0, 1, 2]
    assert Recorder.checkpoints == [("checkpoint-2", ["save", "seal"], True), ("checkpoint-3", ["save", "seal"], True)]
