"""The template: prompt = BOS + instruction + "\\n\\n<reasoning>", target = the rest + EOS.

Round trips run on the real encoded sample (the stage 3 artifact), so they check what the
trainers will actually read."""

import json

import numpy as np
import pytest

from reasoning_sft.data.template import (
    CLOSE,
    IGNORE_INDEX,
    OPEN,
    SECTION_NAMES,
    SEPARATOR,
    TAGS,
    full_text,
    labels_for,
    prompt_text,
    section_ids,
    section_lengths,
    tag_ids,
    target_text,
    tokenize_examples,
)


@pytest.fixture(scope="module")
def records(filtered_dir):
    return json.loads((filtered_dir / "data.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def rows(encoded_dir):
    import datasets

    ds = datasets.load_from_disk(str(encoded_dir / "arrow_dataset"))
    return ds.to_dict()  # plain python lists: cheap for the sample


@pytest.fixture(scope="module")
def tok(prepared_tokenizer):
    return prepared_tokenizer[0]


def _decode(tok, ids):
    return tok.decode(list(ids), skip_special_tokens=False)


def test_text_template_layout():
    record = {"instruction": "Add.", "reasoning": "Use +.", "intention": "Return a + b.",
              "code": "def f(a, b):\n    return a + b"}
    assert prompt_text("Add.") == "Add." + SEPARATOR + "<reasoning>"
    assert target_text("Use +.", "Return a + b.", "def f(a, b):\n    return a + b") == (
        "Use +.</reasoning><intention>Return a + b.</intention><code>def f(a, b):\n    return a + b</code>")
    assert full_text(record) == prompt_text("Add.") + target_text("Use +.", "Return a + b.", record["code"])
    assert TAGS == ("<reasoning>", "</reasoning>", "<intention>", "</intention>", "<code>", "</code>")
    assert OPEN["code"] == "<code>" and CLOSE["intention"] == "</intention>"


def test_encoded_rows_are_the_filtered_records_in_order(records, rows, tok):
    assert len(rows["input_ids"]) == len(records)
    assert [list(r) for r in rows["input_ids"]] == tokenize_examples(tok, records)


def test_decode_reproduces_prompt_and_every_section(records, rows, tok):
    tags = tag_ids(tok)
    for record, ids in zip(records, rows["input_ids"]):
        ids = np.asarray(ids)
        assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
        assert (ids == tok.eos_token_id).sum() == 1 and (ids == tok.bos_token_id).sum() == 1
        assert _decode(tok, ids[1:-1]) == full_text(record)
        for tag, tag_id in tags.items():
            assert (ids == tag_id).sum() == 1, tag  # a tag never appears inside a field
        pos = {tag: int(np.flatnonzero(ids == tag_id)[0]) for tag, tag_id in tags.items()}
        assert (pos["<reasoning>"] < pos["</reasoning>"] < pos["<intention>"] < pos["</intention>"]
                < pos["<code>"] < pos["</code>"] == len(ids) - 2)
        # the tags are adjacent: nothing (not even a stray space token) between </x> and <y>
        assert pos["<intention>"] == pos["</reasoning>"] + 1 and pos["<code>"] == pos["</intention>"] + 1
        # each span decodes to exactly its field (decoded with its opening tag in front, so a
        # leading space of the field could not be hidden by the decoder's strip)
        assert _decode(tok, ids[1:pos["<reasoning>"] + 1]) == prompt_text(record["instruction"])
        for name in ("reasoning", "intention", "code"):
            span = ids[pos[OPEN[name]]:pos[CLOSE[name]] + 1]
            assert _decode(tok, span) == OPEN[name] + record[name] + CLOSE[name], name
            # and the first token of the field carries no "▁" prefix that is not in the text
            first = tok.convert_ids_to_tokens(int(ids[pos[OPEN[name]] + 1]))
            assert not first.startswith("▁") or record[name][0] == " ", (name, first)


def test_labels_cover_exactly_the_target(records, rows, tok):
    reasoning_id = tok.convert_tokens_to_ids("<reasoning>")
    eos_text = tok.eos_token
    for record, ids, labels in zip(records, rows["input_ids"], rows["labels"]):
        ids, labels = np.asarray(ids), np.asarray(labels)
        assert labels.shape == ids.shape
        masked = labels == IGNORE_INDEX
        n_masked = int(masked.sum())
        # the masked part is one prefix: BOS + prompt, ending with <reasoning>
        assert masked[:n_masked].all() and not masked[n_masked:].any()
        assert ids[0] == tok.bos_token_id and ids[n_masked - 1] == reasoning_id
        assert _decode(tok, ids[1:n_masked]) == prompt_text(record["instruction"])
        # the trained part is the target text followed by EOS, labels equal to the ids
        assert (labels[~masked] == ids[~masked]).all()
        trained = ids[~masked]
        assert _decode(tok, trained) == target_text(record["reasoning"], record["intention"], record["code"]) + eos_text
        assert trained[-1] == tok.eos_token_id
        # labels_for agrees with the stored column
        assert (labels_for(ids, reasoning_id) == labels).all()


def test_labels_use_the_first_reasoning_tag_only():
    ids = [1, 50, 7, 60, 7, 70, 2]  # 7 = <reasoning>, seen twice
    assert labels_for(ids, 7).tolist() == [IGNORE_INDEX] * 3 + [60, 7, 70, 2]
    with pytest.raises(ValueError, match="no <reasoning> tag"):
        labels_for([1, 5, 6, 2], 7)


def test_section_ids_assign_each_token_its_section(tok):
    record = {"instruction": "Add two numbers.", "reasoning": "Plus is enough.", "intention": "Return the sum.",
              "code": "def add(a, b):\n    return a + b"}
    ids = tokenize_examples(tok, [record])[0]
    tags = tag_ids(tok)
    sec = section_ids(ids, tags)
    assert sec.shape == (len(ids),)
    # sections never go backwards and the first token is the prompt, the last EOS
    assert (np.diff(sec) >= 0).all() and sec[0] == 0 and sec[-1] == 4 and (sec == 4).sum() == 1
    pieces = {name: [i for i, s in zip(ids, sec) if s == k] for k, name in enumerate(SECTION_NAMES)}
    # a section runs up to and including its closing tag; an opening tag belongs to what it opens
    assert pieces["prompt"][-1] == tags["<reasoning>"]
    assert _decode(tok, pieces["prompt"][1:]) == prompt_text(record["instruction"])
    assert _decode(tok, pieces["reasoning"]) == record["reasoning"] + "</reasoning>"
    assert _decode(tok, pieces["intention"]) == "<intention>" + record["intention"] + "</intention>"
    assert _decode(tok, pieces["code"]) == "<code>" + record["code"] + "</code>"
    assert pieces["eos"] == [tok.eos_token_id]
    counts = section_lengths(ids, tags)
    assert list(counts) == list(SECTION_NAMES)
    assert counts == {name: len(p) for name, p in pieces.items()}
    assert sum(counts.values()) == len(ids)


def test_section_ids_on_a_truncated_sequence(tok):
    """Generation output that stops inside the intention: later sections are simply absent."""
    tags = tag_ids(tok)
    ids = [tok.bos_token_id, 300, tags["<reasoning>"], 301, tags["</reasoning>"], tags["<intention>"], 302]
    assert section_ids(ids, tags).tolist() == [0, 0, 0, 1, 1, 2, 2]


def test_tokenize_examples_batch_equals_one_by_one(records, tok):
    batch = tokenize_examples(tok, records[:8])
    assert batch == [tokenize_examples(tok, [r])[0] for r in records[:8]]
