"""Run by test_openai_api.py with .venv-serve's python: the exported parser inside vLLM's own Parser, no engine.

    parser_in_vllm.py SERVE_DIR ANSWERS.json  ->  prints one JSON row per answer

vLLM loads the plugin file from the serving directory (as --reasoning-parser-plugin does), composes it into
the Parser its chat server uses, and each answer (text the model could write, tokenized by the served
tokenizer) goes through Parser.parse (non-streaming) and Parser.parse_delta token by token (streaming,
the last call finished=True, which flushes what the parser held back).
"""

import json
import os
import sys

from transformers import AutoTokenizer
from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest
from vllm.parser.parser_manager import ParserManager
from vllm.reasoning.abs_reasoning_parsers import ReasoningParserManager

PARSER_FILE, PARSER_NAME = "sft_reasoning_parser.py", "reasoning_sft"


def main(serve_dir, answers_path):
    ReasoningParserManager.import_reasoning_parser(os.path.join(serve_dir, PARSER_FILE))
    tokenizer = AutoTokenizer.from_pretrained(serve_dir)
    parser_cls = ParserManager.get_parser(reasoning_parser_name=PARSER_NAME, tokenizer=tokenizer)
    request = ChatCompletionRequest(model="sft", messages=[{"role": "user", "content": "x"}])
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "x"}], add_generation_prompt=True,
                                           return_dict=True)["input_ids"]
    with open(answers_path) as f:
        answers = json.load(f)
    for text in answers:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        reasoning, content, _ = parser_cls(tokenizer).parse(text, request, model_output_token_ids=ids)
        parser, seen, deltas = parser_cls(tokenizer), "", []
        for k in range(len(ids)):  # the text each token adds, as vLLM's incremental detokenizer gives it
            now = tokenizer.decode(ids[:k + 1], skip_special_tokens=True)
            delta = parser.parse_delta(now[len(seen):], [ids[k]], request, prompt_token_ids=prompt,
                                       finished=k == len(ids) - 1)
            seen = now
            if delta is not None:
                deltas.append([delta.reasoning, delta.content])
        print(json.dumps({"text": text, "decoded": seen, "reasoning": reasoning, "content": content,
                          "deltas": deltas}))


if __name__ == "__main__":
    main(*sys.argv[1:])
