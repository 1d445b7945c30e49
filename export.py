"""Stage 5: a training output -> one serving directory that vLLM, TGI, transformers and llama.cpp run as trained.

    python export.py --model_dir demo_out/full --out_dir demo_out/serve --gguf
    python export.py --model_dir out/lora --base_model codellama/CodeLlama-7b-Python-hf --out_dir out/serve \
        --dtype bf16

--model_dir is a trainer's --output_dir: full fine-tuning weights, or a LoRA adapter, which is
merged into its base (--base_model, default the one the run trained on). The directory holds the
merged weights (--dtype, default the weights' own), the tokenizer with its chat template (and
SentencePiece model, where the base has one), generation_config.json that stops at EOS and
</code>, a README with the commands that serve it, and sft_export.json. --gguf also writes
model.gguf through llama.cpp's own convert_hf_to_gguf.py (--llama_cpp DIR: a llama.cpp source
tree; default the one `make serve-env` builds), with </code> as end of turn and a chat template
for llama.cpp's tokenizer; it takes SentencePiece tokenizers (tokenizer.model) and byte-level BPE
ones (Qwen2.5/Qwen3, Llama-3, DeepSeek-Coder, StarCoder2: tokenizer.json) whose pre-tokenizer
llama.cpp knows. Everything is checked before the directory is renamed into place.
"""

import argparse

from reasoning_sft.errors import add_verbose_flag, run_cli
from reasoning_sft.serve.export import DTYPES, export


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_dir", required=True, help="a trainer's --output_dir (full weights or a LoRA adapter)")
    p.add_argument("--base_model", help="LoRA only: the base model (default: the run's --model_name)")
    p.add_argument("--out_dir", required=True, help="the serving directory to write")
    p.add_argument("--dtype", default="auto", choices=["auto", *DTYPES], help="weights' dtype (auto: as trained)")
    p.add_argument("--gguf", action="store_true", help="also write model.gguf with llama.cpp's converter")
    p.add_argument("--llama_cpp", help="llama.cpp source tree with convert_hf_to_gguf.py and gguf-py "
                                       "(default: the one `make serve-env` builds)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out_dir")
    add_verbose_flag(p)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    meta = export(args.model_dir, args.out_dir, base_model=args.base_model, dtype=args.dtype, gguf=args.gguf,
                  llama_cpp_dir=args.llama_cpp, overwrite=args.overwrite)
    gguf = meta["gguf"]
    print(f"serving dir -> {args.out_dir}: {meta['mode']} model in {meta['dtype']}"
          + (f" (merged into {meta['base_model']})" if meta["base_model"] else "")
          + f", stops at ids {meta['stop_ids']}, chat template checked"
          + (f"; {gguf['file']} ({gguf['bytes'] / 2**20:.1f} MiB, eot {gguf['eot_token_id']})" if gguf else ""))
    return 0


if __name__ == "__main__":
    run_cli(main)
