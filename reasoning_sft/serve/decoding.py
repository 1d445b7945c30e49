"""Prompts in, result rows out: what both generation backends share (generation.py, vllm_backend.py).

A prompt is data.template.prompt_text's, the same text that built the training data (ending with
"<reasoning>"); a row is cut at its first stop token and decoded with the tags kept.
"""

from reasoning_sft.data.format import EXPECTED
from reasoning_sft.data.template import CLOSE, OPEN, prompt_text

STOP_EOS, STOP_CODE, STOP_LENGTH = "eos", CLOSE["code"], "length"


def encode_prompts(tokenizer, instructions):
    """Left-padded prompt batch (PyTorch tensors): pads, then the training prompt: the tokenizer's own
    special tokens (BOS where it adds one; none for Qwen or StarCoder2), instruction, SEPARATOR, <reasoning>.

    Left padding puts the last prompt token of every row in the last column, which is
    where generate() appends; position ids come from the attention mask.
    """
    return tokenizer([prompt_text(i) for i in instructions], add_special_tokens=True, padding=True,
                     padding_side="left", return_tensors="pt")


def prompt_token_ids(tokenizer, instructions):
    """Each instruction's prompt ids, unpadded: what encode_prompts() left-pads into a batch."""
    return tokenizer([prompt_text(i) for i in instructions], add_special_tokens=True)["input_ids"]


def stop_ids(tokenizer):
    """Token ids that end a generation: EOS and </code> (nothing may follow </code>)."""
    return [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(CLOSE["code"])]


def decode_continuation(tokenizer, ids):
    """Turn the generated ids of one row into a result dict (without parsing it).

    The row is cut after its first stop token (the rest is generate()'s pad filler), EOS,
    BOS (where the tokenizer has one) and pad ids are dropped, and the rest is decoded with the tags kept.
    Returns {"output", "n_tokens" (generated, stop token included), "stop", "section_tokens"}:
    stop is "eos", "</code>" or "length"; section_tokens counts the tokens inside each
    section (tags excluded) when the five tags occur once each as single ids in order, else None.
    """
    ids = [int(i) for i in ids]
    eos, code_close = stop_ids(tokenizer)
    stop = STOP_LENGTH
    for pos, i in enumerate(ids):
        if i in (eos, code_close):
            ids = ids[:pos + 1]
            stop = STOP_EOS if i == eos else STOP_CODE
            break
    n_tokens = len(ids)
    drop = {eos, tokenizer.bos_token_id, tokenizer.pad_token_id}
    ids = [i for i in ids if i not in drop]
    text = tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    return {"output": text, "n_tokens": n_tokens, "stop": stop, "section_tokens": _section_tokens(tokenizer, ids)}


def _section_tokens(tokenizer, ids):
    tag_id = {tag: tokenizer.convert_tokens_to_ids(tag) for tag in EXPECTED}
    pos = {}
    for tag, i in tag_id.items():
        hits = [p for p, x in enumerate(ids) if x == i]
        if len(hits) != 1:
            return None
        pos[tag] = hits[0]
    order = [pos[t] for t in EXPECTED]
    if order != sorted(order):
        return None
    return {"reasoning": pos[CLOSE["reasoning"]],
            "intention": pos[CLOSE["intention"]] - pos[OPEN["intention"]] - 1,
            "code": pos[CLOSE["code"]] - pos[OPEN["code"]] - 1}
