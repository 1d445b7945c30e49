"""Every model family's export, served: vLLM and llama-server build the training prompt ids.

For each byte-level BPE family of reasoning_sft/demo/families.py (Qwen2.5-Coder tied and untied, Qwen3,
Llama-3.1, DeepSeek-Coder, StarCoder2: the published tokenizer and a tiny random model), conftest's
family_export trains one step and runs export.py --gguf. Each engine is started once per family and asked
for each training prompt through its chat path; the prompt ids it built must be the ones encode_dataset.py
wrote (input_ids up to and including <reasoning>) on every prompt. The model is untrained: what it answers
is not the point here (test_engines.py holds the trained CodeLlama-format model to transformers' answers).
"""

import json
import time

import pytest
from conftest import BPE_FAMILIES, family_training_prompts

from .conftest import free_port, request, running_server

pytestmark = pytest.mark.serving


def check_prompts(engine, family, prompts, prompt_ids):
    """Compare the engine's prompt ids with the training ids; print the row docs/serving.md tabulates."""
    same = [prompt_ids(instruction) == ids for instruction, ids in prompts]
    print(f"\n{engine} on {family}: prompt ids = training ids {sum(same)}/{len(same)}")
    return same


@pytest.mark.parametrize("family", BPE_FAMILIES)
def test_vllm_builds_the_training_prompts(family, tools, family_export, family_encoded, tmp_path):
    served, prompts = family_export(family), family_training_prompts(family_encoded(family))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # eager: no torch.compile warm-up (minutes on 2 cores), which only speeds up generation
    argv = [tools["serve_python"], "-m", "vllm.entrypoints.openai.api_server", "--model", served,
            "--served-model-name", "sft", "--host", "127.0.0.1", "--port", port, "--dtype", "float32",
            "--max-model-len", "1024", "--enforce-eager"]

    def prompt_ids(instruction):
        # the chat path a client takes; return_token_ids adds the prompt's ids to the answer
        answer = request(f"{base}/v1/chat/completions", {
            "model": "sft", "messages": [{"role": "user", "content": instruction}], "temperature": 0,
            "max_tokens": 1, "return_token_ids": True})
        return answer["prompt_token_ids"]

    start = time.monotonic()
    with running_server(argv, f"{base}/health", tmp_path / "vllm.log",
                        env={"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}):
        print(f"\nvLLM on {family}: up in {time.monotonic() - start:.0f} s")
        same = check_prompts("vLLM", family, prompts, prompt_ids)
    assert same == [True] * len(prompts)


@pytest.mark.parametrize("family", BPE_FAMILIES)
def test_llama_server_builds_the_training_prompts(family, tools, family_export, family_encoded, tmp_path):
    served, prompts = family_export(family), family_training_prompts(family_encoded(family))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    argv = [tools["llama_server"], "-m", served / "model.gguf", "--jinja", "--host", "127.0.0.1", "--port", port,
            "--ctx-size", "1024", "--parallel", "1", "--threads", "2"]

    def prompt_ids(instruction):
        # the chat path's own two steps: render the GGUF's template, tokenize with BOS and special tokens
        messages = [{"role": "user", "content": instruction}]
        rendered = request(f"{base}/apply-template", {"messages": messages})["prompt"]
        return request(f"{base}/tokenize", {"content": rendered, "add_special": True, "parse_special": True})["tokens"]

    with running_server(argv, f"{base}/health", tmp_path / "llama-server.log"):
        same = check_prompts("llama.cpp", family, prompts, prompt_ids)
        # and the GGUF runs: a chat request is answered
        answer = request(f"{base}/v1/chat/completions", {"messages": [{"role": "user", "content": prompts[0][0]}],
                                                         "max_tokens": 2, "temperature": 0})
        assert answer["choices"][0]["finish_reason"] in ("length", "stop")
    assert same == [True] * len(prompts)


# the family whose generation --backend vllm runs: Qwen's tokenizer has no BOS at all (bos_token null)
NO_BOS_FAMILY = "qwen2.5-coder-tied"


def test_generate_backend_vllm_on_a_no_bos_family_is_the_transformers_backends(tools, family_export,
                                                                                 family_prepared, family_encoded,
                                                                                 tmp_path):
    """generate.py --backend vllm on the export of a family without BOS: the prompts are the training ids (no
    BOS invented) and the greedy rows are the transformers backend's (fp32 on both sides)."""
    import generate

    from .test_vllm_backend import read_jsonl, run_serve_python

    prompts = family_training_prompts(family_encoded(NO_BOS_FAMILY))
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps({"id": str(i), "instruction": text}) + "\n"
                            for i, (text, _) in enumerate(prompts)))
    common = [str(a) for a in ("--tokenizer_dir", family_prepared(NO_BOS_FAMILY), "--model_dir",
                               family_export(NO_BOS_FAMILY), "--prompts", path, "--max_new_tokens", 8)]
    assert generate.main(common + ["--out", str(tmp_path / "hf.jsonl")]) == 0
    run_serve_python(tools, "generate.py", "--backend", "vllm", *common, "--max_model_len", "1024",
                     "--out", tmp_path / "vllm.jsonl")
    hf, vllm = read_jsonl(tmp_path / "hf.jsonl"), read_jsonl(tmp_path / "vllm.jsonl")
    assert len(vllm) == len(prompts) and vllm == hf
