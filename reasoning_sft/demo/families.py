"""The model families the toolkit takes, each as its published tokenizer plus a tiny random model.

One table, `FAMILIES` (name -> `Family`), and two builders, for tests and demos that must see what a
real user's base model looks like without downloading one:

    published_tokenizer(family, out_dir)   the family's tokenizer as its hub repository publishes it
                                           (tokenizer.json + tokenizer_config.json), rebuilt offline from
                                           llama.cpp's vocabulary GGUF (models/ggml-vocab-*.gguf)
    tiny_model(family, out_dir, tokenizer) a tiny random model of the family's real architecture class,
                                           real embedding row count and tying, config.json bos/eos as published
    base_model(family, out_dir)            both in one directory: what `--model` points at

    from reasoning_sft.demo.families import FAMILIES, base_model
    for name in FAMILIES: base_model(name, f"out/{name}")

The families (facts from the published config.json / tokenizer_config.json / tokenizer.json):

    name                class                  rows     tied  tokenizer (len)              BOS            EOS
    codellama           LlamaForCausalLM       (len)    no    SentencePiece (tiny_llama)   <s>, added     </s>
    qwen2.5-coder-tied  Qwen2ForCausalLM       151,936  yes   byte-level BPE (151,665)     none           <|endoftext|>
    qwen2.5-coder       Qwen2ForCausalLM       152,064  no    (the same)                   none           <|endoftext|>
    qwen3               Qwen3ForCausalLM       151,936  no    + 4 plain tokens (151,669)   none           <|endoftext|>
    llama-3.1           LlamaForCausalLM       128,256  no    byte-level BPE (128,256)     128000, added  128001
    deepseek-coder      LlamaForCausalLM       32,256   no    byte-level BPE (32,022)      32013, added   32014
    starcoder2          Starcoder2ForCausalLM  49,152   yes   GPT-2 BPE, digits (49,152)   0, not added   0 (same)

Shapes: qwen2.5-coder-tied is Qwen2.5-Coder-0.5B..3B, qwen2.5-coder is 7B and up; qwen3 is Qwen3-8B (untied;
0.6B-4B tie), llama-3.1 is Llama-3.1-8B, deepseek-coder is deepseek-coder-6.7b-base, starcoder2 is
starcoder2-3b/7b. EOS is the base model's (instruct models end turns with <|im_end|> / <|eot_id|> instead).
`codellama` is the demo's tiny SentencePiece Llama (reasoning_sft/demo/tiny_llama.py): trained on a corpus,
not rebuilt from a GGUF, and its row count is its vocabulary's.

In the tests (tests/conftest.py): `FAMILIES` (every name here), `TOKENIZER_FAMILIES` (one per distinct
tokenizer), `family_params(names)` (parametrize values; the 128k-152k-vocabulary ones marked slow, run by
make test, not make check), and session-cached factory fixtures, each built on first use, in-process:
`family_base(name)` -> base dir, `family_prepared(name)` -> stage 1 dir, `family_encoded(name)` -> stage 3's
arrow_dataset (a trainer's --train_dir). Other helpers: `family(name)` (the Family, UserError if unknown),
`BPE_FAMILIES`, `vocab_test_vectors(name)`, `converter_pre_name(tokenizer)` (the name
llama.cpp's convert_hf_to_gguf.py gives a tokenizer's BPE pre-tokenizer, None if it does not know it).

The vocabularies come from llama-cpp-python's sdist (`make vocab`, scripts/vocab.sh) under
`vocab_dir()`; `VocabMissing` (a UserError) says how to get them. The GGUFs carry the BPE tokens and merges;
what they lack or add (Qwen's 22 special tokens are three plus [PAD…] fillers there, Llama-3's special token
names are 3.0's) is written here from the published files, and the tokenizer's pipeline (normalizer,
pre-tokenizer, post-processor) is the published tokenizer.json's. Proof: each GGUF's `.gguf.inp`/`.gguf.out`
test vectors (`vocab_test_vectors`) and the name llama.cpp's converter gives the pre-tokenizer (`llama_cpp_pre`).
"""

import dataclasses
import json
import os
import re

from reasoning_sft.errors import UserError

CODELLAMA = "codellama"

# The pre-tokenizer regexes, as the published tokenizer.json files write them.
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
               r"|\s+(?!\S)|\s+")
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
DEEPSEEK_CODER_SPLITS = (r"[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", "[一-龥ࠀ-一가-퟿]+")

# Qwen2.5's added tokens (151643...): (content, special). The GGUF has only the first three.
QWEN25_ADDED = (
    [(t, True) for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>",
                         "<|object_ref_end|>", "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>",
                         "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")]
    + [(t, False) for t in ("<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>",
                            "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>")]
)
# Qwen3 adds four plain tokens after them (151665...), <think> at 151667
QWEN3_ADDED = QWEN25_ADDED + [(t, False) for t in ("<tool_response>", "</tool_response>", "<think>", "</think>")]
# the additional_special_tokens of both Qwen tokenizer_config.json files
QWEN_ADDITIONAL = [t for t, special in QWEN25_ADDED[1:] if special]


def llama31_added():
    """Llama-3.1's 256 special tokens (128000...); the GGUF's names are Llama-3.0's (no eom/python_tag)."""
    named = {128000: "<|begin_of_text|>", 128001: "<|end_of_text|>", 128002: "<|reserved_special_token_0|>",
             128003: "<|reserved_special_token_1|>", 128004: "<|finetune_right_pad_id|>",
             128005: "<|reserved_special_token_2|>", 128006: "<|start_header_id|>", 128007: "<|end_header_id|>",
             128008: "<|eom_id|>", 128009: "<|eot_id|>", 128010: "<|python_tag|>"}
    return [(named.get(i, f"<|reserved_special_token_{i - 128008}|>"), True) for i in range(128000, 128256)]


@dataclasses.dataclass(frozen=True)
class Family:
    name: str
    architecture: str          # the transformers model class of the published config.json
    model_type: str            # config.json's model_type
    rows: int | None           # embedding rows (vocab_size in config.json); None: the tokenizer's length
    tied: bool                 # tie_word_embeddings
    vocab: str | None          # llama.cpp's models/ggml-vocab-<vocab>.gguf; None for the SentencePiece demo
    llama_cpp_pre: str | None  # the name convert_hf_to_gguf.py's get_vocab_base_pre gives the pre-tokenizer
    length: int | None         # len(tokenizer) as published
    bos: str | None            # the tokenizer's bos_token (None: Qwen publishes null)
    add_bos: bool              # the tokenizer adds BOS to every encoding
    eos: str
    pad: str | None            # the published pad_token (where the base's pad is EOS, stage 1 adds its own)
    config_bos_id: int | None  # config.json's bos_token_id (Qwen's says 151643 although no BOS is ever added)
    config_eos_id: int
    tokenizer_class: str       # tokenizer_config.json's tokenizer_class, as published
    model_max_length: int
    notes: str = ""

    @property
    def sentencepiece(self):
        return self.vocab is None


FAMILIES = {f.name: f for f in (
    Family(CODELLAMA, "LlamaForCausalLM", "llama", None, False, None, None, None, "<s>", True, "</s>", None, 1, 2,
           "LlamaTokenizer", 4096, "the demo's tiny SentencePiece Llama (tiny_llama.py), CodeLlama's format"),
    Family("qwen2.5-coder-tied", "Qwen2ForCausalLM", "qwen2", 151936, True, "qwen2", "qwen2", 151665, None, False,
           "<|endoftext|>", "<|endoftext|>", 151643, 151643, "Qwen2Tokenizer", 32768,
           "Qwen2.5-Coder-0.5B/1.5B/3B: tied, 271 spare rows past the tokenizer"),
    Family("qwen2.5-coder", "Qwen2ForCausalLM", "qwen2", 152064, False, "qwen2", "qwen2", 151665, None, False,
           "<|endoftext|>", "<|endoftext|>", 151643, 151643, "Qwen2Tokenizer", 32768,
           "Qwen2.5-Coder-7B/14B/32B: untied, 399 spare rows"),
    Family("qwen3", "Qwen3ForCausalLM", "qwen3", 151936, False, "qwen2", "qwen2", 151669, None, False,
           "<|endoftext|>", "<|endoftext|>", 151643, 151643, "Qwen2Tokenizer", 131072,
           "Qwen3-8B(-Base) shape: untied (0.6B-4B tie); <think>/</think> are plain tokens 151667/151668"),
    Family("llama-3.1", "LlamaForCausalLM", "llama", 128256, False, "llama-bpe", "llama-bpe", 128256,
           "<|begin_of_text|>", True, "<|end_of_text|>", None, 128000, 128001, "PreTrainedTokenizerFast", 131072,
           "Llama-3.1-8B: BOS added by the post-processor, no pad token"),
    Family("deepseek-coder", "LlamaForCausalLM", "llama", 32256, False, "deepseek-coder", "deepseek-coder", 32022,
           "<｜begin▁of▁sentence｜>", True, "<｜end▁of▁sentence｜>", "<｜end▁of▁sentence｜>", 32013, 32014,
           "LlamaTokenizerFast", 16384, "deepseek-coder-6.7b-base: 234 spare rows past the tokenizer"),
    Family("starcoder2", "Starcoder2ForCausalLM", "starcoder2", 49152, True, "starcoder", "starcoder", 49152,
           "<|endoftext|>", False, "<|endoftext|>", None, 0, 0, "GPT2Tokenizer", 1000000000000000019884624838656,
           "starcoder2-3b/7b: BOS = EOS = 0, never added; digits split one by one"),
)}
# the families rebuilt from llama.cpp's vocabularies (all but the SentencePiece demo)
BPE_FAMILIES = tuple(name for name, f in FAMILIES.items() if not f.sentencepiece)


def family(name):
    if isinstance(name, Family):
        return name
    if name not in FAMILIES:
        raise UserError(f"unknown model family {name!r}; known: {', '.join(FAMILIES)}")
    return FAMILIES[name]


# ---------------------------------------------------------------------------------------------------------
# the vocabularies


class VocabMissing(UserError):
    pass


def vocab_dir():
    """llama.cpp's models/ directory, where the ggml-vocab-*.gguf files are (`make vocab` puts them there)."""
    from reasoning_sft.serve.export import default_llama_cpp_dir

    return os.path.join(default_llama_cpp_dir(), "models")


def vocab_path(fam, suffix=""):
    fam = family(fam)
    path = os.path.join(vocab_dir(), f"ggml-vocab-{fam.vocab}.gguf{suffix}")
    if not os.path.isfile(path):
        raise VocabMissing(f"{path} not found: the families' vocabularies come from llama-cpp-python's sdist; "
                           "run `make vocab` (or set REASONING_SFT_LLAMA_CPP to a llama.cpp source tree)")
    return path


def read_vocab(fam):
    """(tokens, token types, merges) of the family's vocabulary GGUF."""
    from reasoning_sft.serve.export import read_gguf_metadata

    meta = read_gguf_metadata(vocab_path(fam))
    return meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.token_type"], meta["tokenizer.ggml.merges"]


def vocab_test_vectors(fam):
    """[(text, expected ids)] of the GGUF's test vectors (encoded without special tokens)."""
    with open(vocab_path(fam, ".inp"), encoding="utf-8", newline="") as f:
        texts = f.read().split("\n__ggml_vocab_test__\n")[:-1]
    with open(vocab_path(fam, ".out"), encoding="utf-8") as f:
        ids = [[int(i) for i in line.split()] for line in f.read().split("\n")[:len(texts)]]
    return list(zip(texts, ids))


def converter_pre_table(llama_cpp_dir=None):
    """(chktxt, {sha256 hex: pre-tokenizer name}) of llama.cpp's convert_hf_to_gguf get_vocab_base_pre.

    Read from the converter's source (its function is generated by convert_hf_to_gguf_update.py: a fixed text,
    then `if chkhsh == "...": res = "name"` lines), not copied: the names it gives are the converter's own.
    """
    import ast

    from reasoning_sft.serve.export import default_llama_cpp_dir

    root = llama_cpp_dir or default_llama_cpp_dir()
    candidates = [os.path.join(root, "conversion", "base.py"), os.path.join(root, "convert_hf_to_gguf.py")]
    for path in candidates:
        if not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name == "get_vocab_base_pre":
                chktxt, table = None, {}
                for sub in ast.walk(node):
                    if isinstance(sub, ast.Assign) and getattr(sub.targets[0], "id", None) == "chktxt":
                        chktxt = ast.literal_eval(sub.value)
                    if (isinstance(sub, ast.If) and isinstance(sub.test, ast.Compare)
                            and getattr(sub.test.left, "id", None) == "chkhsh"
                            and isinstance(sub.test.comparators[0], ast.Constant)):
                        assign = sub.body[-1]
                        if isinstance(assign, ast.Assign) and isinstance(assign.value, ast.Constant):
                            table[sub.test.comparators[0].value] = assign.value.value
                return chktxt, table
    raise VocabMissing(f"llama.cpp's converter (get_vocab_base_pre) not found under {root}; run `make vocab`")


def converter_pre_name(tokenizer, llama_cpp_dir=None):
    """The name llama.cpp's converter gives this tokenizer's BPE pre-tokenizer, or None (not recognised).

    What convert_hf_to_gguf.py computes: sha256 of str(tokenizer.encode(chktxt)), special tokens included,
    looked up in its table, so an invented BOS changes the hash as much as a different pre-tokenizer.
    """
    from hashlib import sha256

    chktxt, table = converter_pre_table(llama_cpp_dir)
    return table.get(sha256(str(tokenizer.encode(chktxt)).encode()).hexdigest())


# ---------------------------------------------------------------------------------------------------------
# the published tokenizers

GGUF_NORMAL, GGUF_CONTROL, GGUF_USER_DEFINED = 1, 3, 4
FILLER = re.compile(r"\[PAD\d+\]")  # rows llama.cpp's converter filled past the tokenizer (not tokens)


def _added_tokens(fam, tokens, types):
    """[(id, content, special)] of the family's added tokens, as its tokenizer.json lists them."""
    if fam.vocab == "qwen2":
        table = QWEN3_ADDED if fam.length == len(QWEN3_ADDED) + 151643 else QWEN25_ADDED
        return [(151643 + i, t, special) for i, (t, special) in enumerate(table)]
    if fam.vocab == "llama-bpe":
        return [(128000 + i, t, special) for i, (t, special) in enumerate(llama31_added())]
    # DeepSeek-Coder and StarCoder2: the GGUF's control (special) and user-defined (plain) tokens, less fillers
    return [(i, t, types[i] == GGUF_CONTROL) for i, t in enumerate(tokens)
            if types[i] in (GGUF_CONTROL, GGUF_USER_DEFINED) and not FILLER.fullmatch(t)]


def _pipeline(fam):
    """(normalizer, pre_tokenizer, post_processor, ignore_merges) of the published tokenizer.json."""
    from tokenizers import Regex, normalizers, pre_tokenizers, processors

    def split(pattern):
        return pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False)

    def bos_template():
        return processors.TemplateProcessing(single=f"{fam.bos}:0 $A:0", pair=f"{fam.bos}:0 $A:0 {fam.bos}:1 $B:1",
                                             special_tokens=[(fam.bos, fam.config_bos_id)])

    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)
    if fam.vocab == "qwen2":
        return (normalizers.NFC(),
                pre_tokenizers.Sequence([split(QWEN2_SPLIT), pre_tokenizers.ByteLevel(
                    add_prefix_space=False, trim_offsets=False, use_regex=False)]),
                processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False), False)
    if fam.vocab == "llama-bpe":
        return (None, pre_tokenizers.Sequence([split(LLAMA3_SPLIT), byte_level]),
                processors.Sequence([processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True),
                                     bos_template()]), True)
    if fam.vocab == "deepseek-coder":
        return (normalizers.Sequence([]),
                pre_tokenizers.Sequence([*map(split, DEEPSEEK_CODER_SPLITS),
                                         pre_tokenizers.Digits(individual_digits=True), byte_level]),
                bos_template(), False)
    if fam.vocab == "starcoder":
        return (None,
                pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(
                    add_prefix_space=False, trim_offsets=True, use_regex=True)]),
                processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=True), False)
    raise ValueError(f"no tokenizer pipeline for {fam.name}")


def build_tokenizer_json(fam):
    """The family's tokenizers.Tokenizer, rebuilt from its vocabulary GGUF and the published pipeline."""
    from tokenizers import AddedToken, Tokenizer, decoders, models

    fam = family(fam)
    tokens, types, merges = read_vocab(fam)
    added = _added_tokens(fam, tokens, types)
    first_added = min(i for i, _, _ in added)
    # the BPE model's vocabulary: the tokens below the first added one; StarCoder2's file lists its specials
    # (ids 0-37) in the model's vocabulary too, so it is all of its 49,152
    size = len(tokens) if fam.vocab == "starcoder" else first_added
    vocab = {tokens[i]: i for i in range(size)}
    normalizer, pre_tokenizer, post_processor, ignore_merges = _pipeline(fam)
    model = models.BPE(vocab=vocab, merges=[tuple(m.split(" ", 1)) for m in merges], dropout=None,
                       unk_token=None, continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False,
                       byte_fallback=False, ignore_merges=ignore_merges)
    tokenizer = Tokenizer(model)
    if normalizer is not None:
        tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.post_processor = post_processor
    tokenizer.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    # added tokens in id order: each gets the next id unless the model's vocabulary has it already
    for i, content, special in sorted(added):
        token = AddedToken(content, special=special, normalized=not special, lstrip=False, rstrip=False,
                           single_word=False)
        (tokenizer.add_special_tokens if special else tokenizer.add_tokens)([token])
        got = tokenizer.token_to_id(content)
        if got != i:
            raise AssertionError(f"{fam.name}: added token {content!r} got id {got}, published {i}")
    if tokenizer.get_vocab_size(with_added_tokens=True) != fam.length:
        raise AssertionError(f"{fam.name}: {tokenizer.get_vocab_size(with_added_tokens=True)} tokens, "
                             f"published {fam.length}")
    return tokenizer, added


def tokenizer_config(fam, added):
    """tokenizer_config.json as the family publishes it (the fields transformers reads)."""
    config = {
        "tokenizer_class": fam.tokenizer_class, "bos_token": fam.bos, "eos_token": fam.eos,
        "pad_token": fam.pad, "unk_token": None, "model_max_length": fam.model_max_length,
        "clean_up_tokenization_spaces": False,
        "added_tokens_decoder": {str(i): {"content": t, "lstrip": False, "normalized": not special, "rstrip": False,
                                          "single_word": False, "special": special} for i, t, special in added},
    }
    if fam.vocab == "qwen2":
        config.update(add_prefix_space=False, errors="replace", split_special_tokens=False,
                      additional_special_tokens=QWEN_ADDITIONAL, add_bos_token=False)
    elif fam.vocab == "llama-bpe":
        config.update(model_input_names=["input_ids", "attention_mask"])
    elif fam.vocab == "deepseek-coder":
        config.update(add_bos_token=True, add_eos_token=False, legacy=True, sp_model_kwargs={})
    elif fam.vocab == "starcoder":
        config.update(unk_token="<|endoftext|>", add_prefix_space=False, vocab_size=49152,
                      additional_special_tokens=[t for i, t, special in added if special and i > 0])
    return {k: v for k, v in config.items() if v is not None or k in ("bos_token", "pad_token", "unk_token")}


def published_tokenizer(fam, out_dir):
    """Write the family's published tokenizer (tokenizer.json + tokenizer_config.json) into out_dir.

    The SentencePiece demo family gets tiny_llama's tokenizer trained on examples/sample.jsonl.
    Returns out_dir.
    """
    fam = family(fam)
    os.makedirs(out_dir, exist_ok=True)
    if fam.sentencepiece:
        from reasoning_sft.data.records import read_records
        from reasoning_sft.demo.tiny_llama import build_tokenizer, corpus_texts

        build_tokenizer(corpus_texts(read_records(sample_corpus())), out_dir, vocab_size=1024)
        return out_dir
    tokenizer, added = build_tokenizer_json(fam)
    tokenizer.save(os.path.join(out_dir, "tokenizer.json"))
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(tokenizer_config(fam, added), f, indent=2, ensure_ascii=False)
    return out_dir


def sample_corpus():
    return os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                        "examples", "sample.jsonl")


# ---------------------------------------------------------------------------------------------------------
# the tiny models

# hidden 64 in 2 heads of 32 (vLLM's CPU kernels have no head size 16), one KV head, 2 layers
TINY = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
        "num_key_value_heads": 1, "max_position_embeddings": 4096}
# per architecture, what the published configs set beyond the shape (rope base, biases)
ARCH_EXTRA = {
    "qwen2": {"rope_theta": 1000000.0, "rms_norm_eps": 1e-6},
    "qwen3": {"rope_theta": 1000000.0, "rms_norm_eps": 1e-6, "head_dim": 32},
    "llama": {"rms_norm_eps": 1e-5},
    "starcoder2": {"rope_theta": 999999.4420358813, "norm_epsilon": 1e-5, "use_bias": True},
}
ROPE_THETA = {"llama-3.1": 500000.0, "deepseek-coder": 100000.0}


def tiny_model(fam, out_dir, tokenizer=None, seed=0):
    """Save a tiny random model of the family into out_dir (config.json, weights, generation_config.json).

    The real architecture class, embedding row count and tying, bos/eos ids as the published config.json
    has them; the shape is TINY's. `tokenizer` (a directory or a tokenizer) gives the row count of the
    SentencePiece demo family, whose rows are its vocabulary's. Returns out_dir.
    """
    import torch
    import transformers

    fam = family(fam)
    rows = fam.rows
    if rows is None:
        if tokenizer is None:
            raise ValueError(f"{fam.name}: the row count comes from the tokenizer; pass it")
        if isinstance(tokenizer, (str, os.PathLike)):
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(tokenizer))
        rows = len(tokenizer)
    if fam.sentencepiece:  # the demo's model, exactly as tiny_llama builds it
        from reasoning_sft.demo.tiny_llama import build_model

        build_model(out_dir, rows, seed=seed)
        return out_dir
    config_class = transformers.AutoConfig.for_model(fam.model_type).__class__
    kwargs = dict(TINY, **ARCH_EXTRA[fam.model_type])
    if fam.name in ROPE_THETA:
        kwargs["rope_theta"] = ROPE_THETA[fam.name]
    config = config_class(vocab_size=rows, tie_word_embeddings=fam.tied, bos_token_id=fam.config_bos_id,
                          eos_token_id=fam.config_eos_id, architectures=[fam.architecture], **kwargs)
    torch.manual_seed(seed)
    model = getattr(transformers, fam.architecture)(config)
    model.save_pretrained(out_dir)
    return out_dir


def base_model(fam, out_dir, overwrite=True):
    """The family's published tokenizer and a tiny random model in one directory (a `--model` for stage 1)."""
    from reasoning_sft.artifacts import atomic_output_dir

    fam = family(fam)
    with atomic_output_dir(str(out_dir), overwrite=overwrite) as tmp:
        published_tokenizer(fam, tmp)
        tiny_model(fam, tmp, tokenizer=tmp if fam.rows is None else None)
    return out_dir
