"""The one definition of the training format (special tokens, prompt, target).

    prompt = BOS + instruction + SEPARATOR + "<reasoning>"
    target = reasoning + "</reasoning><intention>" + intention + "</intention><code>" + code + "</code>" + EOS

filter_data.py, encode_dataset.py, the trainers and generate.py all call these
functions; change the format here and bump TEMPLATE_VERSION so that stale datasets
are refused (the version is written into every manifest).
"""

import numpy as np

# v2: the tags are plain added tokens, not special ones, so servers keep their text (tokenizer.add_tags_and_pad)
TEMPLATE_VERSION = 2

SECTIONS = ("reasoning", "intention", "code")
TAGS = tuple(tag for name in SECTIONS for tag in (f"<{name}>", f"</{name}>"))
OPEN = {name: f"<{name}>" for name in SECTIONS}
CLOSE = {name: f"</{name}>" for name in SECTIONS}
SEPARATOR = "\n\n"
IGNORE_INDEX = -100  # Hugging Face convention: label ignored by the loss


def prompt_text(instruction):
    """The text the model is conditioned on (BOS is added by the tokenizer)."""
    return instruction + SEPARATOR + OPEN["reasoning"]


def target_text(reasoning, intention, code):
    """The text the model learns to produce (EOS is appended as an id, not as text)."""
    return (reasoning + CLOSE["reasoning"]
            + OPEN["intention"] + intention + CLOSE["intention"]
            + OPEN["code"] + code + CLOSE["code"])


def full_text(record):
    return prompt_text(record["instruction"]) + target_text(record["reasoning"], record["intention"], record["code"])


def tokenize_examples(tokenizer, records):
    """Token ids of whole examples: BOS + prompt + target + EOS.

    Each example is tokenized in ONE call. Tokenizing prompt and target separately and
    concatenating would put the SentencePiece dummy prefix "▁" back after <reasoning>.
    """
    texts = [full_text(r) for r in records]
    encoded = tokenizer(texts, add_special_tokens=True)["input_ids"]
    return [ids + [tokenizer.eos_token_id] for ids in encoded]


def tag_ids(tokenizer):
    """{tag: id} for the six tags; each must be a single token (stage 1 guarantees it)."""
    return {tag: tokenizer.convert_tokens_to_ids(tag) for tag in TAGS}


def labels_for(input_ids, reasoning_open_id):
    """Labels: -100 on the prompt (up to and including the first <reasoning>), ids on the target."""
    ids = np.asarray(input_ids)
    hits = np.flatnonzero(ids == reasoning_open_id)
    if hits.size == 0:
        raise ValueError("example has no <reasoning> tag; was it built with this template?")
    labels = ids.astype(np.int64, copy=True)
    labels[: hits[0] + 1] = IGNORE_INDEX
    return labels


def section_ids(input_ids, tags):
    """Per-position section index: 0 prompt, 1 reasoning, 2 intention, 3 code, 4 EOS.

    Derived from the tag positions alone, so no extra dataset column is needed. A section
    runs up to and including its closing tag (predicting the tag is part of learning it);
    the next opening tag belongs to the section it opens.
    """
    ids = np.asarray(input_ids)
    section = np.zeros(ids.shape, dtype=np.int8)
    for index, tag in enumerate(("<reasoning>", "</reasoning>", "</intention>", "</code>"), start=1):
        hits = np.flatnonzero(ids == tags[tag])
        if hits.size:
            section[hits[0] + 1:] = index
    return section


SECTION_NAMES = ("prompt", "reasoning", "intention", "code", "eos")


def section_lengths(input_ids, tags):
    """Token count per section name for one example (for reports and the length histogram)."""
    counts = np.bincount(section_ids(input_ids, tags), minlength=len(SECTION_NAMES))
    return dict(zip(SECTION_NAMES, counts.tolist()))
