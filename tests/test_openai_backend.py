"""generate.py / evaluate.py --backend openai: what they say before any sample is asked for.

An unreachable --base_url (a port on 127.0.0.1 that nothing listens on) and a server that serves another
model (a small stdlib HTTP server answering GET /v1/models as OpenAI's API does) are each one line on
stderr and exit 2, run as users run the scripts. Against real vLLM and llama-server:
tests/serving/test_openai_api.py.
"""

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import our_error_line, run_script

from reasoning_sft.errors import UserError


def closed_port():
    """A port on 127.0.0.1 that was free a moment ago and that nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ModelsOnly(BaseHTTPRequestHandler):
    """GET /v1/models lists one model, "sft"; anything else is 404 (no sample may be asked for)."""

    def do_GET(self):  # noqa: N802 (http.server's name)
        if self.path.rstrip("/") == "/v1/models":
            body = json.dumps({"object": "list", "data": [{"id": "sft", "object": "model", "owned_by": "me"}]})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())
        else:
            self.send_error(404)

    do_POST = do_GET  # noqa: N815

    def log_message(self, *args):
        pass


@pytest.fixture
def models_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), ModelsOnly)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def write_problems(path):
    path.write_text(json.dumps({"task_id": "t/0", "prompt": "def f():\n", "entry_point": "f",
                                "test": "def check(candidate):\n    pass\n"}) + "\n")
    return path


def test_an_unreachable_server_is_one_line(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/v1"
    proc = run_script("generate.py", "--backend", "openai", "--base_url", url, "--prompt", "Add two numbers.",
                      "--out", tmp_path / "gen.jsonl", "--max_retries", "0")
    line = our_error_line(proc, "generate.py")
    assert line == f"generate.py: error: --base_url {url}: no server answers there ([Errno 111] Connection refused)"
    proc = run_script("evaluate.py", "--backend", "openai", "--base_url", url, "--max_retries", "0",
                      "--problems", write_problems(tmp_path / "problems.jsonl"), "--out_dir", tmp_path / "eval")
    assert f"--base_url {url}: no server answers there" in our_error_line(proc, "evaluate.py")
    assert not (tmp_path / "gen.jsonl").exists() and not (tmp_path / "eval" / "samples.jsonl").exists()


def test_a_server_of_another_model_is_one_line(tmp_path, models_server):
    problems = write_problems(tmp_path / "problems.jsonl")
    proc = run_script("evaluate.py", "--backend", "openai", "--base_url", models_server, "--model", "other",
                      "--problems", problems, "--out_dir", tmp_path / "eval")
    line = our_error_line(proc, "evaluate.py")
    assert f"--base_url {models_server} does not serve --model other (it serves: sft)" in line, line
    assert not (tmp_path / "eval" / "samples.jsonl").exists()


@pytest.mark.parametrize("argv, message", [
    (["--backend", "openai", "--prompt", "x"], "--backend openai needs --base_url"),
    (["--backend", "openai", "--base_url", "http://127.0.0.1:1/v1", "--prompt", "x", "--model_dir", "."],
     "--model_dir: not used by --backend openai"),
    (["--base_url", "http://127.0.0.1:1/v1", "--tokenizer_dir", ".", "--prompt", "x"],
     "--base_url is for --backend openai"),
    (["--prompt", "x"], "--tokenizer_dir is required"),
])
def test_options_that_do_not_go_together(argv, message, tmp_path):
    import generate

    with pytest.raises(UserError, match=message):
        generate.parse_args(argv + ["--out", str(tmp_path / "g.jsonl")])
