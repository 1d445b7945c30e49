"""Stage 1: prepare_llamatokenizer.py adds six single-id tags and a real pad token, and
removes the legacy stray-"▁" after special tokens (the fixture's base tokenizer has it)."""

import json

import pytest

from reasoning_sft.artifacts import TOKENIZER_META, load_prepared_tokenizer, vocab_fingerprint
from reasoning_sft.data.template import TAGS, full_text, prompt_text, target_text, tokenize_examples
from reasoning_sft.data.tokenizer import PAD_TOKEN, PROBES, verify_tokenizer
from reasoning_sft.errors import UserError

# text that really follows each tag in the data: prose after <reasoning>, code after <code>
AFTER_TAG = ["def solve(nums):", "First, sort the list.", "x", "return 1", "Use a heap."]


def _auto(path, **kw):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path), **kw)


def _meta(tokenizer_dir):
    return json.loads((tokenizer_dir / TOKENIZER_META).read_text(encoding="utf-8"))


def _ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


@pytest.fixture(scope="module")
def legacy_tokenizer(tiny_model_dir):
    """The base tiny tokenizer exactly as a user would naively load it, with the tags added."""
    tok = _auto(tiny_model_dir)
    tok.add_special_tokens({"additional_special_tokens": list(TAGS)}, replace_extra_special_tokens=False)
    return tok


# ---------------------------------------------------------------- the CLI

def test_cli_writes_the_same_tokenizer_as_main(run_script, tiny_model_dir, tokenizer_dir, tmp_path):
    out = tmp_path / "tok"
    proc = run_script("prepare_llamatokenizer.py", "--model", tiny_model_dir, "--out_dir", "tok", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    meta = _meta(out)
    # the report line names the output, the pad token and the fingerprint
    assert "tok" in proc.stdout and meta["fingerprint"] in proc.stdout and "<pad>" in proc.stdout
    # deterministic: the CLI and the in-process run agree on every id and the fingerprint
    expected = _meta(tokenizer_dir)
    assert meta == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tok"]  # no temp sibling left behind
    assert (out / "tokenizer.json").is_file() and (out / "tokenizer_config.json").is_file()


# ---------------------------------------------------------------- the saved directory

def test_each_tag_is_exactly_one_new_id(tokenizer_dir, tiny_model_dir):
    tok = _auto(tokenizer_dir)
    base_vocab = _auto(tiny_model_dir).get_vocab()
    ids = {}
    for tag in TAGS:
        assert tag not in base_vocab
        ids[tag] = _ids(tok, tag)
        assert ids[tag] == [tok.convert_tokens_to_ids(tag)], (tag, tok.convert_ids_to_tokens(ids[tag]))
        assert ids[tag][0] >= len(base_vocab)  # a new row, not an existing piece
        # still one id inside running text
        assert _ids(tok, "a" + tag + "b").count(ids[tag][0]) == 1
    assert len({v[0] for v in ids.values()}) == len(TAGS)
    assert tok.unk_token_id not in {v[0] for v in ids.values()}


def test_dedicated_pad_token_that_is_not_eos(tokenizer_dir, tiny_model_dir):
    tok = _auto(tokenizer_dir)
    base = _auto(tiny_model_dir)
    assert base.pad_token is None  # the Llama base has none: stage 1 must add one
    assert tok.pad_token == PAD_TOKEN
    assert tok.pad_token_id is not None
    assert tok.pad_token_id not in (tok.eos_token_id, tok.bos_token_id, tok.unk_token_id)
    assert tok.pad_token_id not in tok.convert_tokens_to_ids(list(TAGS))
    assert tok.pad_token_id >= len(base)
    # BOS/EOS unchanged, so the pretrained rows keep their meaning
    assert (tok.bos_token_id, tok.eos_token_id) == (base.bos_token_id, base.eos_token_id) == (1, 2)
    assert len(tok) == len(base) + len(TAGS) + 1


def test_metadata_file(tokenizer_dir, tiny_model_dir):
    from reasoning_sft.data.template import TEMPLATE_VERSION

    meta = _meta(tokenizer_dir)
    tok = _auto(tokenizer_dir)
    assert meta["base_model"] == str(tiny_model_dir)
    assert meta["template_version"] == TEMPLATE_VERSION
    assert meta["added_tokens"] == {tag: tok.convert_tokens_to_ids(tag) for tag in TAGS}
    assert list(meta["added_tokens"]) == list(TAGS)
    assert meta["pad_token"] == PAD_TOKEN and meta["pad_token_id"] == tok.pad_token_id
    assert (meta["bos_token_id"], meta["eos_token_id"]) == (tok.bos_token_id, tok.eos_token_id)
    assert meta["vocab_size"] == len(tok)
    assert meta["fingerprint"] == vocab_fingerprint(tok)
    assert len(meta["fingerprint"]) == 16 and int(meta["fingerprint"], 16) >= 0
    assert meta["sentencepiece_model"] is True


# ---------------------------------------------------------------- what serving stacks need

def test_the_base_sentencepiece_model_travels_with_the_tokenizer(tokenizer_dir, tiny_model_dir):
    """llama.cpp's converter reproduces a Llama tokenizer only from its tokenizer.model, which
    transformers 5 neither saves nor needs: stage 1 copies the base's, byte for byte."""
    import sentencepiece as spm

    base = (tiny_model_dir / "tokenizer.model").read_bytes()
    assert (tokenizer_dir / "tokenizer.model").read_bytes() == base
    sp = spm.SentencePieceProcessor(model_file=str(tokenizer_dir / "tokenizer.model"))
    tok = _auto(tokenizer_dir)
    # the same piece at every id of the base vocabulary; the tags and pad come after it
    assert [sp.id_to_piece(i) for i in range(sp.get_piece_size())] == \
        tok.convert_ids_to_tokens(list(range(sp.get_piece_size())))
    assert min(tok.convert_tokens_to_ids(list(TAGS) + [PAD_TOKEN])) == sp.get_piece_size()


def test_tags_are_plain_tokens_whose_text_survives_skipping_special_tokens(tokenizer_dir):
    """Servers decode with skip_special_tokens by default: the tags must stay in that text."""
    tok = _auto(tokenizer_dir)
    text = "<reasoning>Sort.</reasoning><intention>Loop.</intention><code>def f(x):\n    return x</code>"
    ids = tok(text)["input_ids"]
    assert tok.decode(ids, skip_special_tokens=True) == text
    assert set(TAGS).isdisjoint(tok.all_special_tokens)
    assert tok.pad_token in tok.all_special_tokens and tok.eos_token in tok.all_special_tokens
    saved = json.loads((tokenizer_dir / "tokenizer.json").read_text(encoding="utf-8"))
    flags = {t["content"]: t["special"] for t in saved["added_tokens"]}
    assert all(flags[tag] is False for tag in TAGS) and flags[PAD_TOKEN] is True


def test_a_base_whose_tags_are_special_gets_them_plain(tiny_model_dir, tmp_path):
    """A tokenizer prepared under template v1 (tags special) as --model: the tags become plain."""
    import prepare_llamatokenizer

    old = _auto(tiny_model_dir, legacy=False)
    old.add_special_tokens({"additional_special_tokens": list(TAGS), "pad_token": PAD_TOKEN},
                           replace_extra_special_tokens=False)
    old.save_pretrained(tmp_path / "v1")
    assert old.decode(_ids(old, "<code>x</code>"), skip_special_tokens=True) == "x"
    assert prepare_llamatokenizer.main(["--model", str(tmp_path / "v1"), "--out_dir", str(tmp_path / "v2")]) == 0
    new = _auto(tmp_path / "v2")
    assert new.decode(_ids(new, "<code>x</code>"), skip_special_tokens=True) == "<code>x</code>"
    assert _meta(tmp_path / "v2")["added_tokens"] == {tag: old.convert_tokens_to_ids(tag) for tag in TAGS}


def test_stage1_is_idempotent(tokenizer_dir, tmp_path, capsys):
    import prepare_llamatokenizer

    again = tmp_path / "again"
    assert prepare_llamatokenizer.main(["--model", str(tokenizer_dir), "--out_dir", str(again)]) == 0
    assert "added nothing (already present)" in capsys.readouterr().out
    first, second = _meta(tokenizer_dir), _meta(again)
    assert second["base_model"] == str(tokenizer_dir)
    for key in ("added_tokens", "pad_token", "pad_token_id", "bos_token_id", "eos_token_id",
                "vocab_size", "fingerprint", "template_version"):
        assert second[key] == first[key], key
    a, b = _auto(tokenizer_dir), _auto(again)
    text = ("Sum it.\n\n<reasoning>First, sort.</reasoning><intention>Loop.</intention>"
            "<code>def f(x):\n    return x</code>")
    assert a(text)["input_ids"] == b(text)["input_ids"]


def test_existing_output_needs_overwrite(tokenizer_dir, tiny_model_dir, tmp_path):
    import prepare_llamatokenizer

    out = tmp_path / "tok"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    with pytest.raises(UserError, match="already exists; pass --overwrite"):
        prepare_llamatokenizer.main(["--model", str(tiny_model_dir), "--out_dir", str(out)])
    assert (out / "keep.txt").read_text() == "user data"
    assert prepare_llamatokenizer.main(["--model", str(tiny_model_dir), "--out_dir", str(out), "--overwrite"]) == 0
    assert not (out / "keep.txt").exists()
    assert _meta(out) == _meta(tokenizer_dir)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tok"]


def test_missing_model_is_a_user_error(tmp_path):
    import prepare_llamatokenizer

    with pytest.raises(UserError, match="no such model directory"):
        prepare_llamatokenizer.main(["--model", str(tmp_path / "nope"), "--out_dir", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- the stray-"▁" pitfall

def test_base_tokenizer_reproduces_the_stray_prefix_pitfall(legacy_tokenizer):
    tok = legacy_tokenizer
    for tag in TAGS:
        for text in AFTER_TAG:
            pieces = tok.convert_ids_to_tokens(_ids(tok, tag + text))
            assert pieces[0] == tag
            assert pieces[1].startswith("▁"), (tag, text, pieces)  # the model would learn " def" after <code>


def test_prepared_tokenizer_has_no_stray_prefix(tokenizer_dir):
    tok = _auto(tokenizer_dir)
    for tag in TAGS:
        for text in AFTER_TAG + list(PROBES):
            ids = _ids(tok, tag + text)
            pieces = tok.convert_ids_to_tokens(ids)
            assert pieces[0] == tag
            if not text[0].isspace():
                assert not pieces[1].startswith("▁"), (tag, text, pieces)
            # the text after a tag is tokenized like the same text at the start of a line
            assert ids[1:] == _ids(tok, "\n" + text)[len(_ids(tok, "\n")):]
            assert tok.decode(ids, skip_special_tokens=False) == tag + text
    # a space that really is in the text is kept
    assert tok.decode(_ids(tok, "<code> x"), skip_special_tokens=False) == "<code> x"


def test_verify_tokenizer_rejects_legacy_and_accepts_prepared(legacy_tokenizer, tokenizer_dir):
    legacy_tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
    with pytest.raises(UserError, match="stray prefix after <reasoning>"):
        verify_tokenizer(legacy_tokenizer)
    verify_tokenizer(_auto(tokenizer_dir))  # no exception


def test_verify_tokenizer_requires_a_pad_that_is_not_eos(tokenizer_dir):
    tok = _auto(tokenizer_dir)
    tok.pad_token = tok.eos_token
    with pytest.raises(UserError, match="pad token"):
        verify_tokenizer(tok)


def test_section_by_section_tokenization_brings_the_pitfall_back(prepared_tokenizer, filtered_dir):
    tok, _ = prepared_tokenizer
    records = json.loads((filtered_dir / "data.json").read_text(encoding="utf-8"))[:20]
    one_call = tokenize_examples(tok, records)
    for record, ids in zip(records, one_call):
        # what tokenize_examples does: ONE call on the full text, then EOS
        assert ids == tok(full_text(record))["input_ids"] + [tok.eos_token_id]
        # the tempting alternative: prompt and target tokenized separately and concatenated
        prompt = tok(prompt_text(record["instruction"]))["input_ids"]
        target = _ids(tok, target_text(record["reasoning"], record["intention"], record["code"]))
        concatenated = prompt + target + [tok.eos_token_id]
        assert concatenated != ids
        assert tok.convert_ids_to_tokens(target[0]).startswith("▁")  # the stray prefix is back
        assert tok.decode(concatenated[1:-1]) != full_text(record)
        assert ids[:len(prompt)] == prompt  # the prompt itself is identical either way


# ---------------------------------------------------------------- refusing foreign tokenizer dirs

def test_load_prepared_tokenizer_refuses_the_raw_model_dir(tiny_model_dir):
    with pytest.raises(UserError, match="not written by prepare_llamatokenizer.py"):
        load_prepared_tokenizer(str(tiny_model_dir))


def test_load_prepared_tokenizer_refuses_edited_files(tokenizer_dir, tmp_path):
    import shutil

    copy = tmp_path / "tok"
    shutil.copytree(tokenizer_dir, copy)
    tok, meta = load_prepared_tokenizer(str(copy))
    assert meta == _meta(tokenizer_dir)
    meta_path = copy / TOKENIZER_META
    edited = dict(meta, fingerprint="0" * 16)
    meta_path.write_text(json.dumps(edited))
    with pytest.raises(UserError, match="do not match"):
        load_prepared_tokenizer(str(copy))
    meta_path.write_text(json.dumps(dict(meta, template_version=-1)))
    with pytest.raises(UserError, match="template"):
        load_prepared_tokenizer(str(copy))
    meta_path.write_text("{not json")
    with pytest.raises(UserError, match="unreadable tokenizer metadata"):
        load_prepared_tokenizer(str(copy))


def test_fingerprint_tracks_the_vocabulary(tokenizer_dir):
    tok = _auto(tokenizer_dir)
    before = vocab_fingerprint(tok)
    assert vocab_fingerprint(_auto(tokenizer_dir)) == before
    tok.add_tokens(["<extra>"])
    assert vocab_fingerprint(tok) != before


def test_stage_loader_matches_autotokenizer(tokenizer_dir, sample_records, tmp_path):
    """The data stages load the class tokenizer_config.json names (no torch import); it must
    tokenize exactly as AutoTokenizer does, and an unknown class name falls back to AutoTokenizer."""
    import shutil

    from transformers import AutoTokenizer

    from reasoning_sft.artifacts import tokenizer_class

    ours, _ = load_prepared_tokenizer(str(tokenizer_dir))
    auto = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    assert type(ours) is type(auto)
    texts = [full_text(r) for r in sample_records[:20]] + [tag + probe for tag in TAGS for probe in PROBES]
    assert ours(texts)["input_ids"] == auto(texts)["input_ids"]
    assert ours.pad_token_id == auto.pad_token_id and ours.all_special_ids == auto.all_special_ids

    renamed = tmp_path / "renamed"
    shutil.copytree(tokenizer_dir, renamed)
    config = json.loads((renamed / "tokenizer_config.json").read_text())
    config["tokenizer_class"] = "NoSuchTokenizer"
    (renamed / "tokenizer_config.json").write_text(json.dumps(config))
    assert tokenizer_class(str(renamed)) is AutoTokenizer


# ---------------------------------------------------------------- the chat template (serving)

def _chat_ids(tok, messages, add_generation_prompt):
    out = tok.apply_chat_template(messages, add_generation_prompt=add_generation_prompt)
    return out["input_ids"]


def test_chat_template_renders_the_training_prompt(tokenizer_dir, filtered_dir):
    """What vLLM/TGI build from a chat request is, id for id, what the model was trained on."""
    from transformers import AutoTokenizer

    assert (tokenizer_dir / "chat_template.jinja").is_file()
    records = json.loads((filtered_dir / "data.json").read_text(encoding="utf-8"))[:25]
    for tok in (load_prepared_tokenizer(str(tokenizer_dir))[0], AutoTokenizer.from_pretrained(str(tokenizer_dir))):
        examples = tokenize_examples(tok, records)
        for record, example in zip(records, examples):
            user = [{"role": "user", "content": record["instruction"]}]
            prompt = tok(prompt_text(record["instruction"]))["input_ids"]  # BOS + instruction + "\n\n" + <reasoning>
            assert _chat_ids(tok, user, True) == prompt
            assert prompt[0] == tok.bos_token_id and prompt[-1] == tok.convert_tokens_to_ids("<reasoning>")
            assert example[:len(prompt)] == prompt  # the training example starts with exactly these ids
            # a user + assistant pair renders as the whole training example, EOS included
            reply = full_text(record)[len(prompt_text(record["instruction"])):]
            assert _chat_ids(tok, user + [{"role": "assistant", "content": reply}], False) == example
        # the instruction is stripped as the data stages strip it
        assert _chat_ids(tok, [{"role": "user", "content": "  Add two numbers.\n"}], True) == \
            tok(prompt_text("Add two numbers."))["input_ids"]


def test_chat_template_refuses_what_the_model_never_saw(prepared_tokenizer):
    from jinja2.exceptions import TemplateError

    tok, _ = prepared_tokenizer
    user = {"role": "user", "content": "Add two numbers."}
    for messages in ([{"role": "system", "content": "Be brief."}, user],
                     [user, {"role": "assistant", "content": "x"}, user], [{"role": "assistant", "content": "x"}]):
        with pytest.raises(TemplateError, match="single user message"):
            tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def test_verify_chat_template_rejects_a_wrong_template(tokenizer_dir):
    from reasoning_sft.data.tokenizer import verify_chat_template

    tok = _auto(tokenizer_dir)
    verify_chat_template(tok)  # the saved one passes
    tok.chat_template = "{{ bos_token }}{{ messages[0]['content'] }}\n\n<reasoning>"  # the naive template
    with pytest.raises(UserError, match="does not reproduce the training prompt"):
        verify_chat_template(tok)
    tok.chat_template = None
    with pytest.raises(UserError, match="no chat template"):
        verify_chat_template(tok)
