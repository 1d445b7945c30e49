"""Shared fixtures for the stage 1-3 tests.

The expensive artifacts (a tiny Llama model built from the sample, the stage 1 tokenizer,
the stage 2 filter output and the stage 3 encoding) are built once per session, in-process,
by calling each stage's main(argv). Tests that are about the command line itself use
`run_script`, which runs a stage script exactly as a user does: a fresh interpreter, the
repository's script path, captured stdout/stderr and the real exit code.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reasoning_sft.demo.families import CODELLAMA
from reasoning_sft.demo.families import FAMILIES as FAMILY_TABLE
from reasoning_sft.demo.pipeline import encode_argv, filter_argv, run_stage, tokenizer_argv

# Nothing in the test suite may reach the network; progress/thread noise off.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ["TOKENIZERS_PARALLELISM"] = "false"

REPO_ROOT = Path(__file__).resolve().parent.parent
# The scripts live at the repository root, in training/ and in benchmarks/, not in the package: make
# them importable so that tests can call their main(argv) in-process (much faster than a subprocess).
# The only sys.path edit of the test suite.
for _scripts in (REPO_ROOT / "benchmarks", REPO_ROOT / "training", REPO_ROOT):
    if str(_scripts) not in sys.path:
        sys.path.insert(0, str(_scripts))

# One math-library thread per process in the main suite (the trainers' subprocesses always had it, see
# run_train): every model here is tiny, so a second OpenMP thread only adds spin-waiting, and when the
# machine is busy (2 cores, another process running) a step of the tiny model took 100x longer with 2
# threads than with 1. Set after collection, and only when no serving test was collected: vLLM's CPU
# engine in tests/serving sizes its own thread pool from OMP_NUM_THREADS.
ONE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def pytest_collection_finish(session):
    serving = REPO_ROOT / "tests" / "serving"
    if any(serving in Path(str(item.path)).parents for item in session.items):
        return
    for name, value in ONE_THREAD_ENV.items():
        os.environ.setdefault(name, value)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


SAMPLE_RELPATH = "examples/sample.jsonl"
TINY_VOCAB = 1024
MAX_LEN = 256
SMALL_N, SMALL_MAX_LEN = 16, 768  # small_encoded: the trainer tests' data


def run_script(script_relpath, *args, cwd=None, timeout=180, env=None):
    """Run a repository script as a user does; return the CompletedProcess (never raises on exit != 0)."""
    full_env = dict(os.environ)
    full_env.update({"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
    if env:
        full_env.update(env)
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / script_relpath), *map(str, args)],
        cwd=str(cwd) if cwd is not None else None,
        capture_output=True, text=True, timeout=timeout, env=full_env,
    )


def is_progress_line(line):
    """A tqdm / datasets progress-bar line (carriage-return redraws or the "NN%|###|" bar)."""
    return "\r" in line or ("%|" in line and "it/s" in line) or ("%|" in line and "s/it" in line)


def stderr_lines(proc):
    """Non-empty stderr lines that are not progress bars."""
    return [line for line in proc.stderr.splitlines() if line.strip() and not is_progress_line(line)]


def our_error_line(proc, script):
    """The one `SCRIPT: error: ...` line of a run that failed on bad input (exit 2, no traceback).

    Other stderr lines (a third-party library's warning on some CPUs, a progress bar) do not
    count against the run: only that exactly one line is ours and none of it is a traceback.
    """
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    ours = [line for line in proc.stderr.splitlines() if line.startswith(f"{script}: ")]
    assert len(ours) == 1, proc.stderr
    assert ours[0].startswith(f"{script}: error: "), ours[0]
    return ours[0]


def leftovers(out_dir):
    """Entries beside out_dir that belong to it: the dir itself or a temp/old sibling."""
    out_dir = Path(out_dir)
    if not out_dir.parent.exists():
        return []
    name = out_dir.name
    return sorted(p.name for p in out_dir.parent.iterdir()
                  if p.name == name or p.name.startswith(f".{name}.") or p.name.startswith(f"{name}.old-"))


@pytest.fixture(scope="session")
def repo_root():
    return REPO_ROOT


@pytest.fixture(scope="session")
def sample_path(repo_root):
    path = repo_root / SAMPLE_RELPATH
    assert path.is_file(), f"{path} is missing: the sample dataset ships with the repository"
    return path


@pytest.fixture(scope="session")
def sample_records(sample_path):
    """The sample's raw records (a fresh list per call site is not needed: treat as read-only)."""
    from reasoning_sft.data.records import read_records

    return read_records(str(sample_path))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, sample_path):
    from reasoning_sft.demo import tiny_llama

    out = tmp_path_factory.mktemp("tiny_model") / "tiny-llama"
    tiny_llama.build(corpus=str(sample_path), out_dir=str(out), vocab_size=TINY_VOCAB)
    return out


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory, tiny_model_dir):
    out = tmp_path_factory.mktemp("stage1") / "tokenizer"
    run_stage(tokenizer_argv(tiny_model_dir, out))
    return out


@pytest.fixture(scope="session")
def prepared_tokenizer(tokenizer_dir):
    """(tokenizer, metadata) loaded the way stages 2 and 3 load them."""
    from reasoning_sft.artifacts import load_prepared_tokenizer

    return load_prepared_tokenizer(str(tokenizer_dir))


@pytest.fixture(scope="session")
def filtered_dir(tmp_path_factory, sample_path, tokenizer_dir):
    out = tmp_path_factory.mktemp("stage2") / "filtered"
    run_stage(filter_argv(sample_path, tokenizer_dir, out, MAX_LEN))
    return out


@pytest.fixture(scope="session")
def encoded_dir(tmp_path_factory, filtered_dir, tokenizer_dir):
    out = tmp_path_factory.mktemp("stage3") / "encoded"
    run_stage(encode_argv(filtered_dir, tokenizer_dir, out, MAX_LEN))
    return out


# ---------------------------------------------------------------------------------------------------------
# every model family (reasoning_sft/demo/families.py): published tokenizer + tiny random model, built on first use
#
#     @pytest.mark.parametrize("family", FAMILIES)
#     def test_something(family, family_base, family_prepared, family_encoded):
#         base = family_base(family)          # dir: tokenizer + tiny model (stage 1's --model)
#         tokenizer_dir = family_prepared(family)  # stage 1's output (a trainer's --tokenizer_dir)
#         train_dir = family_encoded(family)  # stage 3's arrow_dataset (a trainer's --train_dir), FAMILY_N records
#
# Each factory builds a family once per session (a cache), in-process; `codellama` is the demo's tiny Llama
# (the same directories as tiny_model_dir / tokenizer_dir). The BPE families need llama.cpp's vocabularies
# (`make vocab`); without them the fixture fails with the one line saying so.

FAMILIES = list(FAMILY_TABLE)
BPE_FAMILIES = [name for name in FAMILIES if name != CODELLAMA]
# one family per distinct tokenizer (qwen2.5-coder has qwen2.5-coder-tied's; only the model differs): what the
# tokenizer-level tests parametrize over, to keep the main suite's time
TOKENIZER_FAMILIES = [name for name in FAMILIES if name != "qwen2.5-coder"]
# The families whose 128k-152k vocabularies make each stage's tokenizer load cost a second or more: their
# stage runs take ~20 s of CPU each, so `make check` (the edit-test loop) leaves them to `make test` and keeps
# qwen2.5-coder-tied as its one large-vocabulary family.
SLOW_FAMILIES = ("qwen2.5-coder", "qwen3", "llama-3.1")


def family_params(names):
    """pytest parameters for these families, the SLOW_FAMILIES marked slow (make test runs them, make check not)."""
    return [pytest.param(name, marks=pytest.mark.slow) if name in SLOW_FAMILIES else name for name in names]
FAMILY_N, FAMILY_MAX_LEN = 8, 512  # family_encoded: the first records of the sample, stage 2's --max_len


def _cached(build):
    cache = {}

    def get(name):
        if name not in FAMILY_TABLE:
            raise KeyError(f"unknown family {name!r}; FAMILIES = {FAMILIES}")
        if name not in cache:
            cache[name] = build(name)
        return cache[name]
    return get


@pytest.fixture(scope="session")
def family_base(request, tmp_path_factory):
    """family_base(name) -> Path of the family's base model dir (published tokenizer + tiny random model)."""
    from reasoning_sft.demo.families import base_model

    def build(name):
        if name == CODELLAMA:
            return Path(request.getfixturevalue("tiny_model_dir"))
        return Path(base_model(name, tmp_path_factory.mktemp("family") / name))
    return _cached(build)


@pytest.fixture(scope="session")
def family_prepared(request, tmp_path_factory, family_base):
    """family_prepared(name) -> Path of stage 1's output for the family's base (prepare_llamatokenizer.py)."""
    def build(name):
        if name == CODELLAMA:
            return Path(request.getfixturevalue("tokenizer_dir"))
        out = tmp_path_factory.mktemp("family_stage1") / name
        run_stage(tokenizer_argv(family_base(name), out))
        return out
    return _cached(build)


@pytest.fixture(scope="session")
def family_encoded(tmp_path_factory, sample_records, family_prepared):
    """family_encoded(name) -> Path of the arrow_dataset (a trainer's --train_dir) that stages 2-3 make of the
    sample's first FAMILY_N records with the family's stage 1 tokenizer (--max_len FAMILY_MAX_LEN); the encode
    dir, with manifest.json, is its parent."""
    def build(name):
        root = tmp_path_factory.mktemp("family_stage23") / name
        root.mkdir()
        raw = root / "raw.json"
        raw.write_text(json.dumps(sample_records[:FAMILY_N]))
        run_stage(filter_argv(raw, family_prepared(name), root / "f", FAMILY_MAX_LEN, plot=False))
        run_stage(encode_argv(root / "f", family_prepared(name), root / "e", FAMILY_MAX_LEN))
        return root / "e" / "arrow_dataset"
    return _cached(build)


@pytest.fixture(scope="session", name="run_script")
def run_script_fixture():
    """run_script(script_relpath, *args, cwd=None, timeout=180, env=None) -> CompletedProcess."""
    return run_script


# ---------------------------------------------------------------------------------------
# the trainers, run as users run them (test_training, test_crashes, test_divergence, test_precision)




def free_port():
    """A TCP port free on 127.0.0.1 now: two-process runs rendezvous there (tests run in parallel workers)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_cmd(script, *args, launcher="accelerate"):
    if launcher == "accelerate":
        head = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", "configs/cpu.yaml"]
    elif launcher == "torchrun":
        head = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                str(free_port())]
    else:
        head = [sys.executable]
    return head + [f"training/{script}", *map(str, args)]


def run_train(script, *args, launcher="accelerate", env=None, timeout=300):
    full_env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    full_env.update(env or {})
    proc = subprocess.run(train_cmd(script, *args, launcher=launcher), cwd=REPO_ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
    return proc


def train_here(script, *args, callbacks=()):
    """The trainer's main(argv) in this process: what run_train(script, *args, launcher="python") runs, without
    a new interpreter (about 5 s less per run on a 2-core machine). For runs whose output, not whose process,
    the test is about. Returns (exit code, stdout); a UserError is raised, not turned into exit 2."""
    import contextlib
    import importlib
    import io

    module = importlib.import_module(script.removesuffix(".py"))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = module.main([str(a) for a in args], callbacks=callbacks)
    return code, out.getvalue()


def metrics(output_dir):
    with open(Path(output_dir) / "metrics.jsonl") as f:
        return [json.loads(line) for line in f]


def train_losses(output_dir):
    return [r["loss"] for r in metrics(output_dir) if "loss" in r]


@pytest.fixture(scope="session")
def small_encoded(tmp_path_factory, sample_records, tokenizer_dir):
    """The first records of the sample, filtered and encoded: (arrow_dataset path, encode dir)."""
    root = tmp_path_factory.mktemp("small")
    raw = root / "raw.json"
    raw.write_text(json.dumps(sample_records[:SMALL_N]))
    run_stage(filter_argv(raw, tokenizer_dir, root / "f", SMALL_MAX_LEN, plot=False))
    run_stage(encode_argv(root / "f", tokenizer_dir, root / "e", SMALL_MAX_LEN))
    return root / "e" / "arrow_dataset"


def common(tiny_model_dir, tokenizer_dir, train_dir, output_dir, *extra):
    return ["--model_name", tiny_model_dir, "--tokenizer_dir", tokenizer_dir, "--train_dir", train_dir,
            "--output_dir", output_dir, "--log_every", 1, *extra]


def one_and_two_processes(tmp_path, model_dir, tokenizer_dir, small_encoded):
    """The same full fine-tuning run as 1 process with --grad_accum 2 and as 2 gloo processes with 1, on a
    batch budget that gives an even number (>= 4) of micro-batches; returns both output dirs. The one-process
    run is in this process (train_here); the two processes are torchrun's, as users run them."""
    import datasets

    from reasoning_sft.data.batching import token_budget_batches

    lengths = datasets.load_from_disk(str(small_encoded))["length"]
    budget = next(b for b in range(400, 2000, 8) if len(token_budget_batches(lengths, b, False, 7, 0)) % 2 == 0
                  and len(token_budget_batches(lengths, b, False, 7, 0)) >= 4)
    args = ["--batch_tokens", budget, "--epochs", 1, "--lr", 1e-3, "--seed", 7, "--warmup_ratio", 0]
    one, two = tmp_path / "one", tmp_path / "two"
    code, _ = train_here("train_full.py", *common(model_dir, tokenizer_dir, small_encoded, one), *args,
                         "--grad_accum", 2)
    assert code == 0
    proc = run_train("train_full.py", *common(model_dir, tokenizer_dir, small_encoded, two), *args,
                     launcher="torchrun", env={"ACCELERATE_USE_CPU": "true"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "MULTI_CPU x2" in proc.stdout, proc.stdout
    return one, two


# ---------------------------------------------------------------------------------------------------------
# every family exported (test_export_families, and the serving tier's test_families)


def family_training_prompts(train_dir):
    """[(instruction, prompt ids)] of an encoded dataset (family_encoded), in row order: the ids the model is
    conditioned on in training (input_ids up to and including <reasoning>, where the labels start) and the
    instruction of stage 2's record they were encoded from."""
    import datasets

    from reasoning_sft.data.template import IGNORE_INDEX

    records = json.loads((Path(train_dir).parent.parent / "f" / "data.json").read_text(encoding="utf-8"))
    rows = datasets.load_from_disk(str(train_dir))
    prompts = []
    for record, ids, labels in zip(records, rows["input_ids"], rows["labels"]):
        start = next(i for i, label in enumerate(labels) if label != IGNORE_INDEX)
        prompts.append((record["instruction"], list(ids[:start])))
    assert len(prompts) == len(records) == len(rows)
    return prompts


@pytest.fixture(scope="session")
def family_export(tmp_path_factory, family_base, family_prepared, family_encoded):
    """family_export(name) -> Path of export.py --gguf's serving dir for a train_full.py run of one step on
    family_encoded (in this process; fp32, so engines can be compared with transformers)."""
    import export

    def build(name):
        root = tmp_path_factory.mktemp("family_export") / name
        code, _ = train_here("train_full.py", *common(family_base(name), family_prepared(name), family_encoded(name),
                                                      root / "full"), "--max_steps", 1, "--batch_tokens", 2048)
        assert code == 0
        assert export.main(["--model_dir", str(root / "full"), "--out_dir", str(root / "serve"), "--gguf"]) == 0
        return root / "serve"
    return _cached(build)
