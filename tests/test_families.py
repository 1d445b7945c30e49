"""The model families' published tokenizers and tiny models (reasoning_sft/demo/families.py).

Each BPE family's tokenizer is rebuilt from llama.cpp's vocabulary GGUF; these tests prove it is the published
one: the GGUF's own test vectors (what llama.cpp checks its tokenizer against, generated from the hub's
tokenizer), the published special tokens and lengths, the name llama.cpp's converter gives its pre-tokenizer,
and the tiny model's architecture, rows and tying.
"""

import json

import pytest
from conftest import BPE_FAMILIES, FAMILIES, TOKENIZER_FAMILIES, family_params

DISTINCT_BPE = [name for name in TOKENIZER_FAMILIES if name in BPE_FAMILIES]

from reasoning_sft.demo import families

_loaded = {}


def load(base):
    """AutoTokenizer of a base dir, as stage 1 and llama.cpp's converter load it (once per dir)."""
    from transformers import AutoTokenizer

    if base not in _loaded:
        _loaded[base] = AutoTokenizer.from_pretrained(str(base))
    return _loaded[base]


@pytest.mark.parametrize("family", family_params(DISTINCT_BPE))
def test_published_tokenizer_passes_llama_cpp_test_vectors(family, family_base):
    """tokenizer.json, as saved, encodes every .gguf.inp text to its .gguf.out ids (without special tokens)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(family_base(family) / "tokenizer.json"))
    vectors = families.vocab_test_vectors(family)
    assert len(vectors) > 40
    wrong = [(text, ids, tokenizer.encode(text, add_special_tokens=False).ids) for text, ids in vectors
             if tokenizer.encode(text, add_special_tokens=False).ids != ids]
    assert not wrong, wrong[:3]


@pytest.mark.parametrize("family", family_params(BPE_FAMILIES))
def test_published_special_tokens(family, family_base):
    """Length, BOS (and whether it is added), EOS, pad and the special-token ids as the published files have them."""
    fam = families.FAMILIES[family]
    tokenizer = load(family_base(family))
    assert len(tokenizer) == fam.length
    assert tokenizer.bos_token == fam.bos and tokenizer.eos_token == fam.eos and tokenizer.pad_token == fam.pad
    ids = tokenizer("def f(): pass")["input_ids"]
    assert (ids[0] == tokenizer.bos_token_id) == fam.add_bos, ids
    assert ids[-1] != tokenizer.eos_token_id
    vocab = tokenizer.get_vocab()
    expected = {
        "qwen2.5-coder-tied": {"<|endoftext|>": 151643, "<|im_end|>": 151645, "<|fim_prefix|>": 151659,
                               "<|file_sep|>": 151664},
        "qwen2.5-coder": {"<|endoftext|>": 151643, "<|file_sep|>": 151664},
        "qwen3": {"<|endoftext|>": 151643, "<tool_response>": 151665, "<think>": 151667, "</think>": 151668},
        "llama-3.1": {"<|begin_of_text|>": 128000, "<|end_of_text|>": 128001, "<|eot_id|>": 128009,
                      "<|python_tag|>": 128010, "<|reserved_special_token_247|>": 128255},
        "deepseek-coder": {"<｜begin▁of▁sentence｜>": 32013, "<｜end▁of▁sentence｜>": 32014, "<|EOT|>": 32021},
        "starcoder2": {"<|endoftext|>": 0, "<fim_prefix>": 1, "<PASSWORD>": 37},
    }[family]
    assert {t: vocab.get(t) for t in expected} == expected
    if family == "qwen3":  # plain added tokens: kept by decoders that skip special tokens
        assert tokenizer.decode([151667, 151668], skip_special_tokens=True) == "<think></think>"
    if fam.vocab == "qwen2":
        assert not any(t.startswith("[PAD") for t in vocab)  # the GGUF's row fillers are no tokens


@pytest.mark.parametrize("family", family_params(DISTINCT_BPE))
def test_llama_cpp_converter_recognises_the_pre_tokenizer(family, family_base):
    """convert_hf_to_gguf.py's get_vocab_base_pre (its text and hash table, read from its source) names the
    family's pre-tokenizer for the tokenizer as transformers loads it: BOS rule and pre-tokenizer as published."""
    assert families.converter_pre_name(load(family_base(family))) == families.FAMILIES[family].llama_cpp_pre


def test_an_invented_bos_is_not_recognised(family_base, tmp_path):
    """The hash covers the special tokens too: Qwen's tokenizer with a BOS forced on is no longer 'qwen2'."""
    from tokenizers import Tokenizer, processors
    from transformers import AutoTokenizer

    base = family_base("qwen2.5-coder-tied")
    raw = Tokenizer.from_file(str(base / "tokenizer.json"))
    raw.post_processor = processors.TemplateProcessing(single="<|endoftext|> $A", special_tokens=[
        ("<|endoftext|>", 151643)])
    (tmp_path / "forced").mkdir()
    raw.save(str(tmp_path / "forced" / "tokenizer.json"))
    (tmp_path / "forced" / "tokenizer_config.json").write_text((base / "tokenizer_config.json").read_text())
    forced = AutoTokenizer.from_pretrained(str(tmp_path / "forced"))
    assert forced("x")["input_ids"][0] == 151643
    assert families.converter_pre_name(forced) is None


@pytest.mark.parametrize("family", family_params(FAMILIES))
def test_tiny_model_has_the_family_architecture_rows_and_tying(family, family_base):
    """config.json: the architecture class, the real row count, tying and bos/eos ids as published; heads >= 32."""
    fam = families.FAMILIES[family]
    base = family_base(family)
    config = json.loads((base / "config.json").read_text())
    assert config["architectures"] == [fam.architecture] and config["model_type"] == fam.model_type
    assert config["vocab_size"] == (fam.rows or len(load(base)))
    assert config["vocab_size"] >= len(load(base))
    assert config.get("tie_word_embeddings", False) == fam.tied
    assert (config["bos_token_id"], config["eos_token_id"]) == (fam.config_bos_id, fam.config_eos_id)
    head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    assert head_dim >= 32 and config["num_hidden_layers"] == 2


@pytest.mark.slow  # builds qwen2.5-coder's untied base, a SLOW_FAMILIES one
def test_tied_and_untied_weights_as_saved(family_base):
    """A tied family saves one matrix (the head is the embedding); an untied one two, each of the real rows."""
    from safetensors import safe_open

    for family in ("qwen2.5-coder-tied", "qwen2.5-coder"):
        with safe_open(str(family_base(family) / "model.safetensors"), "pt") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys() if "embed" in k or "lm_head" in k}
        rows = families.FAMILIES[family].rows
        expected = {"model.embed_tokens.weight": (rows, 64)}
        if not families.FAMILIES[family].tied:
            expected["lm_head.weight"] = (rows, 64)
        assert shapes == expected


def test_missing_vocabularies_say_how_to_get_them(monkeypatch, tmp_path):
    monkeypatch.setenv("REASONING_SFT_LLAMA_CPP", str(tmp_path / "nowhere"))
    with pytest.raises(families.VocabMissing, match="make vocab"):
        families.published_tokenizer("qwen3", tmp_path / "out")
