"""Build a tiny Llama-architecture model and a Llama-style tokenizer locally, offline.

Tests and `make demo` use it instead of downloading CodeLlama. The tokenizer is built the
way Llama-2/CodeLlama's tokenizer.json is (BPE with byte fallback, "▁" word prefix, BOS
added, legacy mode), so it reproduces the stray-"▁"-after-special-tokens pitfall that
stage 1 must remove.

    python -m reasoning_sft.tiny_llama --corpus examples/sample.jsonl --out_dir demo_out/tiny-llama

--pretrain_epochs N (what `make demo` uses) then trains it as a plain causal LM on the
corpus' text, without tags (reasoning_sft/pretrain.py), so that, like a real base model,
it knows the language before fine-tuning teaches it the format. Off by default: the
tests' fixtures build an untrained model in a second.
"""

import argparse
import os

from .artifacts import atomic_output_dir, write_json
from .errors import UserError, run_cli
from .records import read_records

SPECIALS = ["<unk>", "<s>", "</s>"]  # ids 0, 1, 2 as in Llama
BYTE_TOKENS = [f"<0x{i:02X}>" for i in range(256)]


def corpus_texts(records):
    for r in records:
        if isinstance(r, dict):
            for value in r.values():
                if isinstance(value, str):
                    yield value


def build_tokenizer(texts, out_dir, vocab_size=2048):
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    # learn word-level merges ("▁def", "▁return"), newline kept apart like Llama's <0x0A>
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex("\n"), behavior="isolated"),
        pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True),
    ])
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS + BYTE_TOKENS,
                                  show_progress=False, max_token_length=12)
    tok.train_from_iterator(texts, trainer)
    # then the exact Llama-2 pipeline: legacy normalizer, no pre-tokenizer
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.pre_tokenizer = None
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", 1)])
    tok.save(os.path.join(out_dir, "tokenizer.json"))
    write_json(os.path.join(out_dir, "tokenizer_config.json"), {
        "tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
        "add_bos_token": True, "add_eos_token": False, "legacy": True, "model_max_length": 4096,
    })
    return tok.get_vocab_size()


def build_model(out_dir, vocab_size, hidden=64, layers=2, heads=4, kv_heads=2, seed=0):
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
            from .pretrain import pretrain
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
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv_heads", type=int, default=2)
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
