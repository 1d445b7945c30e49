"""generation_config.json: where a trained model stops, written beside its weights and tokenizer.

The trainers write it at the end of a run and export.py writes it into a serving directory;
transformers' generate() and the serving engines (vLLM, TGI) read their stop tokens from it.
"""

import os

from reasoning_sft.data.tokenizer import save_tokenizer

GENERATION_CONFIG = "generation_config.json"


def serving_stop_ids(tokenizer):
    """Where a served model stops: EOS, which training puts right after </code> in every example.

    Not </code> itself: vLLM leaves the text of the token it stopped at out of its answer, so a server
    that stopped at </code> would return code with no closing tag. Stopping one token later, at EOS
    (whose text no engine shows), every engine's answer ends with "</code>". generate() below still
    stops at either (stop_ids), and the GGUF also ends at </code> (llama-server keeps its text).
    """
    return [tokenizer.eos_token_id]


def write_generation_config(output_dir, tokenizer):
    """Write OUTPUT_DIR/generation_config.json whose stop token is EOS (serving_stop_ids).

    transformers' generate() and the serving stacks (vLLM, TGI) read their stop tokens from
    this file. Other fields of an existing file (the base model's sampling defaults) are kept.
    """
    from transformers import GenerationConfig

    from reasoning_sft.artifacts import write_file_atomic

    path = os.path.join(output_dir, GENERATION_CONFIG)
    config = GenerationConfig.from_pretrained(output_dir) if os.path.exists(path) else GenerationConfig()
    config.bos_token_id = tokenizer.bos_token_id
    config.eos_token_id = serving_stop_ids(tokenizer)
    config.pad_token_id = tokenizer.pad_token_id
    config._from_model_config = False  # else generate() may rebuild it from config.json (EOS only)
    write_file_atomic(path, lambda f: f.write(config.to_json_string(use_diff=True)))
    return path


def save_tokenizer_and_generation_config(output_dir, tokenizer):
    """What a model directory needs beside its weights to be served as trained: the tokenizer
    (with its chat template and SentencePiece model) and generation_config.json."""
    save_tokenizer(tokenizer, output_dir)
    return write_generation_config(output_dir, tokenizer)
