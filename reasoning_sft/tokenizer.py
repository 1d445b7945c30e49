"""Stage 1 logic: add the tags and a pad token to a Llama-family tokenizer, and prove it is clean.

Llama SentencePiece tokenizers in their `legacy` mode prepend the dummy prefix "▁" to
every piece of text, including the text right after a special token, so "<code>def"
becomes ["<code>", "▁def"]: the model would learn a stray space after every tag. Loading
with legacy=False (Metaspace prepend_scheme="first") and saving keeps it away; the
checks below prove that for the saved directory, not for the object in memory.
"""

from .errors import UserError
from .template import TAGS, TEMPLATE_VERSION, tag_ids

PAD_TOKEN = "<pad>"
# Pieces of text that follow a tag in real data: code, prose, indentation, digits.
PROBES = ("def solve(nums):", "First, sort the list.", "x", "    return 1", "42 items")


def load_base_tokenizer(model):
    import os

    from transformers import AutoTokenizer

    if not os.path.isdir(model) and (model.startswith((".", "/", "~")) or model.count("/") > 1):
        raise UserError(f"{model}: no such model directory (and not a hub id of the form org/name)")
    try:
        return AutoTokenizer.from_pretrained(model, legacy=False)
    except OSError as err:
        raise UserError(f"cannot load a tokenizer from {model!r}: {str(err).splitlines()[0]}") from None


def add_tags_and_pad(tokenizer):
    """Add the six tags as special tokens and a dedicated pad token. Idempotent."""
    vocab = tokenizer.get_vocab()
    new_tags = [t for t in TAGS if t not in vocab]
    if new_tags:
        tokenizer.add_special_tokens({"additional_special_tokens": new_tags}, replace_extra_special_tokens=False)
    # EOS must stay a learned target: a pad that is EOS would be masked out of the loss
    if tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
    return new_tags


def _ids(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def verify_tokenizer(tokenizer):
    """Raise UserError unless every tag is one id and no stray "▁" follows a tag."""
    if tokenizer.eos_token_id is None or tokenizer.bos_token_id is None:
        raise UserError("the tokenizer has no BOS or EOS token; a Llama-family tokenizer is expected")
    if tokenizer.pad_token_id in (None, tokenizer.eos_token_id):
        raise UserError("pad token is missing or equal to EOS")
    newline = _ids(tokenizer, "\n")
    for tag in TAGS:
        tag_id = tokenizer.convert_tokens_to_ids(tag)
        if _ids(tokenizer, tag) != [tag_id]:
            raise UserError(f"tag {tag} does not encode to exactly one id: {_ids(tokenizer, tag)}")
        for probe in PROBES:
            after_tag = _ids(tokenizer, tag + probe)
            line_start = _ids(tokenizer, "\n" + probe)
            pieces = tokenizer.convert_ids_to_tokens(after_tag)
            expected = line_start[len(newline):] if line_start[:len(newline)] == newline else None
            stray = pieces[1].startswith("▁") and not probe[0].isspace()
            if after_tag[0] != tag_id or stray or (expected is not None and after_tag[1:] != expected):
                raise UserError(f"tokenizer inserts a stray prefix after {tag}: {tag + probe!r} -> {pieces}; "
                                "load the base tokenizer with legacy=False (Metaspace prepend_scheme='first')")
        text = tag + PROBES[0] + tag
        decoded = tokenizer.decode(_ids(tokenizer, text))
        if decoded != text:
            raise UserError(f"tokenizer does not round-trip {text!r} (got {decoded!r})")


def tokenizer_meta(tokenizer, base_model, fingerprint):
    return {
        "base_model": base_model,
        "template_version": TEMPLATE_VERSION,
        "added_tokens": tag_ids(tokenizer),
        "pad_token": tokenizer.pad_token,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "vocab_size": len(tokenizer),
        "fingerprint": fingerprint,
    }
