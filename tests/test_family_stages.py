"""Stages 1-3 and generate.py on every model family (conftest's family_* fixtures, built in-process).

What the stages promise each family: the training prompt keeps exactly the base tokenizer's own special tokens
(a BOS where the base adds one, none where it adds none), starts as the base's tokenizer.json encodes the
instruction, has each tag as one id with no stray space after it, ends with the base's EOS; the chat template
reproduces the ids; the pad is a dedicated token, never EOS. Tokenizers stage 1 cannot handle are refused in one
line with nothing written. The tokenizer-level tests run once per distinct tokenizer (TOKENIZER_FAMILIES);
stage 1 and generate.py run on every family.
"""

import functools
import json

import datasets
import pytest
from conftest import FAMILIES, TOKENIZER_FAMILIES, family_params, our_error_line

from reasoning_sft.artifacts import TOKENIZER_META, load_prepared_tokenizer
from reasoning_sft.data.template import CLOSE, OPEN, SEPARATOR, TAGS, full_text
from reasoning_sft.data.tokenizer import SPACE_MARKS
from reasoning_sft.demo import families
from reasoning_sft.errors import UserError


def _base_encoder(family, base):
    """The base's own tokenizer.json (what the published tokenizer does), or for the SentencePiece demo the
    base loaded as stage 1 loads it (legacy=False, the documented fix of the stray "▁")."""
    from tokenizers import Tokenizer

    from reasoning_sft.data.tokenizer import load_base_tokenizer

    if families.FAMILIES[family].sentencepiece:
        tokenizer = load_base_tokenizer(str(base))
        return lambda text: tokenizer(text)["input_ids"]
    raw = Tokenizer.from_file(str(base / "tokenizer.json"))
    return lambda text: raw.encode(text).ids


@functools.cache
def _prepared(tokenizer_dir):
    """(tokenizer, meta) of a stage 1 dir, loaded as the stages load it, once per module."""
    return load_prepared_tokenizer(str(tokenizer_dir))


@functools.cache
def _served(tokenizer_dir):
    """A stage 1 dir loaded as a server loads it (AutoTokenizer), once per module."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tokenizer_dir))


def _filtered(train_dir):
    """Stage 2's records that stage 3 encoded, in row order."""
    return json.loads((train_dir.parent.parent / "f" / "data.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("family", family_params(FAMILIES))
def test_stage1_keeps_the_base_special_tokens_and_adds_tags_and_pad(family, family_base, family_prepared):
    fam = families.FAMILIES[family]
    base = family_base(family)
    tokenizer, meta = _prepared(family_prepared(family))
    config = json.loads((base / "config.json").read_text())
    base_len = fam.length or config["vocab_size"]
    assert (tokenizer.bos_token, tokenizer.eos_token) == (fam.bos, fam.eos)
    assert meta["adds_bos"] == fam.add_bos and meta["kind"] == ("SentencePiece BPE" if fam.sentencepiece
                                                                 else "byte-level BPE")
    tags = meta["added_tokens"]
    assert sorted(tags.values()) == list(range(base_len, base_len + len(TAGS)))  # six new ids, one each
    # the pad: the base's own where it is neither EOS nor missing, else a dedicated one, never EOS
    assert meta["pad_token_id"] not in (None, tokenizer.eos_token_id) and meta["pad_token_id"] not in tags.values()
    if family == "deepseek-coder":  # its published pad is EOS; the vocabulary has a plain "<pad>" (32018) already
        assert (meta["pad_token"], meta["pad_token_id"]) == ("<pad>", 32018)
    else:
        assert meta["pad_token_id"] == base_len + len(TAGS)
    # where the model has spare rows (Qwen, DeepSeek), tags and pad land inside them: no resize needed
    rows = config["vocab_size"]
    if family in ("qwen2.5-coder-tied", "qwen2.5-coder", "qwen3", "deepseek-coder"):
        assert max(tags.values()) < rows and meta["pad_token_id"] < rows
    assert len(tokenizer) == base_len + len(TAGS) + (meta["pad_token_id"] == base_len + len(TAGS))


@pytest.mark.parametrize("family", family_params(TOKENIZER_FAMILIES))
def test_encoded_rows_start_as_the_base_encodes_the_instruction(family, family_base, family_prepared, family_encoded):
    """Through stage 3: each row = base(instruction + "\\n\\n") + <reasoning> + target + EOS, the base's special
    tokens only (its BOS once where it adds one, none otherwise), no stray space mark after any tag."""
    fam = families.FAMILIES[family]
    encode = _base_encoder(family, family_base(family))
    tokenizer, meta = _prepared(family_prepared(family))
    rows = datasets.load_from_disk(str(family_encoded(family)))
    records = _filtered(family_encoded(family))
    assert len(rows) == len(records) >= 4  # most of the FAMILY_N records fit
    tags = meta["added_tokens"]
    for row, record in zip(rows, records):
        ids = list(row["input_ids"])
        instruction = record["instruction"]
        head = encode(instruction + SEPARATOR)
        assert ids[:len(head)] == head, (ids[:8], head[:8])
        assert ids[len(head)] == tags[OPEN["reasoning"]]
        # the instruction's own ids (the last may merge with "\n\n", as the base itself merges it: ".\n\n")
        assert ids[:len(encode(instruction)) - 1] == encode(instruction)[:-1]
        assert ids[-1] == tokenizer.eos_token_id and ids.count(tokenizer.eos_token_id) == 1
        if fam.add_bos:
            assert ids[0] == tokenizer.bos_token_id and ids.count(tokenizer.bos_token_id) == 1
        elif tokenizer.bos_token_id is not None and tokenizer.bos_token_id != tokenizer.eos_token_id:
            assert tokenizer.bos_token_id not in ids
        assert tokenizer.pad_token_id not in ids
        assert [ids.count(tags[tag]) for tag in TAGS] == [1] * len(TAGS)
        pieces = tokenizer.convert_ids_to_tokens(ids)
        for i, piece in enumerate(pieces[:-1]):
            if piece in TAGS and pieces[i + 1] not in TAGS and pieces[i + 1].startswith(SPACE_MARKS):
                raise AssertionError(f"stray space mark after {piece}: {pieces[i + 1]!r}")
        assert tokenizer.decode(ids, skip_special_tokens=True) == full_text(record)
        assert ids[-2] == tags[CLOSE["code"]]  # the end of the answer: </code>, then the base's EOS


@pytest.mark.parametrize("family", family_params(TOKENIZER_FAMILIES))
def test_chat_template_reproduces_the_training_ids(family, family_prepared, family_encoded):
    served = _served(family_prepared(family))  # as a server loads it
    tokenizer, meta = _prepared(family_prepared(family))
    reasoning = meta["added_tokens"][OPEN["reasoning"]]
    rows = datasets.load_from_disk(str(family_encoded(family)))
    for row, record in list(zip(rows, _filtered(family_encoded(family))))[:2]:
        ids = list(row["input_ids"])
        user = [{"role": "user", "content": record["instruction"]}]
        rendered = served.apply_chat_template(user, add_generation_prompt=True, tokenize=True)
        rendered = list(rendered["input_ids"] if hasattr(rendered, "keys") else rendered)
        assert rendered == ids[:ids.index(reasoning) + 1]
        reply = {"role": "assistant", "content": full_text(record)[len(record["instruction"] + SEPARATOR
                                                                          + OPEN["reasoning"]):]}
        whole = served.apply_chat_template(user + [reply], tokenize=True)
        assert list(whole["input_ids"] if hasattr(whole, "keys") else whole) == ids


@pytest.mark.parametrize("family", family_params(FAMILIES))
def test_generate_on_the_family_base_stops_at_eos_or_code_close(family, family_prepared, tmp_path):
    """generate.py's main() on the base model (tag rows initialised), a few tokens; its stops are the family's
    EOS and </code>."""
    import generate
    from reasoning_sft.serve.decoding import stop_ids

    tokenizer, _ = _prepared(family_prepared(family))
    assert stop_ids(tokenizer) == [families.FAMILIES[family].config_eos_id, tokenizer.convert_tokens_to_ids("</code>")]
    out = tmp_path / "gen.jsonl"
    assert generate.main(["--tokenizer_dir", str(family_prepared(family)), "--prompt", "Add two numbers.",
                          "--max_new_tokens", "3", "--out", str(out)]) == 0
    (row,) = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert row["instruction"] == "Add two numbers." and 1 <= row["n_tokens"] <= 3
    assert row["stop"] in ("eos", "</code>", "length")


# ---------------------------------------------------------------- what stage 1 refuses


def _save(tokenizer_object, out, **config):
    out.mkdir()
    tokenizer_object.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "PreTrainedTokenizerFast", **config}))
    return out


@pytest.fixture
def wordpiece_dir(tmp_path):
    """A BERT-style WordPiece tokenizer ([CLS]/[SEP], no EOS)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "def", "add", "##s", "(", ")"])}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return _save(tokenizer, tmp_path / "bert", unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                 sep_token="[SEP]", eos_token="[SEP]")


@pytest.fixture
def unigram_dir(tmp_path):
    """A T5-style Unigram tokenizer with an EOS."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0), ("a", -3.0), ("b", -3.0), ("▁ab", -1.0)]
    tokenizer = Tokenizer(models.Unigram(pieces, unk_id=2))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    return _save(tokenizer, tmp_path / "t5", eos_token="</s>", unk_token="<unk>", pad_token="<pad>")


@pytest.fixture
def no_eos_dir(family_base, tmp_path):
    """StarCoder2's published tokenizer with its EOS removed from tokenizer_config.json."""
    base = family_base("starcoder2")
    out = tmp_path / "no-eos"
    out.mkdir()
    (out / "tokenizer.json").write_bytes((base / "tokenizer.json").read_bytes())
    config = json.loads((base / "tokenizer_config.json").read_text())
    config.update(eos_token=None, bos_token=None, tokenizer_class="PreTrainedTokenizerFast")
    (out / "tokenizer_config.json").write_text(json.dumps(config))
    return out


@pytest.mark.parametrize("case, message", [
    ("wordpiece_dir", r"a WordPiece tokenizer \(pre-tokenizer BertPreTokenizer"),
    ("unigram_dir", r"a Unigram tokenizer \(pre-tokenizer Metaspace"),
    ("no_eos_dir", "has no EOS token"),
])
def test_stage1_refuses_what_it_cannot_handle_and_writes_nothing(case, message, request, tmp_path):
    import prepare_llamatokenizer

    out = tmp_path / "out"
    with pytest.raises(UserError, match=message) as err:
        prepare_llamatokenizer.main(["--model", str(request.getfixturevalue(case)), "--out_dir", str(out)])
    assert "\n" not in str(err.value)
    if case != "no_eos_dir":
        assert "stage 1 takes SentencePiece BPE" in str(err.value)
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_stage1_cli_refusal_is_one_line_and_exit_2(run_script, unigram_dir, tmp_path):
    proc = run_script("prepare_llamatokenizer.py", "--model", unigram_dir, "--out_dir", tmp_path / "out")
    line = our_error_line(proc, "prepare_llamatokenizer.py")
    assert "Unigram" in line and not (tmp_path / "out").exists()


def test_stage1_loads_starcoder2_as_its_tokenizer_json(family_base, family_prepared):
    """transformers loads StarCoder2's tokenizer as GPT2Tokenizer, which drops the file's digit split; the
    prepared tokenizer encodes as the published tokenizer.json does (" ½" is where they differ)."""
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    base = family_base("starcoder2")
    published = Tokenizer.from_file(str(base / "tokenizer.json"))
    naive = AutoTokenizer.from_pretrained(str(base))
    assert naive(" ½ 42")["input_ids"] != published.encode(" ½ 42").ids  # the pitfall is real
    prepared = AutoTokenizer.from_pretrained(str(family_prepared("starcoder2")))
    for text in (" ½ 42", "ied 4 ½ months", "x = 1234567"):
        assert prepared(text)["input_ids"] == published.encode(text).ids
    assert json.loads((family_prepared("starcoder2") / TOKENIZER_META).read_text())["kind"] == "byte-level BPE"
