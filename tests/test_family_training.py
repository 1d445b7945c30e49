"""Training on each model family's architecture (issue 29's training part, issue 30's export provenance).

Tiny random models of each family's architecture class, with its row layout and tying: tag ids that
land in spare rows past the tokenizer (Qwen2.5/Qwen3: 151,936 or 152,064 rows; DeepSeek-Coder 32,256),
tags that grow an exact-size matrix (Llama-3.1: 128,256; StarCoder2: 49,152), tied heads (Qwen2.5
0.5B-3B, StarCoder2). Checked in this process on the model (fast). Then each family, with its published tokenizer
and a tiny model with its real rows and tying (conftest's family fixtures), is trained as users train it
(both trainers, in this process, 2 steps) and exported, and the LoRA adapter, loaded with plain peft,
gives the logits of its merged export.
"""

import json

import pytest
import torch
from conftest import REPO_ROOT, family_params, train_here

from reasoning_sft.data.template import TAGS
from reasoning_sft.demo.families import ARCH_EXTRA, BPE_FAMILIES, FAMILIES, TINY

# Each family's architecture class, tying and row layout (reasoning_sft/demo/families.py), scaled down to the
# demo's tokenizer: a family whose matrix has spare rows past its tokenizer (Qwen, DeepSeek-Coder) gets 57
# spare rows past this tokenizer, so that the tags land in rows that exist; one whose rows are exactly its
# vocabulary (Llama-3.1, StarCoder2) gets exactly the demo vocabulary's rows, so that the tags grow it.
ARCHS = {name: (FAMILIES[name].model_type, 57 if FAMILIES[name].rows > FAMILIES[name].length else None,
                FAMILIES[name].tied) for name in BPE_FAMILIES}
LINEAR_TARGETS = {
    "qwen2": {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
    "qwen3": {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
    "llama": {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
    "starcoder2": {"q_proj", "k_proj", "v_proj", "o_proj", "c_fc", "c_proj"},
}


def base_rows(prepared):
    """The tokenizer's rows before stage 1 added the tags and the pad (they are its last ids)."""
    return min(prepared.convert_tokens_to_ids(list(TAGS)))


def arch_model(arch, prepared, seed=0):
    """A tiny random model of the family's architecture (families.TINY's shape): rows and tying as ARCHS says."""
    from transformers import AutoConfig, AutoModelForCausalLM

    model_type, spare, tied = ARCHS[arch]
    rows = len(prepared) + spare if spare is not None else base_rows(prepared)
    config = AutoConfig.for_model(model_type, vocab_size=rows, tie_word_embeddings=tied,
                                  bos_token_id=prepared.bos_token_id, eos_token_id=prepared.eos_token_id,
                                  **dict(TINY, **ARCH_EXTRA[model_type]))
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config)


@pytest.fixture(scope="module")
def prepared(tokenizer_dir):
    from reasoning_sft.artifacts import load_prepared_tokenizer
    return load_prepared_tokenizer(str(tokenizer_dir))[0]


def tag_ids(prepared):
    return sorted(prepared.convert_tokens_to_ids(list(TAGS)))


def batch_of(small_encoded, prepared, n=3):
    import datasets

    from reasoning_sft.data.batching import collate
    from reasoning_sft.data.template import tag_ids as tag_map
    from reasoning_sft.train.loop import fetch_rows

    rows = fetch_rows(datasets.load_from_disk(str(small_encoded)), range(n))
    return collate(rows, prepared.pad_token_id, False, tag_map(prepared))


# ------------------------------------------------------------------ the rows

@pytest.mark.parametrize("arch", ARCHS)
def test_tag_rows_start_from_their_names_in_spare_rows_and_nothing_shrinks(arch, prepared):
    """Spare rows past the tokenizer (never trained) get the name-mean init like new rows; the matrix keeps its
    rows (resize_token_embeddings(len(tokenizer)) would cut Qwen's 151,936 to 151,672); a tied head stays tied."""
    from reasoning_sft.train.modeling import resize_and_init_new_tokens

    model = arch_model(arch, prepared)
    before = model.get_input_embeddings().weight.detach().clone()
    head_before = model.get_output_embeddings().weight.detach().clone()
    rows = before.shape[0]
    assert resize_and_init_new_tokens(model, prepared) == tag_ids(prepared)
    emb, head = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    assert emb.shape[0] == max(rows, len(prepared)) and head.shape[0] == emb.shape[0]
    assert (head is emb) == ARCHS[arch][2] and model.config.get_text_config().tie_word_embeddings == ARCHS[arch][2]
    n = base_rows(prepared)
    assert torch.equal(emb[:n], before[:n]) and torch.equal(head[:n], head_before[:n])  # the vocabulary's rows
    for tag in TAGS:
        pieces = prepared(tag.strip("</>"), add_special_tokens=False)["input_ids"]
        i = prepared.convert_tokens_to_ids(tag)
        torch.testing.assert_close(emb[i], before[pieces].mean(0))
        torch.testing.assert_close(head[i], head_before[pieces].mean(0))
    assert emb[prepared.pad_token_id].abs().sum() == 0 and head[prepared.pad_token_id].abs().sum() == 0
    if rows > len(prepared):  # the spare rows past every token are left as they were
        assert torch.equal(emb[len(prepared):], before[len(prepared):])


# ------------------------------------------------------------------ LoRA: the rows that train, the head's gradient

def lora_of(arch, prepared, targets="all-linear", seed=0):
    from reasoning_sft.train.modeling import lora_model, resize_and_init_new_tokens

    model = arch_model(arch, prepared, seed)
    rows = resize_and_init_new_tokens(model, prepared)
    model = lora_model(model, rows, 4, 8, 0.0, targets)
    for name, param in model.named_parameters():  # B starts at zero: give the adapters something to carry
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.02)
    return model


@pytest.mark.parametrize("arch", ARCHS)
def test_lora_trains_one_row_per_tag_and_the_head_gradient_is_only_theirs(arch, prepared, small_encoded):
    """Tied: one [tags, d] table trains, shared by embedding and head; untied: one per matrix. The fused head
    keeps no [vocabulary, d] gradient (only [tags, d]), and the loss and every gradient are full logits'."""
    from reasoning_sft.train.modeling import ChunkedLossLM, decoder_and_head, trainable_head_rows

    model = lora_of(arch, prepared)
    tied = ARCHS[arch][2]
    rows_params = {n: p for n, p in model.named_parameters() if p.requires_grad and "lora_" not in n}
    assert len(rows_params) == (1 if tied else 2), list(rows_params)
    assert all(p.shape == (len(TAGS), TINY["hidden_size"]) for p in rows_params.values())
    ids, row_weight = trainable_head_rows(decoder_and_head(model)[1])
    assert ids == tag_ids(prepared) and any(row_weight is p for p in rows_params.values())

    batch = batch_of(small_encoded, prepared)
    # the reference: full logits, one cross-entropy
    model.zero_grad()
    keep = batch["targets"] != -100
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
    want_loss = torch.nn.functional.cross_entropy(logits[keep].float(), batch["targets"][keep], reduction="sum")
    want_loss.backward()
    want = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()

    vocab = model.get_base_model().get_input_embeddings().weight.shape[0]
    saved = []

    def pack(tensor):
        saved.append(tuple(tensor.shape))
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss, _ = ChunkedLossLM(model, chunk=97).train()(**batch)
    loss.backward()
    assert not any(len(s) == 2 and s[0] == vocab for s in saved), saved  # no [vocabulary, d] gradient kept
    assert (len(TAGS), TINY["hidden_size"]) in saved
    torch.testing.assert_close(loss.detach(), want_loss.detach(), rtol=1e-5, atol=1e-4)
    for name, grad in want.items():
        assert grad.abs().sum() > 0, name
        torch.testing.assert_close(dict(model.named_parameters())[name].grad, grad, rtol=1e-4, atol=1e-6)


def test_the_loss_chunk_is_sized_in_bytes_and_gives_the_unchunked_loss(prepared, small_encoded):
    from reasoning_sft.train.modeling import LOSS_CHUNK_BYTES, ChunkedLossLM, loss_chunk_rows

    assert loss_chunk_rows(32016) == 4096  # CodeLlama: the 4,096 rows of before
    for vocab in (32016, 32256, 49152, 128263, 151936, 152064, 256000):
        rows = loss_chunk_rows(vocab)
        assert rows % 128 == 0 and rows * vocab * 4 <= LOSS_CHUNK_BYTES < (rows + 128) * vocab * 4, vocab
    assert loss_chunk_rows(152064) == 768  # 4,096 rows would be 2.5 GB of fp32 logits at Qwen's vocabulary
    assert loss_chunk_rows(10**9) == 1

    from reasoning_sft.train.modeling import resize_and_init_new_tokens
    model = arch_model("qwen2.5-coder", prepared)
    resize_and_init_new_tokens(model, prepared)
    vocab = model.get_input_embeddings().weight.shape[0]
    batch = batch_of(small_encoded, prepared)
    keep = batch["targets"] != -100
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    want = torch.nn.functional.cross_entropy(logits[keep], batch["targets"][keep], reduction="sum")
    chunk = loss_chunk_rows(vocab, budget_bytes=vocab * 4 * 50)  # a budget of 50 rows: several chunks
    assert chunk == 50 and keep.sum() > 2 * chunk
    wrapper = ChunkedLossLM(model, chunk=chunk)
    for train in (True, False):  # the fused head and the plain chunked eval path
        loss, _ = wrapper.train(train)(**batch)
        torch.testing.assert_close(loss.detach(), want, rtol=1e-5, atol=1e-4)
    assert ChunkedLossLM(model).chunk_rows(vocab) == loss_chunk_rows(vocab)  # by default: from the bytes


@pytest.mark.parametrize("arch", ["qwen2.5-coder-tied", "llama-3.1", "starcoder2"])
def test_lora_targets_come_from_the_architecture_and_the_flag_overrides_them(arch, prepared):
    from reasoning_sft.errors import UserError
    from reasoning_sft.train.modeling import lora_target_names

    model_type = ARCHS[arch][0]
    assert set(lora_target_names(lora_of(arch, prepared))) == LINEAR_TARGETS[model_type]
    assert lora_target_names(lora_of(arch, prepared, ["q_proj", "v_proj"])) == ["q_proj", "v_proj"]
    with pytest.raises(UserError, match="--lora_target_modules: gate not in this model; its linear layers are") as err:
        lora_of(arch, prepared, ["q_proj", "gate"])
    assert str(err.value).endswith(",".join(sorted(LINEAR_TARGETS[model_type])))


# ------------------------------------------------------------------ each family trained, exported, trained again

def train_args(model_dir, tokenizer_dir, train_dir, out, *extra):
    return ["--model_name", model_dir, "--tokenizer_dir", tokenizer_dir, "--train_dir", train_dir,
            "--output_dir", out, "--max_steps", 2, "--batch_tokens", 1024, "--lr", 1e-2, "--warmup_ratio", 0,
            "--log_every", 1, "--seed", 5, "--report_to", "none", *extra]


def export_dir(model_dir, out):
    import export

    assert export.main(["--model_dir", str(model_dir), "--out_dir", str(out)]) == 0
    return out


# make check trains DeepSeek-Coder and StarCoder2 (32k and 49k rows: a few seconds each); the 128k-152k-row
# families, tied Qwen2.5-Coder included (about 25 s of CPU each, fixtures aside), are slow: make test trains them
PIPELINE_FAMILIES = [pytest.param(p, marks=pytest.mark.slow) if p == "qwen2.5-coder-tied" else p
                     for p in family_params(BPE_FAMILIES)]


@pytest.mark.parametrize("family", PIPELINE_FAMILIES)
def test_each_family_trains_both_ways_and_exports(family, family_base, family_prepared, family_encoded, tmp_path):
    """The family's published tokenizer through stages 1-3 (conftest's fixtures) and its tiny model with the real
    rows and tying: both trainers, 2 steps each, in this process, then export.py. The export keeps the rows
    (Qwen's spare ones; Llama-3.1's grown by the tags) and a tied model stays tied, embedding = head; it
    records its tag rows as trained (a run on it keeps them); the LoRA adapter loaded with plain peft (base +
    resize_and_init_new_tokens + PeftModel.from_pretrained) gives the merged export's logits, and only the
    tag rows of the embedding moved; train_config.json names the LoRA layers, the architecture's."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from reasoning_sft.artifacts import load_prepared_tokenizer
    from reasoning_sft.train.modeling import TAG_IDS_KEY, resize_and_init_new_tokens

    base, tokenizer_dir, train_dir = family_base(family), family_prepared(family), family_encoded(family)
    prepared = load_prepared_tokenizer(str(tokenizer_dir))[0]
    fam = FAMILIES[family]
    full, lora = tmp_path / "full", tmp_path / "lora"
    assert train_here("train_full.py", *train_args(base, tokenizer_dir, train_dir, full))[0] == 0
    assert train_here("train_peft.py", *train_args(base, tokenizer_dir, train_dir, lora, "--lora_r", 4))[0] == 0
    config = json.loads((lora / "train_config.json").read_text())
    assert set(config["lora_target_modules"]) == LINEAR_TARGETS[fam.model_type]

    ids = torch.tensor([prepared("def f(x):\n    return x")["input_ids"] + tag_ids(prepared)])
    plain = AutoModelForCausalLM.from_pretrained(str(base))
    resize_and_init_new_tokens(plain, prepared)
    untrained = plain.get_input_embeddings().weight.detach().clone()
    for run in (full, lora):
        model = AutoModelForCausalLM.from_pretrained(str(export_dir(run, tmp_path / f"{run.name}-serve"))).eval()
        emb, head = model.get_input_embeddings().weight, model.get_output_embeddings().weight
        assert emb.shape[0] == max(fam.rows, len(prepared)) and model.config.tie_word_embeddings == fam.tied
        assert (head is emb) == fam.tied
        assert getattr(model.config, TAG_IDS_KEY) == dict(zip(TAGS, prepared.convert_tokens_to_ids(list(TAGS))))
        learned = emb.detach().clone()
        resize_and_init_new_tokens(model, prepared)  # what a run on the export does first: nothing here
        assert torch.equal(model.get_input_embeddings().weight, learned)
        if run is lora:
            adapter = PeftModel.from_pretrained(plain, str(lora)).eval()
            with torch.no_grad():
                want = adapter(input_ids=ids).logits
                torch.testing.assert_close(model(input_ids=ids).logits, want, rtol=1e-5, atol=1e-5)
            moved = (learned - untrained).abs().sum(-1).nonzero().flatten().tolist()
            assert moved == tag_ids(prepared)  # LoRA moved the tag rows of the embedding, no other row


def test_a_lora_export_trained_again_keeps_its_tag_rows(family_base, family_prepared, family_encoded, tmp_path):
    """Issue 30: training again from a LoRA run's export starts from the tag rows it learned (DeepSeek-Coder: the
    tags have ids of spare rows, which a run re-initialises unless the model says they are trained)."""
    from transformers import AutoModelForCausalLM

    from reasoning_sft.artifacts import load_prepared_tokenizer

    family = "deepseek-coder"
    tokenizer_dir, train_dir = family_prepared(family), family_encoded(family)
    tags = tag_ids(load_prepared_tokenizer(str(tokenizer_dir))[0])
    lora = tmp_path / "lora"
    assert train_here("train_peft.py", *train_args(family_base(family), tokenizer_dir, train_dir, lora,
                                                   "--lora_r", 4))[0] == 0
    served = export_dir(lora, tmp_path / "serve")
    again = tmp_path / "again"
    # --lr 0: the second run changes nothing, so its model holds the rows it started from
    assert train_here("train_full.py", *train_args(served, tokenizer_dir, train_dir, again, "--lr", 0))[0] == 0
    exported = AutoModelForCausalLM.from_pretrained(str(served)).get_input_embeddings().weight
    trained_again = AutoModelForCausalLM.from_pretrained(str(again)).get_input_embeddings().weight
    torch.testing.assert_close(trained_again[tags], exported[tags], rtol=0, atol=0)


# ------------------------------------------------------------------ the shipped configs: --plan on the real shapes

PUBLISHED = {  # configs/models/NAME: (parameters as published, tied)
    "Qwen2.5-Coder-7B": (7_615_616_512, False),
    "Qwen2.5-Coder-14B": (14_770_033_664, False),
    "Qwen2.5-Coder-32B": (32_763_876_352, False),
    "Qwen3-8B": (8_190_735_360, False),
    "Llama-3.1-8B": (8_030_261_248, False),
    "deepseek-coder-6.7b-base": (6_740_512_768, False),
    "starcoder2-7b": (7_173_923_840, True),
}


@pytest.mark.parametrize("name", PUBLISHED)
def test_shipped_configs_build_the_published_models_for_plan(name, tokenizer_dir, encoded_dir, tmp_path):
    """What --plan builds from each configs/models/NAME/config.json (fake tensors): the published parameter count,
    rows and tying; the tags land in spare rows or grow the matrix, never shrink it."""
    from reasoning_sft.train import planning, precision
    from reasoning_sft.train.loop import load_data
    from reasoning_sft.train.modeling import has_tied_head

    train_full = __import__("train_full")
    model_dir = REPO_ROOT / "configs" / "models" / name
    args = train_full.parse_args(["--model_name", str(model_dir), "--tokenizer_dir", str(tokenizer_dir),
                                  "--train_dir", str(encoded_dir / "arrow_dataset"), "--output_dir",
                                  str(tmp_path / "o"), "--plan"])
    data = load_data(args)
    policy = precision.resolve(args.precision, "full", args.flash_attn, fsdp=False)
    model, tag_rows = planning.fake_model(args, train_full.FULL, data, policy, "flash-attn")
    params, tied = PUBLISHED[name]
    rows = json.loads((model_dir / "config.json").read_text())["vocab_size"]
    assert len(data.tokenizer) <= rows  # the demo's tokenizer: its tags land in rows the model has
    assert model.get_input_embeddings().weight.shape[0] == rows and has_tied_head(model) == tied
    assert sum(p.numel() for p in model.parameters()) == params
    assert model._no_split_modules  # what FSDP's wrap class and checkpointing are asked of


@pytest.mark.slow
def test_plan_runs_on_qwen25_coder_7b_and_lora_keeps_no_head_gradient(tokenizer_dir, encoded_dir, tmp_path,
                                                                        capsys):
    """--plan on the shipped Qwen2.5-Coder-7B config (152,064 rows): a LoRA plan whose gradients are the
    adapters' and the tag rows' (no [152064 x 3584] fp32 head gradient: that alone would be 2 GiB)."""
    train_peft = __import__("train_peft")
    argv = ["--model_name", str(REPO_ROOT / "configs" / "models" / "Qwen2.5-Coder-7B"), "--tokenizer_dir",
            str(tokenizer_dir), "--train_dir", str(encoded_dir / "arrow_dataset"), "--output_dir",
            str(tmp_path / "o"), "--batch_tokens", "4096", "--gradient_checkpointing", "--flash_attn",
            "--plan", "--gpu_memory_gib", "80", "--accelerate_config", str(REPO_ROOT / "configs" / "single_gpu.yaml")]
    assert train_peft.main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["fits"] is True and summary["peak_gib"] > 14  # bf16 weights alone are 14.2 GiB
    assert summary["grads_gib"] < 0.5
    assert not (tmp_path / "o").exists()
