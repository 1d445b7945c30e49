"""Build a tiny Llama-architecture model and a Llama-style tokenizer locally, offline.

Tests and `make demo` use it instead of downloading CodeLlama. The tokenizer is a
SentencePiece model trained the way Llama-2/CodeLlama's is (BPE with byte fallback, "▁" word
prefix, BOS added) and shipped as they ship it: tokenizer.model plus a legacy-mode
tokenizer.json, so it reproduces the stray-"▁"-after-special-tokens pitfall that stage 1 must
remove, and llama.cpp's converter reads it as it reads CodeLlama's.

    python -m reasoning_sft.demo.tiny_llama --corpus examples/sample.jsonl --out_dir demo_out/tiny-llama

--pretrain_epochs N (what `make demo` uses) then trains it as a plain causal LM on the
corpus' text, without tags (reasoning_sft/demo/pretrain.py), so that, like a real base model,
it knows the language before fine-tuning teaches it the format. Off by default: the
tests' fixtures build an untrained model in a second.
"""

import argparse
import os

from reasoning_sft.artifacts import atomic_output_dir, write_json
from reasoning_sft.data.records import read_records
from reasoning_sft.data.tokenizer import SENTENCEPIECE_MODEL
from reasoning_sft.errors import UserError, run_cli


def corpus_texts(records):
    for r in records:
        if isinstance(r, dict):
            for value in r.values():
                if isinstance(value, str):
                    yield value


def build_tokenizer(texts, out_dir, vocab_size=2048):
    """A SentencePiece BPE model trained like Llama-2's / CodeLlama's, saved as both files they ship.

    tokenizer.model is the SentencePiece model (what llama.cpp's converter reads); tokenizer.json is
    transformers' conversion of it in legacy mode, like the hub's CodeLlama tokenizer.json. Llama's
    options: byte fallback, digits split, "▁" dummy prefix, no normalization, whitespace kept. Each
    line is a training sentence, so "\n" is no piece and encodes as the byte <0x0A>, as in Llama.
    """
    import io
    import json

    import sentencepiece as spm
    from tokenizers import Tokenizer, processors
    from transformers import AutoTokenizer

    lines = [line for text in texts for line in text.split("\n") if line.strip()]
    # every character of the corpus gets a piece (besides the 256 bytes and <unk>, <s>, </s>)
    needed = len(set("".join(lines)) | {"▁"}) + 256 + 3
    if vocab_size < needed:
        raise UserError(f"--vocab_size {vocab_size} is too small for this corpus: its {needed - 259} characters, "
                        f"the 256 byte pieces and 3 specials need at least {needed}")
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, vocab_size=vocab_size, model_type="bpe",
        byte_fallback=True, split_digits=True, add_dummy_prefix=True, normalization_rule_name="identity",
        remove_extra_whitespaces=False, allow_whitespace_only_pieces=True, character_coverage=1.0,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, num_threads=1, minloglevel=2, max_sentence_length=1 << 16)
    with open(os.path.join(out_dir, SENTENCEPIECE_MODEL), "wb") as f:
        f.write(model.getvalue())
    # transformers converts the SentencePiece model (it needs protobuf for that); the pipeline around it is
    # then written as the hub's Llama-2 / CodeLlama tokenizer.json has it: the legacy normalizer, no
    # pre-tokenizer, "<unk>" for pieces the model cannot make, BOS added
    backend = AutoTokenizer.from_pretrained(out_dir, tokenizer_class="LlamaTokenizer").backend_tokenizer
    state = json.loads(backend.to_str())
    state["model"]["unk_token"] = "<unk>"
    state["normalizer"] = {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"},
                                                              {"type": "Replace", "pattern": {"String": " "},
                                                               "content": "▁"}]}
    state["pre_tokenizer"] = None
    tokenizer = Tokenizer.from_str(json.dumps(state))
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                             special_tokens=[("<s>", 1)])
    tokenizer.save(os.path.join(out_dir, "tokenizer.json"))
    write_json(os.path.join(out_dir, "tokenizer_config.json"), {
        "tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
        "add_bos_token": True, "add_eos_token": False, "legacy": True, "model_max_length": 4096,
    })
    return tokenizer.get_vocab_size()


def build_model(out_dir, vocab_size, hidden=64, layers=2, heads=2, kv_heads=1, seed=0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=hidden * 3,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                         max_position_embeddings=4096, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    model.save_pretrained(out_dir)


def build(corpus, out_dir, vocab_size=2048, overwrite=True, pretrain_epochs=0, pretrain_kwargs=None,
          eval_corpus=None, **model_kwargs):
    """Tokenizer + model in `out_dir` (replaced atomically); pretrain_epochs > 0 also pre-trains it.

    Returns the pre-training summary (pretrain.pretrain's), or None without pre-training.
    """
    records = read_records(corpus)
    texts = list(corpus_texts(records))
    summary = None
    with atomic_output_dir(out_dir, overwrite=overwrite) as tmp:
        n = build_tokenizer(texts, tmp, vocab_size)
        build_model(tmp, n, **model_kwargs)
        if pretrain_epochs > 0:
            from reasoning_sft.demo.pretrain import pretrain
            eval_records = read_records(eval_corpus) if eval_corpus else None
            summary = pretrain(tmp, records, epochs=pretrain_epochs, eval_records=eval_records,
                               **(pretrain_kwargs or {}))
    return summary


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", required=True, help="raw JSON/JSONL whose strings train the tokenizer")
    p.add_argument("--out_dir", required=True)
    p.add_argument("--vocab_size", type=int, default=2048)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=2,
                   help="attention heads; keep hidden/heads >= 32: vLLM's CPU kernels have no head size 16")
    p.add_argument("--kv_heads", type=int, default=1)
    p.add_argument("--pretrain_epochs", type=float, default=0,
                   help="then pre-train on the corpus' text without tags for this many epochs (0: random weights)")
    p.add_argument("--pretrain_lr", type=float, default=3e-3)
    p.add_argument("--pretrain_seq_len", type=int, default=256, help="tokens per packed row")
    p.add_argument("--pretrain_batch_size", type=int, default=16, help="rows per step")
    p.add_argument("--pretrain_eval", help="records never trained on: their text's loss is measured after every epoch")
    args = p.parse_args(argv)
    if args.pretrain_epochs < 0:
        raise UserError("--pretrain_epochs must be >= 0")
    too_small = [f"--{name}" for name in ("vocab_size", "hidden", "layers", "heads", "kv_heads", "pretrain_seq_len",
                                          "pretrain_batch_size") if getattr(args, name) < 1]
    if too_small:
        raise UserError(f"{', '.join(too_small)} must be >= 1")
    if args.hidden % args.heads or args.heads % args.kv_heads:
        raise UserError("--hidden must be a multiple of --heads, and --heads a multiple of --kv_heads")
    pretrain_kwargs = {"lr": args.pretrain_lr, "seq_len": args.pretrain_seq_len, "batch_size": args.pretrain_batch_size}
    s = build(args.corpus, args.out_dir, args.vocab_size, pretrain_epochs=args.pretrain_epochs,
              pretrain_kwargs=pretrain_kwargs, eval_corpus=args.pretrain_eval, hidden=args.hidden, layers=args.layers,
              heads=args.heads, kv_heads=args.kv_heads)
    done = ""
    if s is not None:
        done = (f", pre-trained {s['epochs']:g} epochs ({s['steps']} steps, {s['tokens_per_epoch']} tokens/epoch), "
                f"loss {s['first_loss']:.2f} -> {s['last_loss']:.2f}"
                + (f", held-out {s['last_eval_loss']:.2f}" if s["last_eval_loss"] is not None else "")
                + f" in {s['seconds']:.0f}s")
    print(f"tiny Llama model + tokenizer -> {args.out_dir}{done}")
    return 0


if __name__ == "__main__":
    run_cli(main)
