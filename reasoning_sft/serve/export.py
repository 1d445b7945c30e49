"""The serving directory: what vLLM, TGI, transformers and llama.cpp load, written once and checked.

A training output (full weights, or a LoRA adapter merged into its base) becomes one
self-contained directory:

    config.json, model.safetensors        merged weights in --dtype; vocabulary rows = the tokenizer's
    tokenizer.json, tokenizer_config.json the tokenizer, its chat template also in tokenizer_config.json
    chat_template.jinja                   the chat template (one user message -> the training prompt)
    tokenizer.model, added_tokens.json    a SentencePiece base's model and the tags' ids, which is what
                                          llama.cpp's converter reads to reproduce the tokenizer (a
                                          byte-level BPE tokenizer is read from tokenizer.json)
    generation_config.json                stop id: EOS, which follows </code> (train.generation_config.serving_stop_ids)
    sft_reasoning_parser.py               vLLM's --reasoning-parser-plugin: the code in `content`, the rest in
                                          `reasoning` (a copy of serve/reasoning_parser.py; needs only vLLM)
    README.md                             the commands that serve it
    sft_export.json                       what was exported, from where, and what was checked
    model.gguf                            with --gguf: llama.cpp's converter's output, with </code> as
                                          end of turn and a chat template for llama.cpp's tokenizer
                                          that follows the base's BOS rule

Everything is written into a temporary sibling, checked (reloaded; the chat template gives
the training ids; the stop ids are there; the GGUF's vocabulary, token types and stop ids),
and only then renamed into place.
"""

import os
import re
import subprocess
import sys

from reasoning_sft.artifacts import atomic_output_dir, read_json, write_json
from reasoning_sft.data.template import CLOSE, TAGS, TEMPLATE_VERSION
from reasoning_sft.data.tokenizer import (
    BYTE_LEVEL,
    SENTENCEPIECE_MODEL,
    add_tags_and_pad,
    adds_bos,
    chat_template,
    save_tokenizer,
    tokenizer_kind,
    verify_chat_template,
    verify_tokenizer,
)
from reasoning_sft.errors import UserError
from reasoning_sft.serve import reasoning_parser
from reasoning_sft.train.generation_config import GENERATION_CONFIG, serving_stop_ids, write_generation_config
from reasoning_sft.train.run_contract import check_run_complete

EXPORT_META = "sft_export.json"
GGUF_FILE = "model.gguf"
PARSER_FILE = "sft_reasoning_parser.py"
DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
GGUF_OUTTYPES = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}
LLAMA_CPP_VERSION = "0.3.36"  # the llama-cpp-python sdist whose llama.cpp sources `make serve-env` builds
# llama-server's chat path renders the GGUF's template, strips a leading BOS text when the GGUF adds
# BOS (tokenizer.ggml.add_bos_token), then tokenizes with add_special=true and parse_special=true.
# A tokenizer that adds BOS (Llama, CodeLlama, Llama-3, DeepSeek-Coder) gets bos_token + instruction:
# with no ' ' between, since llama.cpp's SentencePiece tokenizer puts the "▁" before the first text
# after BOS itself (tokenizer.ggml.add_space_prefix), and byte-level BPE has no prefix to put. One that
# adds none (Qwen2.5, Qwen3, StarCoder2) gets the instruction alone, and its GGUF must not add BOS.
GGUF_CHAT_PREFIX = {True: "bos_token", False: "''"}  # keyed by "the tokenizer adds BOS"
# gguf token types (gguf.TokenType): text of CONTROL tokens is dropped from llama-server's output
GGUF_USER_DEFINED, GGUF_CONTROL = 4, 3
# the two ways llama.cpp's converter reads a tokenizer (what write_gguf checks it can)
GGUF_SENTENCEPIECE, GGUF_BPE = "sentencepiece", BYTE_LEVEL


def default_llama_cpp_dir():
    """Where `make serve-env` puts llama.cpp's sources and build: $REASONING_SFT_LLAMA_CPP, else the cache."""
    if os.environ.get("REASONING_SFT_LLAMA_CPP"):
        return os.environ["REASONING_SFT_LLAMA_CPP"]
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "reasoning-sft", f"llama.cpp-{LLAMA_CPP_VERSION}", "vendor", "llama.cpp")


def llama_cpp_tools(llama_cpp_dir):
    """(converter script, gguf-py dir) of a llama.cpp checkout; UserError if absent."""
    llama_cpp_dir = llama_cpp_dir or default_llama_cpp_dir()
    convert = os.path.join(llama_cpp_dir, "convert_hf_to_gguf.py")
    gguf_py = os.path.join(llama_cpp_dir, "gguf-py")
    if not os.path.isfile(convert) or not os.path.isdir(gguf_py):
        missing = convert if not os.path.isfile(convert) else gguf_py
        raise UserError(f"--gguf needs llama.cpp's converter: {missing} not found; run `make serve-env` "
                        "or pass --llama_cpp DIR (a llama.cpp source tree)")
    return convert, gguf_py


# ---------------------------------------------------------------------------------------
# reading what training wrote


def training_output(model_dir):
    """(mode, train_config) of a trainer's --output_dir; UserError for anything else."""
    if not os.path.isdir(model_dir):
        raise UserError(f"{model_dir}: no such directory")
    path = os.path.join(model_dir, "train_config.json")
    if not os.path.isfile(path):
        raise UserError(f"{model_dir}: not a training output of this project (no train_config.json); "
                        "give the --output_dir of training/train_full.py or training/train_peft.py")
    config = read_json(path, "training config")
    mode = config.get("mode")
    weights = "adapter_config.json" if mode == "lora" else "config.json"
    if mode not in ("full", "lora") or not os.path.isfile(os.path.join(model_dir, weights)):
        raise UserError(f"{model_dir}: the run has no final model (mode {mode!r}, no {weights}); "
                        "was it stopped before the end? resume it with --resume")
    check_run_complete(model_dir, config)  # the final weights are this train_config.json's run's
    return mode, config


def load_tokenizer_for_serving(model_dir):
    """The run's tokenizer with the tags as plain tokens (a template v1 run's special tags are made plain:
    same ids, so the weights are unchanged); UserError unless it is one of ours."""
    from reasoning_sft.artifacts import load_tokenizer_files

    try:
        tokenizer = load_tokenizer_files(model_dir)
    except Exception as err:
        raise UserError(f"{model_dir}: cannot load the tokenizer ({type(err).__name__}: {err})") from None
    if any(tokenizer.convert_tokens_to_ids(tag) in (None, tokenizer.unk_token_id) for tag in TAGS):
        raise UserError(f"{model_dir}: its tokenizer has no {'/'.join(TAGS)} tags; not trained by this project")
    add_tags_and_pad(tokenizer)
    return tokenizer


def load_merged_model(model_dir, mode, train_config, tokenizer, base_model=None, dtype="auto"):
    """The run's model as plain full weights: the full fine-tuning output, or base + LoRA adapter merged
    (modeling.merge_lora, as train_peft.py --merge_lora: its config marks the tag rows trained)."""
    import torch

    from reasoning_sft.train.modeling import load_causal_lm, load_for_inference, merge_lora

    torch_dtype = None if dtype == "auto" else getattr(torch, DTYPES[dtype])
    if mode == "full":
        if base_model:
            raise UserError("--base_model is for a LoRA output; a full fine-tuning output holds its whole model")
        model = load_causal_lm(model_dir, dtype=torch_dtype or "auto")
        return model.eval(), None
    base = base_model or train_config.get("args", {}).get("model_name")
    if not base:
        raise UserError(f"{model_dir}: a LoRA adapter; pass --base_model (its train_config.json names none)")
    try:
        model = load_for_inference(base, tokenizer, adapter_dir=model_dir, dtype=torch_dtype or "auto")
    except RuntimeError as err:  # peft: the adapter's shapes do not fit this base
        raise UserError(f"the adapter in {model_dir} does not fit --base_model {base}: "
                        f"{str(err).strip().splitlines()[-1][:200]}") from None
    missing = _adapter_keys_missing(model, model_dir)
    if missing:
        raise UserError(f"the adapter in {model_dir} does not fit --base_model {base}: "
                        f"{len(missing)} adapter weights have no place in it (e.g. {missing[0]})")
    return merge_lora(model, tokenizer).eval(), base


def _adapter_keys_missing(model, adapter_dir):
    """Adapter weights that found no place in the base (peft only warns about them)."""
    from peft.utils import get_peft_model_state_dict
    from safetensors import safe_open

    path = os.path.join(adapter_dir, "adapter_model.safetensors")
    if not os.path.isfile(path):
        raise UserError(f"{adapter_dir}: no adapter_model.safetensors")
    with safe_open(path, "pt") as f:
        stored = set(f.keys())
    return sorted(stored - set(get_peft_model_state_dict(model, save_embedding_layers=False).keys()))


# ---------------------------------------------------------------------------------------
# writing and checking the serving directory


def _dtype_name(model):
    return {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}.get(str(model.dtype).replace("torch.", ""),
                                                                       str(model.dtype))


def write_tokenizer_files(tokenizer, out_dir):
    """The tokenizer, its chat template in both places servers look, and added_tokens.json for llama.cpp.

    Returns whether a SentencePiece model (tokenizer.model) went with it.
    """
    has_sp = save_tokenizer(tokenizer, out_dir)
    config_path = os.path.join(out_dir, "tokenizer_config.json")
    config = read_json(config_path, "tokenizer config")
    config["chat_template"] = tokenizer.chat_template  # transformers 5 writes it to chat_template.jinja only
    write_json(config_path, config)
    with open(os.path.join(out_dir, "chat_template.jinja"), "w", encoding="utf-8") as f:
        f.write(tokenizer.chat_template)
    if has_sp:
        import sentencepiece as spm

        pieces = spm.SentencePieceProcessor(model_file=os.path.join(out_dir, SENTENCEPIECE_MODEL)).get_piece_size()
        # the tokens after the SentencePiece model's own (the tags, the pad): the converter takes their
        # text and ids from here; it reads no added_tokens_decoder, which transformers 5 does not write
        added = {token: i for token, i in sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1]) if i >= pieces}
        write_json(os.path.join(out_dir, "added_tokens.json"), added)
    return has_sp


def check_serving_dir(out_dir, tokenizer):
    """Reload what was written and check it serves as trained; UserError naming the first problem."""
    from transformers import AutoConfig, GenerationConfig

    from reasoning_sft.artifacts import load_tokenizer_files

    saved = load_tokenizer_files(out_dir)
    verify_tokenizer(saved)
    verify_chat_template(saved)
    if saved.get_vocab() != tokenizer.get_vocab():
        raise UserError(f"{out_dir}: the saved tokenizer's vocabulary differs from the model's")
    want = serving_stop_ids(saved)
    got = GenerationConfig.from_pretrained(out_dir).eos_token_id
    got = got if isinstance(got, list) else [got]
    if got != want:
        raise UserError(f"{out_dir}: {GENERATION_CONFIG} stops at {got}, not at EOS {want}")
    rows = AutoConfig.from_pretrained(out_dir).vocab_size
    if rows < len(saved):
        raise UserError(f"{out_dir}: config.json has {rows} vocabulary rows for {len(saved)} tokens")
    return sorted(want)


def write_readme(directory, out_dir, meta):
    """directory/README.md: the commands that serve out_dir (the path it will have once renamed into place)."""
    gguf = meta.get("gguf")
    lines = [
        "# Serving this model",
        "",
        f"Exported by reasoning-sft's export.py from `{meta['source']}` ({meta['mode']}, {meta['dtype']}).",
        "A user message renders as the training prompt; the model answers",
        "`reasoning</reasoning><intention>…</intention><code>…</code>` and stops by itself right after",
        f"`</code>`, at EOS (stop ids {meta['stop_ids']} in generation_config.json). The tags are plain tokens:",
        "default requests return them in the text, `</code>` included.",
        "",
        "vLLM (OpenAI-compatible server):",
        "",
        f"    vllm serve {out_dir} --reasoning-parser-plugin {os.path.join(out_dir, PARSER_FILE)} \\",
        f"      --reasoning-parser {reasoning_parser.PARSER_NAME}",
        "",
        "With the parser, a chat completion's `content` is the code alone and `reasoning` the rest of the answer",
        "(reasoning and intention, tags kept); the answer is `reasoning` with `content` put back right after its",
        f"first `<code>` ({PARSER_FILE} says why and how). Without it, `content` is the whole answer.",
        "",
        "transformers:",
        "",
        "    from transformers import AutoModelForCausalLM, AutoTokenizer",
        f"    tok = AutoTokenizer.from_pretrained({out_dir!r})",
        f"    model = AutoModelForCausalLM.from_pretrained({out_dir!r}, dtype=\"auto\")",
        "    ids = tok.apply_chat_template([{\"role\": \"user\", \"content\": \"...\"}], add_generation_prompt=True,",
        "                                  return_tensors=\"pt\")",
        "    print(tok.decode(model.generate(**ids, max_new_tokens=1024)[0, ids[\"input_ids\"].shape[1]:]))",
        "",
    ]
    if gguf:
        lines += ["llama.cpp (GGUF, `</code>` is its end of turn):", "",
                  f"    llama-server -m {os.path.join(out_dir, GGUF_FILE)} --jinja", ""]
    with open(os.path.join(directory, "README.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


def write_reasoning_parser(directory):
    """directory/sft_reasoning_parser.py: reasoning_parser.py's own source, so that vLLM loads it from the serving
    directory alone (it imports only vLLM and the standard library)."""
    with open(reasoning_parser.__file__, encoding="utf-8") as f:
        source = f.read()
    with open(os.path.join(directory, PARSER_FILE), "w", encoding="utf-8") as f:
        f.write(source)


# ---------------------------------------------------------------------------------------
# GGUF through llama.cpp's own tools


def gguf_chat_template(tokenizer):
    """The GGUF's chat template: the training prompt as llama-server's chat path tokenizes it (GGUF_CHAT_PREFIX)."""
    return chat_template(GGUF_CHAT_PREFIX[adds_bos(tokenizer)])


def gguf_vocabulary(out_dir, tokenizer):
    """How llama.cpp's converter will read the tokenizer written to out_dir: GGUF_SENTENCEPIECE (its
    tokenizer.model) or GGUF_BPE (a byte-level BPE tokenizer.json, as Qwen, Llama-3, DeepSeek-Coder and
    StarCoder2 ship); UserError for anything else, which it would not reproduce."""
    if os.path.isfile(os.path.join(out_dir, SENTENCEPIECE_MODEL)):
        return GGUF_SENTENCEPIECE
    if tokenizer_kind(tokenizer) == BYTE_LEVEL:
        return GGUF_BPE
    raise UserError("--gguf: this tokenizer has no tokenizer.model (a SentencePiece model) and is not byte-level "
                    "BPE, so llama.cpp cannot reproduce it and would show the model other prompts than it was "
                    "trained on; no GGUF written (export without --gguf, or prepare the tokenizer from a base that "
                    "ships its tokenizer.model)")


def _run_tool(argv, what, env=None):
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        output = proc.stderr or proc.stdout
        if "BPE pre-tokenizer was not recognized" in output:
            # convert_hf_to_gguf.py names llama.cpp's pre-tokenizer by the hash of the ids of a fixed text
            # (get_vocab_base_pre): an unknown hash means llama.cpp would split text differently
            found = re.search(r"chkhsh:\s*([0-9a-f]{64})", output)
            raise UserError(f"{what}: llama.cpp does not know this tokenizer's pre-tokenizer (hash "
                            f"{found.group(1) if found else '?'} is not in get_vocab_base_pre), so it would "
                            "tokenize prompts differently from training; no GGUF written (export without --gguf, "
                            "or use a llama.cpp whose converter lists the base model)")
        tail = [line for line in output.strip().splitlines() if line.strip()][-1:] or ["?"]
        raise UserError(f"{what} failed (exit {proc.returncode}): {tail[0][:300]}")
    return proc


def write_gguf(out_dir, tokenizer, dtype, llama_cpp_dir=None, python=None):
    """out_dir/model.gguf by llama.cpp's convert_hf_to_gguf.py, then </code> as EOT and the GGUF chat template
    (set_gguf_metadata).

    The converter reads a SentencePiece tokenizer from tokenizer.model + added_tokens.json and a byte-level
    BPE one from tokenizer.json (naming its pre-tokenizer by hash); BOS, EOS and whether BOS is added come
    from tokenizer.json / tokenizer_config.json / config.json. check_gguf proves the outcome.
    """
    vocabulary = gguf_vocabulary(out_dir, tokenizer)
    convert, gguf_py = llama_cpp_tools(llama_cpp_dir)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [gguf_py, os.environ.get("PYTHONPATH")])),
               NO_LOCAL_GGUF="")
    python = python or sys.executable
    raw = os.path.join(out_dir, ".converted.gguf")
    _run_tool([python, convert, out_dir, "--outfile", raw, "--outtype", GGUF_OUTTYPES[dtype]],
              "llama.cpp's convert_hf_to_gguf.py", env)
    # what gguf-py's gguf_new_metadata.py --chat-template ... --special-token eot </code> sets (gguf.Keys)
    set_gguf_metadata(raw, os.path.join(out_dir, GGUF_FILE), strings={"tokenizer.chat_template": gguf_chat_template(
        tokenizer)}, uint32s={"tokenizer.ggml.eot_token_id": tokenizer.convert_tokens_to_ids(CLOSE["code"])})
    os.remove(raw)
    return dict(check_gguf(os.path.join(out_dir, GGUF_FILE), tokenizer), vocabulary=vocabulary)


# GGUF value types (gguf.GGUFValueType) -> struct format of one scalar; 8 is STRING, 9 is ARRAY
_GGUF_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_GGUF_UINT32, _GGUF_STRING, _GGUF_ARRAY = 4, 8, 9
_GGUF_HEADER = "<4sIQQ"  # magic, version, tensor count, key/value count


class _GGUFLayout:
    """Where things are in a (little-endian) GGUF: header, then key/values, tensor infos, aligned tensor data.

    What gguf-py's GGUFReader parses too, but it builds numpy views for every array element: on a 152k
    vocabulary (Qwen's, with as many merges) that takes 8 s of CPU; this 0.3 s. Used to read the metadata
    (read_gguf_metadata) and to rewrite a few keys without touching the tensors (set_gguf_metadata).
    """

    def __init__(self, data, path):
        import struct

        self.data, self.pos = data, struct.calcsize(_GGUF_HEADER)
        magic, self.version, self.n_tensors, n_kv = struct.unpack_from(_GGUF_HEADER, data, 0)
        if magic != b"GGUF":
            raise UserError(f"{path}: not a GGUF file")
        self.kv = {}  # key -> (value, start, end) of the whole key/value record
        for _ in range(n_kv):
            start = self.pos
            key = self._text()
            self.kv[key] = (self._value(self._take("I")[0]), start, self.pos)
        self.kv_end = self.pos

    def _take(self, fmt):  # a tuple of values
        import struct

        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return values

    def _text(self):
        (n,) = self._take("Q")
        self.pos += n
        return bytes(self.data[self.pos - n:self.pos]).decode("utf-8")

    def _value(self, kind):
        if kind == _GGUF_STRING:
            return self._text()
        if kind == _GGUF_ARRAY:
            item, n = self._take("IQ")
            if item in _GGUF_SCALARS:
                return list(self._take(f"{n}{_GGUF_SCALARS[item]}"))
            return [self._value(item) for _ in range(n)]
        return self._take(_GGUF_SCALARS[kind])[0]

    def tensor_data_start(self):
        """Offset of the tensor data: past the tensor infos (name, dims, type, offset), aligned."""
        self.pos = self.kv_end
        for _ in range(self.n_tensors):
            self._text()
            (n_dims,) = self._take("I")
            self._take(f"{n_dims}QIQ")
        self.ti_end = self.pos
        alignment = self.kv.get("general.alignment", (32,))[0]
        return -(-self.pos // alignment) * alignment


def _open_gguf(path):
    import mmap

    with open(path, "rb") as f:
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)


def read_gguf_metadata(path):
    """{key: value} of a GGUF's metadata (arrays of numbers as lists, strings as str)."""
    data = _open_gguf(path)
    try:
        return {key: value for key, (value, _, _) in _GGUFLayout(data, path).kv.items()}
    finally:
        data.close()


def set_gguf_metadata(src, dst, strings=None, uint32s=None):
    """Copy the GGUF src to dst with these string and uint32 keys set (replaced in place, else appended).

    What gguf-py's gguf_new_metadata.py does for --chat-template and --special-token, without its 8 s of
    GGUFReader on a 152k vocabulary: the other key/values, the tensor infos and the tensor data are copied
    as bytes (tensor offsets count from the start of the data, which is re-aligned).
    """
    import shutil
    import struct

    def text(value):
        raw = value.encode("utf-8")
        return struct.pack("<Q", len(raw)) + raw

    new = {key: text(key) + struct.pack("<I", _GGUF_STRING) + text(value) for key, value in (strings or {}).items()}
    new.update({key: text(key) + struct.pack("<II", _GGUF_UINT32, value)
                for key, value in (uint32s or {}).items()})
    data = _open_gguf(src)
    try:
        layout = _GGUFLayout(data, src)
        data_start = layout.tensor_data_start()
        records = [new.pop(key, data[start:end]) for key, (_, start, end) in layout.kv.items()]
        records += new.values()
        alignment = layout.kv.get("general.alignment", (32,))[0]
        with open(dst, "wb") as out:
            out.write(struct.pack(_GGUF_HEADER, b"GGUF", layout.version, layout.n_tensors, len(records)))
            for record in records:
                out.write(record)
            out.write(data[layout.kv_end:layout.ti_end])
            out.write(b"\0" * (-out.tell() % alignment))
        with open(src, "rb") as f, open(dst, "ab") as out:
            f.seek(data_start)
            shutil.copyfileobj(f, out, 16 << 20)
    finally:
        data.close()


def read_gguf_tokenizer(path):
    """The tokenizer fields of a GGUF: tokens, token types, model, pre, bos/eos/eot ids, add_bos, chat template
    (None where a field is absent)."""
    meta = read_gguf_metadata(path)
    names = {"tokens": "tokens", "types": "token_type", "model": "model", "pre": "pre", "bos": "bos_token_id",
             "eos": "eos_token_id", "eot": "eot_token_id", "add_bos": "add_bos_token"}
    fields = {name: meta.get(f"tokenizer.ggml.{key}") for name, key in names.items()}
    return dict(fields, chat_template=meta.get("tokenizer.chat_template"))


def check_gguf(path, tokenizer):
    """The GGUF's vocabulary is the tokenizer's id for id; the tags are text (not control) tokens and the
    tokenizer's special tokens control ones; it stops at the base's EOS and at </code>; it adds BOS exactly
    when the tokenizer does (and has that BOS); its chat template is gguf_chat_template's. Returns a summary
    dict, UserError naming the first problem."""
    gguf = read_gguf_tokenizer(path)
    for name in ("tokens", "types", "eos", "eot", "chat_template"):
        if gguf[name] is None:
            raise UserError(f"{path}: no tokenizer {name} field")
    tokens, types = gguf["tokens"], gguf["types"]
    ours = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    wrong = [i for i, t in enumerate(ours) if i >= len(tokens) or tokens[i] != t]
    if wrong:
        i = wrong[0]
        raise UserError(f"{path}: token {i} is {tokens[i] if i < len(tokens) else None!r}, the tokenizer's is "
                        f"{ours[i]!r} ({len(wrong)} ids differ)")
    tags = tokenizer.convert_tokens_to_ids(list(TAGS))
    control = [t for t, i in zip(TAGS, tags) if types[i] != GGUF_USER_DEFINED]
    if control:
        raise UserError(f"{path}: {control[0]} has token type {types[tags[TAGS.index(control[0])]]}, not "
                        "user-defined: llama-server would drop its text")
    shown = [t for t in (tokenizer.eos_token, tokenizer.bos_token) if t is not None
             and types[tokenizer.convert_tokens_to_ids(t)] != GGUF_CONTROL]
    if shown:
        raise UserError(f"{path}: {shown[0]} is not a control token: llama-server would show its text")
    code = tokenizer.convert_tokens_to_ids(CLOSE["code"])
    if gguf["eos"] != tokenizer.eos_token_id or gguf["eot"] != code:
        raise UserError(f"{path}: stops at eos {gguf['eos']} / eot {gguf['eot']}, expected "
                        f"{tokenizer.eos_token_id} / {code}")
    bos = adds_bos(tokenizer)
    # llama.cpp's default, where the converter wrote no add_bos_token, depends on the vocabulary type: say it
    if gguf["add_bos"] is None or bool(gguf["add_bos"]) != bos or (bos and gguf["bos"] != tokenizer.bos_token_id):
        raise UserError(f"{path}: adds BOS {gguf['add_bos']} (id {gguf['bos']}), but the training prompts "
                        + (f"start with BOS {tokenizer.bos_token_id}" if bos else "have no BOS"))
    if gguf["chat_template"] != gguf_chat_template(tokenizer):
        raise UserError(f"{path}: the chat template is not the one export.py wrote")
    return {"file": os.path.basename(path), "tokens": len(tokens), "eos_token_id": gguf["eos"],
            "eot_token_id": gguf["eot"], "add_bos": bos, "tokenizer_model": gguf["model"],
            "pre_tokenizer": gguf["pre"], "chat_template_prefix": GGUF_CHAT_PREFIX[bos], "bytes": os.path.getsize(path)}


# ---------------------------------------------------------------------------------------
# the stage


def write_serving_dir(model, tokenizer, out_dir, source, mode, base_model=None, gguf=False, llama_cpp_dir=None,
                      overwrite=False):
    """Write and check the serving directory (atomically); returns its sft_export.json content."""
    dtype = _dtype_name(model)
    if gguf and dtype not in GGUF_OUTTYPES:
        raise UserError(f"--gguf: no GGUF type for weights in {dtype}")
    if gguf:
        llama_cpp_tools(llama_cpp_dir)  # a missing converter is said before any weights are written
    with atomic_output_dir(out_dir, overwrite=overwrite) as tmp:
        model.save_pretrained(tmp)
        has_sp = write_tokenizer_files(tokenizer, tmp)
        write_generation_config(tmp, tokenizer)
        write_reasoning_parser(tmp)
        stops = check_serving_dir(tmp, tokenizer)
        meta = {"source": os.path.abspath(source), "mode": mode, "base_model": base_model, "dtype": dtype,
                "template_version": TEMPLATE_VERSION, "tag_ids": dict(zip(TAGS, tokenizer.convert_tokens_to_ids(
                    list(TAGS)))), "stop_ids": stops, "sentencepiece_model": has_sp,
                "chat_template_checked": True, "gguf": None,
                "reasoning_parser": {"file": PARSER_FILE, "name": reasoning_parser.PARSER_NAME}}
        if gguf:
            meta["gguf"] = write_gguf(tmp, tokenizer, dtype, llama_cpp_dir)
        write_readme(tmp, out_dir, meta)
        write_json(os.path.join(tmp, EXPORT_META), meta)
    return meta


def export(model_dir, out_dir, base_model=None, dtype="auto", gguf=False, llama_cpp_dir=None, overwrite=False):
    """The export stage: a training output -> a checked serving directory. Returns sft_export.json's content."""
    from reasoning_sft.artifacts import check_output_dir

    check_output_dir(out_dir, overwrite)
    if dtype != "auto" and dtype not in DTYPES:
        raise UserError(f"--dtype must be auto or one of {', '.join(DTYPES)}")
    mode, train_config = training_output(model_dir)
    if gguf:
        llama_cpp_tools(llama_cpp_dir)
    tokenizer = load_tokenizer_for_serving(model_dir)
    model, base = load_merged_model(model_dir, mode, train_config, tokenizer, base_model, dtype)
    return write_serving_dir(model, tokenizer, out_dir, model_dir, mode, base, gguf, llama_cpp_dir, overwrite)
