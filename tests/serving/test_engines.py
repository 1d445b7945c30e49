"""Real servers on the exported model: vLLM's OpenAI-compatible server and llama.cpp's llama-server.

Each test sends the chat requests a user's client sends (default parameters but for greedy decoding),
and checks, for every prompt, what issue "Serve what you trained" tabulated: the prompt the server
built is the training prompt id for id; the greedy answer is transformers' (fp32 on both sides); the
server stopped by itself at </code>; the text it returned shows the tags, so a client can split
reasoning, intention and code. The servers are the tier's (conftest.py: vllm_server runs the export's
reasoning parser, so its answer is rebuilt from `reasoning` and `content`).
"""

import pytest

from reasoning_sft.data.template import CLOSE, OPEN
from reasoning_sft.serve.reasoning_parser import join_answer

from .conftest import MAX_NEW_TOKENS, N_PROMPTS, request

pytestmark = pytest.mark.serving

# the answer follows the prompt's <reasoning>: these five tags are in every complete answer's text
ANSWER_TAGS = [CLOSE["reasoning"], OPEN["intention"], CLOSE["intention"], OPEN["code"], CLOSE["code"]]


def test_the_trained_model_answers_in_the_format_under_transformers(reference):
    """The premise of the tier: transformers' greedy answers are complete, so the engines can be held to them."""
    assert len(reference) == N_PROMPTS
    for row in reference:
        assert row["chat_ids"] == row["training_ids"]
        assert [tag in row["text"] for tag in ANSWER_TAGS] == [True] * 5, row["text"]
        assert row["text"].endswith(CLOSE["code"]), row["text"][-200:]


def table(engine, rows):
    cells = {k: sum(r[k] for r in rows) for k in ("prompt", "greedy", "stop", "tags")}
    n = len(rows)
    print(f"\n{engine}: prompt ids = training ids {cells['prompt']}/{n}, greedy = transformers {cells['greedy']}/{n}, "
          f"stops at </code> by itself {cells['stop']}/{n}, tags in the text {cells['tags']}/{n}")
    return cells


def chat_request(instruction, **extra):
    """An OpenAI chat request as a client sends it: one user message, greedy, no stop strings."""
    return {"model": "sft", "messages": [{"role": "user", "content": instruction}], "temperature": 0,
            "max_tokens": MAX_NEW_TOKENS, **extra}


def test_vllm_server_prompts_answers_and_stops_as_trained(vllm_server, reference):
    # the server runs the export's reasoning parser: the answer is its two fields joined again (losslessly,
    # test_openai_api.py); return_token_ids only adds the ids to the answer
    rows = []
    for ref in reference:
        answer = request(f"{vllm_server}/v1/chat/completions", chat_request(ref["instruction"], return_token_ids=True))
        choice = answer["choices"][0]
        text = join_answer(choice["message"].get("reasoning"), choice["message"]["content"])
        rows.append({"prompt": answer["prompt_token_ids"] == ref["training_ids"],
                     "greedy": choice["token_ids"] == ref["ids"] and text == ref["text"],
                     "stop": choice["finish_reason"] == "stop" and text.endswith(CLOSE["code"]),
                     "tags": all(tag in text for tag in ANSWER_TAGS)})
    assert table("vLLM", rows) == {k: N_PROMPTS for k in ("prompt", "greedy", "stop", "tags")}


def test_llama_server_prompts_answers_and_stops_as_trained(llama_server, reference):
    base, rows = llama_server, []
    for ref in reference:
        messages = chat_request(ref["instruction"])["messages"]
        # the chat path's own two steps: render the GGUF's template, tokenize with BOS and special tokens
        rendered = request(f"{base}/apply-template", {"messages": messages})["prompt"]
        prompt = request(f"{base}/tokenize", {"content": rendered, "add_special": True,
                                              "parse_special": True})["tokens"]
        # logprobs only adds each generated token (with its id) to the answer
        answer = request(f"{base}/v1/chat/completions", chat_request(ref["instruction"], logprobs=True,
                                                                     top_logprobs=1))
        choice = answer["choices"][0]
        text = choice["message"]["content"]
        answer_ids = [token["id"] for token in choice["logprobs"]["content"]]
        # the GGUF ends at </code> (its end of turn), one token before transformers' EOS
        rows.append({"prompt": prompt == ref["training_ids"],
                     "greedy": text == ref["text"] and answer_ids == ref["ids"][:-1],
                     "stop": choice["finish_reason"] == "stop" and text.endswith(CLOSE["code"]),
                     "tags": all(tag in text for tag in ANSWER_TAGS)})
    assert table("llama.cpp", rows) == {k: N_PROMPTS for k in ("prompt", "greedy", "stop", "tags")}
