"""generate.py / evaluate.py --backend openai: sample any OpenAI-compatible server (vLLM, llama-server, TGI, ...).

What is the same as the in-process backends (generation.py, vllm_backend.py):
  - the prompt: the instruction is the one user message, and the server's chat template (export.py writes
    it) renders it as the training prompt, ending with "<reasoning>";
  - the text: exactly what the model wrote after the prompt, tags kept. A server running this project's
    reasoning parser (export.py's sft_reasoning_parser.py) splits it into `reasoning` and `content`; the
    answer is rebuilt from the two (reasoning_parser.join_answer). Then it is cut after its first </code>,
    where the in-process backends stop;
  - the rows: output, n_tokens (the server's completion_tokens, which counts what the server generated:
    vLLM also counts the EOS after </code>), stop ("</code>", "eos" or "length"; finish_reason "length"
    is "length"), then the same format check, syntax check, sandbox and pass@k.
Each sample is its own request (n=1), so that servers without `n` work; greedy requests ask for temperature
0, sampled ones for temperature, top_p and seed + the sample's index.

The official `openai` client does the HTTP: --request_timeout seconds per request, --max_retries retries
with exponential backoff on connection errors, 408/409/429 and 5xx. Up to --concurrency requests are in
flight at once (the server batches them). Before any request, GET /v1/models checks that the server is
there and serves --model (default: the one model it lists); either failing is one line and exit 2.
"""

from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

from reasoning_sft.data.template import CLOSE
from reasoning_sft.errors import UserError
from reasoning_sft.serve.decoding import STOP_CODE, STOP_EOS, STOP_LENGTH
from reasoning_sft.serve.reasoning_parser import join_answer

NOT_INSTALLED = "--backend openai needs the `openai` package (pip install -r requirements.txt)"
# options of the in-process backends, which a server does not take
NOT_FOR_A_SERVER = ("tokenizer_dir", "model_name", "adapter_dir", "model_dir", "flash_attn", "device",
                    "max_model_len")
REPRODUCIBLE = ("greedy (--temperature 0) is what a server reproduces; sampled requests carry seed + the "
                "sample's index, which a server may or may not honour")


def add_args(parser):
    """The options of --backend openai (they sit with add_model_args' options)."""
    p = parser
    p.add_argument("--base_url", help="--backend openai: the server's OpenAI API, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--api_key", default=None,
                   help="--backend openai: the server's API key (default: $OPENAI_API_KEY, else none)")
    p.add_argument("--model", help="--backend openai: the served model's name (default: the one the server lists)")
    p.add_argument("--concurrency", type=int, default=8, help="--backend openai: requests in flight at once")
    p.add_argument("--request_timeout", type=float, default=600.0,
                   help="--backend openai: seconds one request may take (each retry gets as long)")
    p.add_argument("--max_retries", type=int, default=4,
                   help="--backend openai: retries with backoff on connection errors, 408/409/429 and 5xx")


def check_args(args, script):
    """UserError for options --backend openai cannot use, before anything is sent."""
    import importlib.util

    if not args.base_url:
        raise UserError(f"--backend openai needs --base_url (the server's OpenAI API, e.g. "
                        f"http://127.0.0.1:8000/v1); {script} sends it the instructions")
    given = [f"--{name}" for name in NOT_FOR_A_SERVER if getattr(args, name, None)]
    given += ["--dtype"] if args.dtype != "auto" else []
    given += ["--tensor_parallel_size"] if args.tensor_parallel_size != 1 else []
    if given:
        raise UserError(f"{', '.join(given)}: not used by --backend openai (the server has its own model, "
                        "tokenizer and chat template)")
    if args.concurrency < 1 or args.request_timeout <= 0 or args.max_retries < 0:
        raise UserError("--concurrency must be at least 1, --request_timeout > 0 and --max_retries >= 0")
    if importlib.util.find_spec("openai") is None:
        raise UserError(NOT_INSTALLED)


@dataclass
class Endpoint:
    """What load_model_for_generation() returns for --backend openai: a client and the served model's name."""
    client: object  # openai.OpenAI
    model: str


def connect(args):
    """(Endpoint, settings) for --base_url and --model; UserError (one line) when the server cannot be reached,
    refuses the key, or does not serve that model."""
    import os

    import openai

    key = args.api_key or os.environ.get("OPENAI_API_KEY") or "none"  # servers without keys take any
    client = openai.OpenAI(base_url=args.base_url, api_key=key, timeout=args.request_timeout,
                           max_retries=args.max_retries)
    try:
        served = _model_ids(client.models.with_raw_response.list().http_response)
    except openai.APIConnectionError as err:
        raise UserError(f"--base_url {args.base_url}: no server answers there ({_cause(err)})") from None
    except openai.APIStatusError as err:
        hint = " (does --base_url end with /v1?)" if err.status_code == 404 else ""
        raise UserError(f"--base_url {args.base_url}: GET /models answered {err.status_code} "
                        f"({_first_line(err.message)}){hint}") from None
    except (openai.OpenAIError, ValueError) as err:  # an answer that is not OpenAI's list of models
        raise UserError(f"--base_url {args.base_url}: not an OpenAI-compatible API: GET /models gave "
                        f"{_first_line(err)}") from None
    model = args.model
    if model is None:
        if len(served) != 1:
            raise UserError(f"--base_url {args.base_url} serves {len(served)} models "
                            f"({', '.join(served) or 'none'}); say which with --model")
        model = served[0]
    elif model not in served:
        raise UserError(f"--base_url {args.base_url} does not serve --model {model} "
                        f"(it serves: {', '.join(served) or 'no model'})")
    settings = {"backend": "openai", "base_url": args.base_url, "model": model, "concurrency": args.concurrency,
                "request_timeout": args.request_timeout, "max_retries": args.max_retries,
                "reproducible": REPRODUCIBLE}
    return Endpoint(client, model), settings


def _model_ids(response):
    """The model ids of a GET /models answer (OpenAI's {"data": [{"id": ...}, ...]}); ValueError for anything else
    (the client's own parser fails on a non-JSON answer with an AttributeError)."""
    try:
        data = response.json()
    except ValueError:
        raise ValueError(f"{response.headers.get('content-type') or 'no content type'}, not JSON") from None
    if not (isinstance(data, dict) and isinstance(data.get("data"), list)
            and all(isinstance(m, dict) and isinstance(m.get("id"), str) for m in data["data"])):
        raise ValueError("JSON without a list of models with ids")
    return [m["id"] for m in data["data"]]


def _cause(err):
    while err.__cause__ is not None:
        err = err.__cause__
    return _first_line(str(err)) or type(err).__name__


def _first_line(text):
    return str(text).strip().splitlines()[0] if str(text).strip() else ""


def answer_text(message):
    """What the model wrote after the prompt, from a chat completion's message: content, or the answer rebuilt
    from reasoning + content when the server's reasoning parser split them (`reasoning`; older servers
    `reasoning_content`)."""
    extra = message.model_extra or {}
    reasoning = extra.get("reasoning", extra.get("reasoning_content"))
    if reasoning is None:
        return message.content or ""
    return join_answer(reasoning, message.content)


def result_row(text, finish_reason, completion_tokens):
    """A result dict as decoding.decode_continuation() makes it, from what a server returned."""
    end = text.find(CLOSE["code"])
    if end >= 0:  # the in-process backends stop at </code>: so does this row
        text, stop = text[:end + len(CLOSE["code"])], STOP_CODE
    else:
        stop = STOP_LENGTH if finish_reason == "length" else STOP_EOS
    return {"output": text, "n_tokens": completion_tokens, "stop": stop, "section_tokens": None}


def _request(client, model, instruction, max_new_tokens, temperature, top_p, seed):
    import openai

    params = dict(temperature=temperature, top_p=top_p, seed=seed) if temperature > 0 else dict(temperature=0.0)
    try:
        answer = client.chat.completions.create(model=model, messages=[{"role": "user", "content": instruction}],
                                                max_tokens=max_new_tokens, n=1, **params)
    except openai.APIConnectionError as err:  # retried already (--max_retries)
        raise UserError(f"{client.base_url}: the server stopped answering ({_cause(err)})") from None
    except openai.APIStatusError as err:
        raise UserError(f"{client.base_url}: a chat completion request answered {err.status_code} "
                        f"({_first_line(err.message)})") from None
    except openai.OpenAIError as err:
        raise UserError(f"{client.base_url}: a chat completion request failed ({_first_line(err)})") from None
    if not answer.choices:
        raise UserError(f"{client.base_url}: a chat completion came back without a choice")
    choice = answer.choices[0]
    tokens = answer.usage.completion_tokens if answer.usage is not None else None
    return result_row(answer_text(choice.message), choice.finish_reason, tokens)


def generate_openai(endpoint, instructions, n=1, max_new_tokens=512, temperature=0.0, top_p=0.95, seed=0,
                    concurrency=8):
    """n result dicts per instruction (instruction-major order), as generation.generate() makes them."""
    from reasoning_sft.progress import progress

    jobs = [(instruction, sample) for instruction in instructions for sample in range(n)]
    results = [None] * len(jobs)
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        futures = {pool.submit(_request, endpoint.client, endpoint.model, instruction, max_new_tokens, temperature,
                               top_p, seed + sample): k for k, (instruction, sample) in enumerate(jobs)}
        try:
            with progress(total=len(jobs), desc="requests", unit="sample") as bar:
                for future in as_completed(futures):
                    results[futures[future]] = future.result()
                    bar.update(1)
        except BaseException:
            for future in futures:  # the first failure ends the run: send nothing more
                future.cancel()
            raise
    return results

