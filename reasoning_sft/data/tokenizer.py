"""Stage 1 logic: add the tags and a pad token to a base model's tokenizer, and prove it is clean.

Two kinds of tokenizer are taken, the two that code LLMs use (`tokenizer_kind`):
- SentencePiece BPE (Llama-2, CodeLlama, Mistral): BPE with byte fallback and the "▁" word prefix;
- byte-level BPE (Qwen2.5/Qwen3, Llama-3, DeepSeek-Coder, StarCoder2): GPT-2's byte-to-character map, where a
  space is "Ġ".
Either with a BOS that the tokenizer adds, a BOS that is never added (StarCoder2), or none (Qwen); an EOS is
required (it ends every training example). Anything else (WordPiece, Unigram, a BPE of neither kind) is refused
in one line, before anything is written.

Llama SentencePiece tokenizers in their `legacy` mode prepend the dummy prefix "▁" to
every piece of text, including the text right after a special token, so "<code>def"
becomes ["<code>", "▁def"]: the model would learn a stray space after every tag. Loading
with legacy=False (Metaspace prepend_scheme="first") and saving keeps it away; the
checks below prove that for the saved directory, not for the object in memory.

A byte-level BPE tokenizer is the base's tokenizer.json as it is: some tokenizer classes rebuild its pipeline
when transformers loads them (StarCoder2's GPT2Tokenizer drops the file's digit split, so " ½" encodes
differently), so where the loaded tokenizer does not encode like the file, the file is loaded as it is
(TokenizersBackend), and the saved directory is checked to encode like the base's tokenizer.json.
"""

import functools
import json
import os
import shutil

from reasoning_sft.data.template import (
    OPEN,
    SEPARATOR,
    TAGS,
    TEMPLATE_VERSION,
    full_text,
    prompt_text,
    tag_ids,
    target_text,
)
from reasoning_sft.errors import UserError

PAD_TOKEN = "<pad>"
# the SentencePiece model file of Llama-family tokenizers; transformers 5 loads tokenizer.json and saves no
# tokenizer.model, but llama.cpp's converter needs it to reproduce the tokenizer: stages copy it along
SENTENCEPIECE_MODEL = "tokenizer.model"
TOKENIZER_JSON = "tokenizer.json"
SENTENCEPIECE, BYTE_LEVEL = "SentencePiece BPE", "byte-level BPE"
SUPPORTED = (f"stage 1 takes {SENTENCEPIECE} (Llama-2, CodeLlama, Mistral) or {BYTE_LEVEL} (Qwen2.5, Qwen3, "
             "Llama-3, DeepSeek-Coder, StarCoder2) tokenizers")
# Pieces of text that follow a tag in real data: code, prose, indentation, digits.
PROBES = ("def solve(nums):", "First, sort the list.", "x", "    return 1", "42 items")
# Text on which a byte-level tokenizer must encode exactly as the base's tokenizer.json: digits and numbers
# (split one by one or in threes), a fraction, accents, CJK, emoji, whitespace runs, contractions, code.
FIDELITY_PROBES = ("ied 4 ½ months", "3333333 33 3.14", "Écris une fonction « tri » — naïve.",
                   "我想在apple工作1314151天", "🚀 (normal) 😶\u200d🌫️", "\n \n\n \t\t  x", "I've been 'told he's there",
                   "def f(a, b):\n    return a+b")
# the word-boundary mark that starts a piece: SentencePiece's "▁", byte-level BPE's "Ġ" (the space byte)
SPACE_MARKS = ("▁", "Ġ")


def pipeline_part(backend, part):
    """One part of a tokenizers.Tokenizer's pipeline ("normalizer", "pre_tokenizer", "decoder", ...) as the dict
    tokenizer.json has for it, or None; without serialising the vocabulary."""
    component = getattr(backend, part)
    return None if component is None else json.loads(component.__getstate__())


def _types(component):
    """The component types of a tokenizer.json pipeline part, nested Sequences flattened."""
    if not component:
        return []
    if component.get("type") == "Sequence":
        inner = component.get("pretokenizers") or component.get("normalizers") or component.get("decoders") or []
        return [t for c in inner for t in _types(c)]
    return [component.get("type")]


def tokenizer_kind(tokenizer, name="the tokenizer"):
    """SENTENCEPIECE or BYTE_LEVEL from the tokenizer's own pipeline; UserError naming what it is otherwise."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise UserError(f"{name}: a {type(tokenizer).__name__} with no tokenizers backend (tokenizer.json) is not "
                        f"supported; {SUPPORTED}")
    # each part on its own: the whole backend.to_str() is the vocabulary and merges too (10 MB for Qwen)
    state = {part: pipeline_part(backend, part) for part in ("normalizer", "pre_tokenizer", "decoder")}
    model = {"type": type(backend.model).__name__, "byte_fallback": getattr(backend.model, "byte_fallback", False)}
    pre = _types(state.get("pre_tokenizer"))
    everything = pre + _types(state.get("normalizer")) + _types(state.get("decoder"))
    if model.get("type") == "BPE" and "ByteLevel" in pre:
        return BYTE_LEVEL
    sentencepiece_marks = ("Metaspace" in everything or "▁" in json.dumps(state.get("normalizer"), ensure_ascii=False))
    if model.get("type") == "BPE" and model.get("byte_fallback") and sentencepiece_marks:
        return SENTENCEPIECE
    details = ", ".join([f"pre-tokenizer {'+'.join(pre)}"] * bool(pre) + [type(tokenizer).__name__])
    raise UserError(f"{name}: a {model.get('type', 'unknown')} tokenizer ({details}) is not supported; {SUPPORTED}")


def base_file(name_or_path, filename):
    """FILENAME beside a tokenizer (a local directory, or a hub id's cached files), or None."""
    if os.path.isdir(name_or_path):
        path = os.path.join(name_or_path, filename)
        return path if os.path.isfile(path) else None
    from transformers.utils import cached_file

    try:
        return cached_file(name_or_path, filename, _raise_exceptions_for_missing_entries=False)
    except OSError:
        return None


@functools.lru_cache(maxsize=4)
def _tokenizer_file(path, mtime_ns):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(path)


def encoding_mismatch(tokenizer, tokenizer_json):
    """None if the tokenizer encodes FIDELITY_PROBES (special tokens added) as the file does, else the first
    difference."""
    reference = _tokenizer_file(tokenizer_json, os.stat(tokenizer_json).st_mtime_ns)
    for text in FIDELITY_PROBES:
        got, expected = tokenizer(text)["input_ids"], reference.encode(text).ids
        if got != expected:
            return f"{text!r} -> {got} where {os.path.basename(tokenizer_json)} gives {expected}"
    return None


def load_base_tokenizer(model):
    """The base model's tokenizer as it tokenizes: SentencePiece ones with legacy=False, byte-level ones as
    their tokenizer.json; UserError for a tokenizer stage 1 does not take, or one with no EOS."""
    from transformers import AutoTokenizer, TokenizersBackend

    if not os.path.isdir(model) and (model.startswith((".", "/", "~")) or model.count("/") > 1):
        raise UserError(f"{model}: no such model directory (and not a hub id of the form org/name)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(model, legacy=False)
    except OSError as err:
        raise UserError(f"cannot load a tokenizer from {model!r}: {str(err).splitlines()[0]}") from None
    kind = tokenizer_kind(tokenizer, model)
    if tokenizer.eos_token_id is None:
        raise UserError(f"{model}: the tokenizer has no EOS token (eos_token in tokenizer_config.json); every "
                        "training example ends with it, so stage 1 needs one")
    published = base_file(model, TOKENIZER_JSON) if kind == BYTE_LEVEL else None
    if published and encoding_mismatch(tokenizer, published):
        # the class rebuilt the pipeline (StarCoder2's GPT2Tokenizer): take the file as it is
        tokenizer = TokenizersBackend.from_pretrained(model)
        problem = encoding_mismatch(tokenizer, published)
        if problem:
            raise UserError(f"{model}: cannot load the tokenizer so that it encodes as its {TOKENIZER_JSON}: {problem}")
    return tokenizer


def add_tags_and_pad(tokenizer):
    """Add the six tags as plain added tokens and a dedicated pad token. Idempotent.

    Plain, not special: an added token is split out of the text before the model's pieces (one
    id each, like a special token), but only special tokens are dropped by decoders that skip
    them, and that is what every serving stack does by default (vLLM's `skip_special_tokens`,
    llama-server's control tokens, `decode(skip_special_tokens=True)`). With plain tags the text
    a server returns still shows where reasoning, intention and code start. A tokenizer whose
    tags are special (one prepared under template v1) has them turned plain.
    """
    from tokenizers import AddedToken

    new_tags = [t for t in TAGS if t not in tokenizer.get_vocab()]
    extra = list(getattr(tokenizer, "extra_special_tokens", None) or [])
    if any(t in extra for t in TAGS):
        tokenizer.extra_special_tokens = [t for t in extra if t not in TAGS]
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in TAGS])
    # EOS must stay a learned target: a pad that is EOS would be masked out of the loss
    if tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
    return new_tags


def sentencepiece_model_path(name_or_path):
    """The tokenizer.model beside a tokenizer (a local directory, or a hub id's cached files), or None."""
    return base_file(name_or_path, SENTENCEPIECE_MODEL)


def save_tokenizer(tokenizer, out_dir):
    """save_pretrained, plus the SentencePiece model the tokenizer was loaded with (transformers 5 drops it)."""
    tokenizer.save_pretrained(out_dir)
    source = sentencepiece_model_path(tokenizer.name_or_path) if tokenizer.name_or_path else None
    target = os.path.join(out_dir, SENTENCEPIECE_MODEL)
    if source and os.path.abspath(source) != os.path.abspath(target):
        shutil.copyfile(source, target)
    return source is not None


def _ids(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def verify_tokenizer(tokenizer):
    """Raise UserError unless every tag is one id and no stray space mark follows a tag.

    Tokenizer-agnostic: text after a tag must encode as it does at the start of a line, and its first piece
    may start with a word-boundary mark ("▁", "Ġ") only where the text starts with whitespace.
    """
    if tokenizer.eos_token_id is None:
        raise UserError("the tokenizer has no EOS token")
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
            stray = pieces[1].startswith(SPACE_MARKS) and not probe[0].isspace()
            if after_tag[0] != tag_id or stray or (expected is not None and after_tag[1:] != expected):
                raise UserError(f"tokenizer inserts a stray prefix after {tag}: {tag + probe!r} -> {pieces}; "
                                "load the base tokenizer with legacy=False (Metaspace prepend_scheme='first')")
        text = tag + PROBES[0] + tag
        decoded = tokenizer.decode(_ids(tokenizer, text))
        if decoded != text:
            raise UserError(f"tokenizer does not round-trip {text!r} (got {decoded!r})")
        if tokenizer.decode(_ids(tokenizer, text), skip_special_tokens=True) != text:
            raise UserError(f"tag {tag} is a special token: servers would drop its text from their output "
                            "(re-run prepare_llamatokenizer.py, which adds the tags as plain tokens)")


# ---------------------------------------------------------------------------------------
# the chat template: how a serving stack (vLLM, TGI, llama.cpp) builds the training prompt
#
# Servers render a conversation with the tokenizer's Jinja chat template and tokenize the
# text without adding special tokens, so the template writes BOS itself. One user message
# (the instruction, stripped as the data stages strip it) renders as the training prompt:
#     BOS + instruction + SEPARATOR + "<reasoning>"      (add_generation_prompt=True)
# and a user + assistant pair as a whole training example (the reply is the target text
# after "<reasoning>", EOS appended). Anything else is refused: the model never saw it.
#
# Between BOS and the instruction, some tokenizers need a space: a SentencePiece tokenizer
# (Metaspace, prepend_scheme="first") gives text right after a special token no "▁"
# prefix, while the training prompt's first word has one ("▁Write"). Which text reproduces
# the training ids is decided by trying and checking, not by guessing the tokenizer family.

CHAT_TEMPLATE_ERROR = ("this model was trained on a single user message (the instruction), "
                       "optionally followed by the assistant reply; no system or multi-turn messages")
# what comes before the instruction (a Jinja expression), candidates tried in order
CHAT_PREFIXES = ("bos_token", "bos_token + ' '", "''", "' '")
# instructions the rendered prompt must reproduce exactly (code, prose, digits, unicode, a long docstring)
CHAT_PROBES = (
    "Write a function that returns the sum of a list.",
    "def add(a, b):\n    \"\"\"Return a + b.\n    >>> add(1, 2)\n    3\n    \"\"\"",
    "from typing import List\n\n\ndef has_close_elements(numbers: List[float], threshold: float) -> bool:",
    "42 items, sorted",
    "Écris une fonction « tri » — naïve.",
    "x",
)


def chat_template(prefix):
    """The Jinja chat template; `prefix` is the Jinja expression before the instruction (see CHAT_PREFIXES)."""
    def literal(text):  # a Jinja string literal (JSON escapes are valid Jinja escapes)
        return json.dumps(text)

    generation_prompt = literal(SEPARATOR + OPEN["reasoning"])
    return (
        "{%- if messages | length not in [1, 2] or messages[0]['role'] != 'user' "
        "or (messages | length == 2 and messages[1]['role'] != 'assistant') -%}"
        f"{{{{- raise_exception({literal(CHAT_TEMPLATE_ERROR)}) -}}}}"
        "{%- endif -%}"
        f"{{{{- {prefix} + (messages[0]['content'] | trim) -}}}}"
        "{%- if messages | length == 2 -%}"
        f"{{{{- {generation_prompt} + messages[1]['content'] + eos_token -}}}}"
        "{%- elif add_generation_prompt -%}"
        f"{{{{- {generation_prompt} -}}}}"
        "{%- endif -%}"
    )


def _rendered_ids(tokenizer, messages, add_generation_prompt):
    out = tokenizer.apply_chat_template(messages, add_generation_prompt=add_generation_prompt, tokenize=True)
    return list(out["input_ids"] if hasattr(out, "keys") else out)


def chat_template_mismatch(tokenizer):
    """None if the tokenizer's chat template reproduces the training ids on every probe, else what differs."""
    example = {"reasoning": "Sum the list.", "intention": "Use sum().", "code": "def f(xs):\n    return sum(xs)"}
    for instruction in CHAT_PROBES:
        user = [{"role": "user", "content": instruction}]
        expected = tokenizer(prompt_text(instruction), add_special_tokens=True)["input_ids"]
        got = _rendered_ids(tokenizer, user, add_generation_prompt=True)
        if got != expected:
            return f"prompt {instruction[:30]!r}: {tokenizer.convert_ids_to_tokens(got[:4])} != " \
                   f"{tokenizer.convert_ids_to_tokens(expected[:4])}"
        # the assistant's reply is the target text: full_text = prompt_text + target_text
        expected = tokenizer(full_text(dict(example, instruction=instruction)))["input_ids"] + [tokenizer.eos_token_id]
        reply = {"role": "assistant", "content": target_text(**example)}
        got = _rendered_ids(tokenizer, user + [reply], add_generation_prompt=False)
        if got != expected:
            return f"example {instruction[:30]!r}: ends {tokenizer.convert_ids_to_tokens(got[-3:])} != " \
                   f"{tokenizer.convert_ids_to_tokens(expected[-3:])}"
    return None


def chat_prefixes(tokenizer):
    """The CHAT_PREFIXES that can render for this tokenizer: none naming bos_token where it has none (Qwen)."""
    return [p for p in CHAT_PREFIXES if tokenizer.bos_token is not None or "bos_token" not in p]


def add_chat_template(tokenizer):
    """Set the first candidate chat template that reproduces the training prompt; UserError if none does.

    The prompt has exactly the base's own special tokens: a BOS where the tokenizer adds one (Llama, DeepSeek),
    none where it adds none (Qwen has no BOS; StarCoder2's is never added), since the template is tried against
    tokenizer(prompt_text, add_special_tokens=True).
    """
    problems = []
    for prefix in chat_prefixes(tokenizer):
        tokenizer.chat_template = chat_template(prefix)
        problem = chat_template_mismatch(tokenizer)
        if problem is None:
            return tokenizer.chat_template
        problems.append(problem)
    raise UserError(f"no chat template reproduces the training prompt with this tokenizer ({problems[0]})")


def verify_chat_template(tokenizer):
    """Raise UserError unless the (saved) tokenizer's chat template renders the training ids."""
    if not tokenizer.chat_template:
        raise UserError("the tokenizer has no chat template")
    problem = chat_template_mismatch(tokenizer)
    if problem is not None:
        raise UserError(f"the chat template does not reproduce the training prompt: {problem}")


def adds_bos(tokenizer):
    """Whether the tokenizer puts BOS before a text by itself (what encode_dataset.py's training ids start with)."""
    bos = tokenizer.bos_token_id
    plain = tokenizer("x", add_special_tokens=False)["input_ids"]
    return bos is not None and tokenizer("x", add_special_tokens=True)["input_ids"] == [bos, *plain]


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
        "sentencepiece_model": os.path.isfile(os.path.join(tokenizer.name_or_path, SENTENCEPIECE_MODEL)),
        "kind": tokenizer_kind(tokenizer),
        "adds_bos": adds_bos(tokenizer),
    }
