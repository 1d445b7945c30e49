"""Stage 1: the base model's tokenizer with the six reasoning/intention/code tags and a pad token.

    python prepare_llamatokenizer.py --model codellama/CodeLlama-7b-Python-hf --out_dir tokenizer
    python prepare_llamatokenizer.py --model Qwen/Qwen2.5-Coder-7B --out_dir tokenizer
    python prepare_llamatokenizer.py --model demo_out/tiny-llama --out_dir demo_out/tokenizer

Takes SentencePiece BPE tokenizers (Llama-2, CodeLlama, Mistral) and byte-level BPE ones (Qwen2.5, Qwen2.5-Coder,
Qwen3, Llama-3.x, DeepSeek-Coder, StarCoder2), with a BOS the tokenizer adds, one it never adds, or none; the
tokenizer must have an EOS. Anything else (WordPiece, Unigram, ...) is refused in one line, nothing written.

Writes the tokenizer plus sft_tokenizer.json (base model, tag ids, vocabulary fingerprint)
that later stages check. Fails if a tag is not one id or a stray space mark ("▁", "Ġ") follows a
tag, or if a byte-level tokenizer no longer encodes as the base's tokenizer.json. The saved
tokenizer carries a chat template that renders one user message as the training prompt (the base's
own special tokens, i.e. BOS where it adds one, + instruction + "\n\n<reasoning>", the same ids), so
a serving stack builds the prompt that the model was trained on. The pad token is the base's own
unless that is EOS or missing: then a new "<pad>" (EOS must stay a learned target).
"""

import argparse
import os

from reasoning_sft.artifacts import (
    TOKENIZER_META,
    atomic_output_dir,
    check_output_dir,
    load_tokenizer_files,
    vocab_fingerprint,
    write_json,
)
from reasoning_sft.data.tokenizer import (
    BYTE_LEVEL,
    TOKENIZER_JSON,
    add_chat_template,
    add_tags_and_pad,
    base_file,
    encoding_mismatch,
    load_base_tokenizer,
    save_tokenizer,
    tokenizer_meta,
    verify_chat_template,
    verify_tokenizer,
)
from reasoning_sft.errors import UserError, add_verbose_flag, run_cli


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True,
                   help="hub id or local directory of the base model/tokenizer: SentencePiece BPE (Llama-2, CodeLlama) "
                   "or byte-level BPE (Qwen2.5/Qwen3, Llama-3, DeepSeek-Coder, StarCoder2), with an EOS")
    p.add_argument("--out_dir", required=True, help="where to write the prepared tokenizer")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out_dir")
    add_verbose_flag(p)
    return p.parse_args(argv)


def main(argv=None):
    from reasoning_sft.artifacts import load_prepared_tokenizer

    args = parse_args(argv)
    check_output_dir(args.out_dir, args.overwrite)
    tokenizer = load_base_tokenizer(args.model)
    added = add_tags_and_pad(tokenizer)
    add_chat_template(tokenizer)  # replaces a base model's own template: this one is the training format
    with atomic_output_dir(args.out_dir, overwrite=args.overwrite) as tmp:
        save_tokenizer(tokenizer, tmp)  # with the base's tokenizer.model, where it has one (llama.cpp needs it)
        # verify what a later stage will load, not the object in memory
        saved = load_tokenizer_files(tmp)
        verify_tokenizer(saved)
        verify_chat_template(saved)
        meta = tokenizer_meta(saved, args.model, vocab_fingerprint(saved))
        published = base_file(args.model, TOKENIZER_JSON) if meta["kind"] == BYTE_LEVEL else None
        problem = encoding_mismatch(saved, published) if published else None
        if problem:
            raise UserError(f"the saved tokenizer does not encode as the base's: {problem}")
        write_json(os.path.join(tmp, TOKENIZER_META), meta)
    load_prepared_tokenizer(args.out_dir)  # the round trip every later stage does
    print(f"tokenizer -> {args.out_dir}: {meta['vocab_size']} tokens, added {added or 'nothing (already present)'}, "
          f"pad={meta['pad_token']!r} ({meta['pad_token_id']}), fingerprint {meta['fingerprint']}")
    return 0


if __name__ == "__main__":
    run_cli(main)
