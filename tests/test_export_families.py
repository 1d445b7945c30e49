"""export.py --gguf on every model family: llama.cpp's converter reproduces each family's tokenizer.

For each family of reasoning_sft/demo/families.py (its published tokenizer, a tiny random model, stage 1,
one train_full.py step: conftest's family_export), the GGUF is read back and held to the serving
directory's tokenizer: the vocabulary id for id, the tags user-defined (llama-server shows their text) and
the base's special tokens control, EOS the base's and </code> the end of turn, BOS added exactly where the
tokenizer adds it, the pre-tokenizer the one llama.cpp names for the family, and the chat template giving
the training prompt the way llama-server's chat path uses it. The engines themselves run in tests/serving.
"""

import json
import shutil

import jinja2
import pytest
from conftest import FAMILIES, family_training_prompts

from reasoning_sft.artifacts import load_tokenizer_files
from reasoning_sft.data.template import CLOSE, TAGS
from reasoning_sft.demo import families
from reasoning_sft.errors import UserError
from reasoning_sft.serve.export import GGUF_FILE, read_gguf_tokenizer, write_gguf

pytestmark = pytest.mark.slow

GGUF_CONTROL, GGUF_USER_DEFINED = 3, 4  # gguf.TokenType


def llama_server_prompt_ids(gguf, tokenizer, instruction):
    """What llama-server's chat path does with the GGUF's template (common/chat.cpp, then common_tokenize with
    add_special and parse_special), with the tokenizer standing in for llama.cpp's own (tests/serving runs the
    real one): render with the GGUF's BOS/EOS texts, drop a leading BOS text if the GGUF adds BOS, tokenize,
    put BOS first if the GGUF adds it."""
    bos = gguf["tokens"][gguf["bos"]] if gguf["bos"] is not None else ""
    rendered = jinja2.Environment().from_string(gguf["chat_template"]).render(
        messages=[{"role": "user", "content": instruction}], add_generation_prompt=True, bos_token=bos,
        eos_token=gguf["tokens"][gguf["eos"]])
    if gguf["add_bos"] and rendered.startswith(bos):
        rendered = rendered[len(bos):]
    return [gguf["bos"]] * bool(gguf["add_bos"]) + tokenizer(rendered, add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("family", FAMILIES)
def test_gguf_is_the_family_tokenizer_with_its_stops_and_prompt(family, family_export, family_encoded):
    fam = families.FAMILIES[family]
    served = family_export(family)
    tokenizer = load_tokenizer_files(str(served))
    gguf = read_gguf_tokenizer(str(served / GGUF_FILE))
    meta = json.loads((served / "sft_export.json").read_text())["gguf"]

    assert (gguf["model"], gguf["pre"]) == (("llama", "default") if fam.sentencepiece else ("gpt2", fam.llama_cpp_pre))
    assert meta["vocabulary"] == ("sentencepiece" if fam.sentencepiece else "byte-level BPE")
    # id for id; rows past the tokenizer (Qwen's, DeepSeek's spare rows) are the converter's fillers
    assert gguf["tokens"][:len(tokenizer)] == tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    types = {token: gguf["types"][i] for token, i in tokenizer.get_vocab().items()}
    assert {tag: types[tag] for tag in TAGS} == dict.fromkeys(TAGS, GGUF_USER_DEFINED)
    assert types[tokenizer.eos_token] == GGUF_CONTROL  # llama-server drops its text
    assert (gguf["eos"], gguf["eot"]) == (tokenizer.convert_tokens_to_ids(fam.eos),
                                          tokenizer.convert_tokens_to_ids(CLOSE["code"]))
    assert bool(gguf["add_bos"]) == fam.add_bos == meta["add_bos"]
    if fam.add_bos:
        assert gguf["bos"] == tokenizer.convert_tokens_to_ids(fam.bos)
    # the training prompts, as encode_dataset.py wrote them, through the chat path's steps
    prompts = family_training_prompts(family_encoded(family))
    assert len(prompts) >= 4
    for instruction, ids in prompts:
        assert llama_server_prompt_ids(gguf, tokenizer, instruction) == ids


def test_an_unknown_pre_tokenizer_is_one_line_and_no_gguf(family_export, tmp_path):
    """A byte-level BPE tokenizer that llama.cpp's converter does not know (here DeepSeek-Coder's lowercasing its
    text: the converter names a pre-tokenizer by the ids of a fixed text, which change; GPT-2's split instead of
    DeepSeek's does not change them): llama.cpp would tokenize differently, so no GGUF, and one line says why."""
    served = tmp_path / "serve"
    shutil.copytree(family_export("deepseek-coder"), served)
    (served / GGUF_FILE).unlink()
    spec = json.loads((served / "tokenizer.json").read_text(encoding="utf-8"))
    spec["normalizer"] = {"type": "Lowercase"}
    (served / "tokenizer.json").write_text(json.dumps(spec), encoding="utf-8")
    with pytest.raises(UserError) as err:
        write_gguf(str(served), load_tokenizer_files(str(served)), "fp32")
    assert "does not know this tokenizer's pre-tokenizer" in str(err.value) and "\n" not in str(err.value)
    assert not (served / GGUF_FILE).exists()
