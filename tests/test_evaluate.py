"""evaluate.py: problems, the sandboxed runner, pass@k, both modes, hostile samples and bad input.

The problems are written for these tests (HumanEval's format, not HumanEval's problems).
Hostile samples run with short timeouts and a small memory limit, so that they stay fast and
cannot hurt the machine even where the guard would fail.
"""

import json
import math
import os
import sys
import time

import pytest
from conftest import REPO_ROOT, stderr_lines

from reasoning_sft.data.template import target_text
from reasoning_sft.errors import UserError
from reasoning_sft.eval.execution import (
    FAILED,
    PASSED,
    TIMED_OUT,
    isolation_line,
    network_isolation,
    run_program,
    run_programs,
)
from reasoning_sft.eval.scoring import (
    FORMAT_ERROR,
    SYNTAX_ERROR,
    instruction_for,
    load_problems,
    load_samples,
    pass_at_k,
    program_for,
    score_samples,
    summarize,
)

PROBLEMS = [
    {"task_id": "t/add",
     "prompt": ('def add(a: int, b: int) -> int:\n    """Return the sum of a and b.\n'
                '    >>> add(2, 3)\n    5\n    """\n'),
     "canonical_solution": "    return a + b\n",
     "entry_point": "add",
     "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"},
    {"task_id": "t/dedupe",
     "prompt": "from typing import List\n\n\ndef dedupe(xs: List[int]) -> List[int]:\n"
               '    """Drop repeated values, keeping the first occurrence of each, in order.\n'
               '    >>> dedupe([3, 1, 3, 2, 1])\n    [3, 1, 2]\n    """\n',
     "canonical_solution": "    seen = set()\n    return [x for x in xs if not (x in seen or seen.add(x))]\n",
     "entry_point": "dedupe",
     "test": ("def check(candidate):\n    assert candidate([3, 1, 3, 2, 1]) == [3, 1, 2]\n"
              "    assert candidate([]) == []\n")},
    {"task_id": "t/vowels",
     "prompt": 'def count_vowels(s: str) -> int:\n    """Number of vowels (aeiou, any case) in s."""\n',
     "canonical_solution": "    return sum(c in 'aeiou' for c in s.lower())\n",
     "entry_point": "count_vowels",
     "test": "def check(candidate):\n    assert candidate('Hello') == 2\n    assert candidate('xyz') == 0\n"},
]
BY_ID = {p["task_id"]: p for p in PROBLEMS}
WRONG_BODY = {"t/add": "    return a - b\n", "t/dedupe": "    return sorted(set(xs))\n",
              "t/vowels": "    return len(s)\n"}


def answer(code):
    """A model output in the training format (the continuation after <reasoning>)."""
    return target_text("Think it through.", "Write the function.", code)


def canonical(task_id):
    return answer(BY_ID[task_id]["prompt"] + BY_ID[task_id]["canonical_solution"])


def wrong(task_id):
    return answer(BY_ID[task_id]["prompt"] + WRONG_BODY[task_id])


def hostile(task_id, body):
    """The right function, preceded by module-level code that misbehaves."""
    return answer(body + "\n" + BY_ID[task_id]["prompt"] + BY_ID[task_id]["canonical_solution"])


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def problems_file(tmp_path):
    return write_jsonl(tmp_path / "problems.jsonl", PROBLEMS)


# ------------------------------------------------------------------ problems and the estimator

def test_problems_load_in_order_and_plain_gzip_both_work(problems_file, tmp_path):
    import gzip

    problems = load_problems(str(problems_file))
    assert list(problems) == ["t/add", "t/dedupe", "t/vowels"]
    gz = tmp_path / "problems.jsonl.gz"
    gz.write_bytes(gzip.compress(problems_file.read_bytes()))
    assert load_problems(str(gz)) == problems
    instruction = instruction_for(problems["t/add"])
    assert instruction.startswith("def add(") and instruction.endswith('"""')


def test_pass_at_k_matches_the_binomial_formula():
    for n, c, k in [(10, 3, 1), (10, 3, 5), (10, 0, 10), (20, 19, 10), (200, 7, 100), (5, 5, 1), (1, 0, 1)]:
        expected = 1 - math.comb(n - c, k) / math.comb(n, k)
        assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12), (n, c, k)
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)


def test_summary_on_a_known_mix():
    """10 samples per task: 3, 0 and 10 passing; pass@1 is the mean pass rate, pass@10 the binomial formula."""
    results = []
    for task_id, n_pass in (("t/add", 3), ("t/dedupe", 0), ("t/vowels", 10)):
        for j in range(10):
            ok = j < n_pass
            kind = PASSED if ok else (FORMAT_ERROR if j == 9 else FAILED)
            results.append({"task_id": task_id, "passed": ok, "result": kind})
    summary = summarize(results, BY_ID)
    expected = {k: sum(1 - math.comb(10 - c, k) / math.comb(10, k) for c in (3, 0, 10)) / 3 for k in (1, 10)}
    assert summary["pass@1"] == pytest.approx(expected[1]) == pytest.approx(13 / 30)
    assert summary["pass@10"] == pytest.approx(expected[10]) == pytest.approx(2 / 3)
    assert "pass@100" not in summary  # k above the samples per task is not reported
    assert summary["result_counts"] == {PASSED: 13, FAILED: 15, TIMED_OUT: 0, FORMAT_ERROR: 2, SYNTAX_ERROR: 0}
    assert summary["format_ok_rate"] == pytest.approx(28 / 30)
    assert summary["pass_rate_when_format_ok"] == pytest.approx(13 / 28)
    assert summary["tasks"] == 3 and summary["samples"] == 30


# ------------------------------------------------------------------ scoring

def test_canonical_solutions_pass_and_wrong_ones_fail():
    samples = ([{"task_id": t, "output": canonical(t)} for t in BY_ID]
               + [{"task_id": t, "output": wrong(t)} for t in BY_ID])
    rows = score_samples(samples, BY_ID, timeout=5, memory_mb=512, workers=2)
    assert [r["result"] for r in rows] == [PASSED] * 3 + [FAILED] * 3
    assert [r["passed"] for r in rows] == [True] * 3 + [False] * 3
    assert "AssertionError" in rows[3]["error"] and "assert candidate(2, 3) == 5" in rows[3]["error"]


def test_format_and_syntax_errors_are_counted_apart_and_not_run():
    code = BY_ID["t/add"]["prompt"] + BY_ID["t/add"]["canonical_solution"]
    samples = [
        {"task_id": "t/add", "output": code},                                            # no tags at all
        {"task_id": "t/add", "output": answer(code) + "\nprint('more')"},                # text after </code>
        {"task_id": "t/add", "output": answer("def add(a, b:\n    return a + b")},       # broken Python
        {"task_id": "t/add", "output": answer(BY_ID["t/add"]["canonical_solution"])},    # body only: no function
    ]
    rows = score_samples(samples, BY_ID, timeout=5, memory_mb=512, workers=2)
    assert [r["result"] for r in rows] == [FORMAT_ERROR, FORMAT_ERROR, SYNTAX_ERROR, SYNTAX_ERROR]
    assert "missing </reasoning>" in rows[0]["error"] and rows[1]["error"] == "text after </code>"
    assert [r["sample"] for r in rows] == [0, 1, 2, 3]


def test_imports_must_be_in_the_code_section():
    """The <code> section is the whole program: an answer that drops the prompt's import fails."""
    prompt = BY_ID["t/dedupe"]["prompt"].replace("from typing import List\n\n\n", "")
    rows = score_samples([{"task_id": "t/dedupe", "output": answer(prompt + BY_ID["t/dedupe"]["canonical_solution"])}],
                         BY_ID, timeout=5, memory_mb=512, workers=1)
    assert rows[0]["result"] == FAILED and "NameError" in rows[0]["error"]


def test_the_program_is_code_then_tests_and_the_runner_calls_check():
    program = program_for(BY_ID["t/add"], "def add(a, b):\n    return a + b")
    assert program.index("def add") < program.index("def check") and "check(add)" not in program
    assert run_program(program, timeout=5, memory_mb=512, entry_point="add") == (PASSED, None)
    wrong_program = program_for(BY_ID["t/add"], "def add(a, b):\n    return a - b")
    status, error = run_program(wrong_program, timeout=5, memory_mb=512, entry_point="add")
    assert status == FAILED and "assert candidate(2, 3) == 5 -> AssertionError" in error
    # a missing function or check() reads as it did when the program called check(add) itself
    for source, name in (("x = 1\n" + BY_ID["t/add"]["test"], "add"), ("def add(a, b):\n    return a + b\n", "check")):
        assert run_program(source, timeout=5, memory_mb=512, entry_point="add") == (
            FAILED, f"NameError: name '{name}' is not defined")


# ------------------------------------------------------------------ hostile samples

def test_hostile_samples_fail_without_harm(tmp_path):
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "data.txt").write_text("precious")
    marker = tmp_path / "spawned"
    cases = {
        "exit0 at import": hostile("t/add", "import sys\nsys.exit(0)"),
        "os._exit(0) at import": hostile("t/add", "import os\nos._exit(0)"),
        "exit0 before the asserts": answer("import sys\n" + BY_ID["t/add"]["prompt"] + "    sys.exit(0)\n"),
        "infinite loop": hostile("t/add", "while True:\n    pass"),
        "sleeps": hostile("t/add", "import time\ntime.sleep(60)"),
        "memory hog": hostile("t/add", "hog = []\nwhile True:\n    hog.append(bytearray(1 << 24))"),
        "os.system": hostile("t/add", f"import os\nos.system('touch {marker}')"),
        "subprocess": hostile("t/add", f"import subprocess\nsubprocess.run(['touch', '{marker}'])"),
        "kills its parent": hostile("t/add", "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)"),
        "removes files": hostile("t/add", f"import shutil\nshutil.rmtree('{keep}')"),
        "unlinks a file": hostile("t/add", f"import os\nos.remove('{keep / 'data.txt'}')"),
        "reads stdin": hostile("t/add", "input()"),
    }
    samples = [{"task_id": "t/add", "output": out} for out in cases.values()]
    samples.insert(3, {"task_id": "t/vowels", "output": canonical("t/vowels")})  # a good sample among them
    t0 = time.monotonic()
    rows = score_samples(samples, BY_ID, timeout=2.0, memory_mb=256, workers=2)
    elapsed = time.monotonic() - t0
    good = rows.pop(3)
    assert good["result"] == PASSED  # unharmed by its neighbours
    by_case = dict(zip(cases, rows))
    for name, row in by_case.items():
        assert row["passed"] is False, (name, row)
    assert by_case["infinite loop"]["result"] == TIMED_OUT and by_case["sleeps"]["result"] == TIMED_OUT
    assert "exited early" in by_case["exit0 at import"]["error"]
    assert "exited early" in by_case["exit0 before the asserts"]["error"]
    assert "MemoryError" in by_case["memory hog"]["error"]
    for name in ("os.system", "subprocess", "kills its parent", "removes files", "unlinks a file"):
        assert "PermissionError" in by_case[name]["error"], by_case[name]
    assert not marker.exists() and (keep / "data.txt").read_text() == "precious"
    # 13 programs on 2 workers, two of them killed at 2 s: well below 13 timeouts in a row
    assert elapsed < 12, elapsed


ANY = "class Any:\n    def __eq__(self, other):\n        return True\n    __hash__ = object.__hash__\n\n"


def returning(expression, preamble=ANY):
    """An answer for t/add whose function returns `expression`."""
    return answer(f"{preamble}def add(a: int, b: int) -> int:\n    return {expression}\n")


def test_return_values_that_claim_equality_fail_with_a_named_reason():
    """What the function returns reaches check() as plain data: an object that equals anything does not pass."""
    int_liar = "class Liar(int):\n    def __eq__(self, other):\n        return True\n    __hash__ = int.__hash__\n" \
               "    def __index__(self):\n        return 5\n    def __int__(self):\n        return 5\n\n"
    meta = "class Meta(type):\n    def __eq__(cls, other):\n        return True\n    __hash__ = type.__hash__\n\n" \
           "class Any(metaclass=Meta):\n    def __eq__(self, other):\n        return True\n\n"
    str_liar = "class Text(str):\n    def __eq__(self, other):\n        return True\n    __hash__ = str.__hash__\n" \
               "    def __str__(self):\n        return '5'\n\n"
    cases = {  # name: (sample, what the error must say)
        "__eq__ always true": (returning("Any()"), "add returned an Any, not plain data"),
        "in a list": (returning("[Any()]"), "add returned an Any, not plain data"),
        "as a dict key": (returning("{Any(): 1}"), "add returned an Any, not plain data"),
        "int subclass lying in __eq__": (returning("Liar(0)", int_liar), "AssertionError"),
        "str subclass lying in __eq__": (returning("Text('x')", str_liar), "AssertionError"),
        "metaclass claiming to be int": (returning("Any()", meta), "add returned an Any, not plain data"),
        "a cycle": (returning("(lambda x: x.append(x) or x)([])", ""), "holds itself (a cycle)"),
        "nested 1000 deep": (returning("__import__('functools').reduce(lambda x, _: [x], range(1000), 5)", ""),
                             "nested deeper than 100 levels"),
        "a class": (returning("int", ""), "add returned a type, not plain data"),
    }
    swallowing = dict(BY_ID["t/add"], test="def check(candidate):\n    try:\n        assert candidate(2, 3) == 5\n"
                                             "    except BaseException:\n        pass\n")
    samples = [{"task_id": "t/add", "output": sample} for sample, _ in cases.values()]
    samples.append({"task_id": "t/swallow", "output": returning("Any()")})  # a test that hides every error
    rows = score_samples(samples, dict(BY_ID, **{"t/swallow": swallowing}), timeout=5, memory_mb=512, workers=2)
    for (name, (_, reason)), row in zip(cases.items(), rows):
        assert row["result"] == FAILED and reason in row["error"], (name, row)
    assert rows[-1]["result"] == FAILED and rows[-1]["error"] == "add returned an Any, not plain data"


def test_plain_values_of_other_types_are_converted_and_pass():
    """Subclasses of builtin types (namedtuple, OrderedDict, an int subclass) and numpy scalars are honest answers."""
    cases = [
        returning("type('Total', (int,), {})(a + b)", ""),
        returning("__import__('numpy').int64(a) + __import__('numpy').int64(b)", ""),
        returning("__import__('numpy').float64(a + b)", ""),
        answer("from collections import OrderedDict, namedtuple\n" + BY_ID["t/dedupe"]["prompt"] +
               "    Pair = namedtuple('Pair', 'k v')\n    assert Pair(1, 2) == (1, 2)\n"
               "    return list(OrderedDict.fromkeys(xs))\n"),
    ]
    rows = score_samples([{"task_id": "t/dedupe" if i == 3 else "t/add", "output": o} for i, o in enumerate(cases)],
                         BY_ID, timeout=10, memory_mb=1024, workers=2)
    assert [r["result"] for r in rows] == [PASSED] * 4, rows


def test_honest_code_may_import_numpy_and_use_tempfile_while_the_guard_holds():
    """numpy's import sets an environment variable, tempfile probes its directory with a file it removes:
    both work, and the guard still refuses os.putenv and file removal to the program itself."""
    numpy_sample = answer("import numpy as np\n\n" + BY_ID["t/add"]["prompt"] + "    return int(np.add(a, b))\n")
    tempfile_sample = answer("import tempfile\n\n" + BY_ID["t/add"]["prompt"] +
                             "    with tempfile.TemporaryFile() as f:\n        f.write(str(a + b).encode())\n"
                             "        f.seek(0)\n        total = int(f.read())\n"
                             "    with tempfile.NamedTemporaryFile() as f, tempfile.SpooledTemporaryFile(1) as g:\n"
                             "        f.write(b'x')\n        g.write(b'xy')\n"
                             "    fd, path = tempfile.mkstemp()\n    scratch = tempfile.mkdtemp()\n"
                             "    return total\n")
    rows = score_samples([{"task_id": "t/add", "output": numpy_sample}, {"task_id": "t/add", "output": tempfile_sample},
                          {"task_id": "t/add", "output": hostile("t/add", "import os\nos.putenv('X', '1')")},
                          {"task_id": "t/add", "output": hostile("t/add", "import os\nos.environ['X'] = '1'")},
                          {"task_id": "t/add", "output": hostile("t/add", "import os, tempfile\n"
                                                                        "os.remove(tempfile.mkstemp()[1])")}],
                         BY_ID, timeout=10, memory_mb=1024, workers=2)
    assert [r["result"] for r in rows] == [PASSED, PASSED, FAILED, FAILED, FAILED], rows
    assert all("PermissionError" in r["error"] for r in rows[2:])


def test_environment_is_scrubbed_and_work_dir_is_private(monkeypatch):
    monkeypatch.setenv("SECRET_TOKEN_FOR_TEST", "s3cr3t")
    program = ("import os, sys\n"
               "assert 'SECRET_TOKEN_FOR_TEST' not in os.environ, 'leaked'\n"
               "assert not any(k.startswith('RSFT_SANDBOX') for k in os.environ), 'token visible'\n"
               "assert os.getcwd() == os.environ['HOME'] == os.environ['TMPDIR']\n"
               "assert os.path.basename(os.getcwd()).startswith('rsft-exec-') and os.listdir() == ['program.py']\n"
               "assert sys.stdin.read() == ''\n"
               "open('scratch.txt', 'w').write('x')\n")
    assert run_program(program, timeout=5, memory_mb=512) == (PASSED, None)
    status, error = run_program("import os\nraise RuntimeError(os.getcwd())", timeout=5, memory_mb=512)
    workdir = error.rsplit("RuntimeError: ", 1)[1]
    assert status == FAILED and "rsft-exec-" in workdir and not os.path.exists(workdir)  # removed afterwards


def test_run_programs_keeps_order_under_parallelism():
    programs = [f"import time\ntime.sleep({0.3 if i % 2 else 0})\nassert {i} % 3 != 0" for i in range(6)]
    results = run_programs(programs, timeout=5, memory_mb=256, workers=3)
    assert [status for status, _ in results] == [FAILED if i % 3 == 0 else PASSED for i in range(6)]


# ------------------------------------------------------------------ the script: scoring mode

def test_scoring_mode_as_a_user_runs_it(run_script, problems_file, tmp_path):
    samples = [{"task_id": t, "output": canonical(t)} for t in BY_ID]
    samples += [{"task_id": "t/add", "output": wrong("t/add")}, {"task_id": "t/dedupe", "output": "no format"},
                {"task_id": "t/vowels", "output": wrong("t/vowels")}]
    samples_file = write_jsonl(tmp_path / "samples.jsonl", samples)
    out = tmp_path / "eval"
    proc = run_script("evaluate.py", "--problems", problems_file, "--samples", samples_file, "--out_dir", out,
                      "--workers", 2, "--timeout", 5, "--memory_mb", 512)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 2 and lines[0] == isolation_line() and lines[0].startswith("isolation: ")
    assert lines[1].startswith("pass@1 50.0%") and "format ok 83.3%" in lines[1]
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 6 and all(set(r) == {"task_id", "sample", "passed", "result", "error"} for r in rows)
    assert [r["result"] for r in rows] == [PASSED] * 3 + [FAILED, FORMAT_ERROR, FAILED]
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["pass@1"] == pytest.approx(0.5) and "pass@10" not in summary
    assert summary["settings"]["isolation"] == lines[0]
    assert summary["result_counts"][FORMAT_ERROR] == 1 and summary["format_ok_rate"] == pytest.approx(5 / 6)
    assert sorted(os.listdir(out)) == ["results.jsonl", "summary.json"]  # no temporary files left


def test_check_canonical_scores_each_problems_own_solution(problems_file, tmp_path, capsys):
    import evaluate as script

    assert script.main(["--problems", str(problems_file), "--check_canonical", "--out_dir", str(tmp_path / "c"),
                        "--workers", "2"]) == 0
    summary = json.loads((tmp_path / "c" / "summary.json").read_text(encoding="utf-8"))
    assert summary["pass@1"] == 1.0 and summary["result_counts"][PASSED] == 3
    assert capsys.readouterr().out.splitlines()[1].startswith("pass@1 100.0%")
    no_solution = write_jsonl(tmp_path / "p.jsonl",
                              [{k: v for k, v in PROBLEMS[0].items() if k != "canonical_solution"}])
    with pytest.raises(UserError, match="no canonical_solution"):
        script.main(["--problems", str(no_solution), "--check_canonical", "--out_dir", str(tmp_path / "c")])


def test_bad_input_is_one_line_and_exit_2(run_script, problems_file, tmp_path):
    unknown = write_jsonl(tmp_path / "unknown.jsonl", [{"task_id": "t/nope", "output": "x"}])
    proc = run_script("evaluate.py", "--problems", problems_file, "--samples", unknown, "--out_dir", tmp_path / "o")
    assert proc.returncode == 2 and len(stderr_lines(proc)) == 1 and "unknown task_id 't/nope'" in proc.stderr
    assert not (tmp_path / "o").exists()


def test_bad_input_is_a_user_error(problems_file, tmp_path):
    import evaluate as script

    def run(*args):
        return script.main([str(a) for a in args])

    good = write_jsonl(tmp_path / "good.jsonl", [{"task_id": "t/add", "output": canonical("t/add")}])
    malformed = tmp_path / "malformed.jsonl"
    malformed.write_text('{"task_id": "t/add", "output": "x"}\n{"task_id": \n')
    no_output = write_jsonl(tmp_path / "no_output.jsonl", [{"task_id": "t/add", "completion": "x"}])
    no_test = write_jsonl(tmp_path / "no_test.jsonl", [{k: v for k, v in PROBLEMS[0].items() if k != "test"}])
    twice = write_jsonl(tmp_path / "twice.jsonl", [PROBLEMS[0], PROBLEMS[0]])
    last_only = write_jsonl(tmp_path / "last_only.jsonl", [{"task_id": "t/vowels", "output": canonical("t/vowels")}])
    out = ["--out_dir", tmp_path / "o"]
    cases = {
        "malformed JSON Lines": ["--problems", problems_file, "--samples", malformed],
        "sample 0 has no 'output' field": ["--problems", problems_file, "--samples", no_output],
        "problem 0 has no 'test' field": ["--problems", no_test, "--samples", good],
        "appears twice": ["--problems", twice, "--samples", good],
        "no sample belongs to the first 2 problems": ["--problems", problems_file, "--samples", last_only,
                                                      "--limit", 2],
        "no such file": ["--problems", tmp_path / "missing.jsonl", "--samples", good],
        "would not be used": ["--problems", problems_file, "--samples", good, "--model_dir", tmp_path],
        "--backend vllm would not be used": ["--problems", problems_file, "--samples", good, "--backend", "vllm"],
        "give --samples FILE": ["--problems", problems_file],
        "--n_samples > 1 needs --temperature": ["--problems", problems_file, "--tokenizer_dir", tmp_path,
                                                "--n_samples", 2],
        "--timeout": ["--problems", problems_file, "--samples", good, "--timeout", 0],
    }
    for message, args in cases.items():
        with pytest.raises(UserError, match=message.replace("(", r"\(").replace("+", r"\+")):
            run(*args, *out)
    assert not (tmp_path / "o").exists()
    with pytest.raises(UserError, match="unknown task_id"):
        load_samples(str(write_jsonl(tmp_path / "u.jsonl", [{"task_id": "t/x", "output": ""}])), BY_ID)


def test_a_lone_surrogate_in_a_problem_is_a_user_error_not_a_worker_traceback(tmp_path):
    """JSON may escape a lone surrogate ("\\ud800"); such text cannot be written as the program's UTF-8 file."""
    import evaluate as script

    for field in ("test", "prompt", "canonical_solution"):
        broken = dict(PROBLEMS[1], **{field: PROBLEMS[1][field] + "# \ud800\n"})
        path = write_jsonl(tmp_path / f"{field}.jsonl", [PROBLEMS[0], broken])
        with pytest.raises(UserError, match=f"problem 1: '{field}' holds a lone surrogate"):
            script.main(["--problems", str(path), "--check_canonical", "--out_dir", str(tmp_path / "o")])
    assert not (tmp_path / "o").exists()
    # in a sample's code it is the sample's syntax error, and the result row stays writable
    rows = score_samples([{"task_id": "t/add", "output": answer("x = '\ud800'")}], BY_ID, timeout=5, memory_mb=512)
    assert rows[0]["result"] == SYNTAX_ERROR and json.dumps(rows[0], ensure_ascii=False).encode("utf-8")


def test_verbose_is_accepted_like_every_other_stage(problems_file, tmp_path):
    """run_cli keeps third-party warnings when --verbose is given: the parser must know the flag."""
    import evaluate as script

    good = write_jsonl(tmp_path / "good.jsonl", [{"task_id": "t/add", "output": canonical("t/add")}])
    argv = ["--problems", str(problems_file), "--samples", str(good), "--out_dir", str(tmp_path / "o")]
    assert script.parse_args(argv + ["--verbose"]).verbose and not script.parse_args(argv).verbose


# ------------------------------------------------------------------ the script: generation mode

def test_generation_mode_writes_samples_then_scores_them(tiny_model_dir, tokenizer_dir, problems_file, tmp_path,
                                                         capsys):
    """The tiny model does not know the format: every sample is a format error, and every number says so."""
    import evaluate as script

    out = tmp_path / "gen_eval"
    assert script.main(["--problems", str(problems_file), "--limit", "2", "--model_name", str(tiny_model_dir),
                        "--tokenizer_dir", str(tokenizer_dir), "--n_samples", "2", "--temperature", "1.0",
                        "--max_new_tokens", "6", "--batch_size", "4", "--out_dir", str(out)]) == 0
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [s["task_id"] for s in samples] == ["t/add", "t/add", "t/dedupe", "t/dedupe"]
    assert all(1 <= s["n_tokens"] <= 6 and isinstance(s["output"], str) for s in samples)
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["samples"] == 4 and summary["tasks"] == 2 and summary["pass@1"] == 0.0
    assert summary["result_counts"][FORMAT_ERROR] == 4 and summary["format_ok_rate"] == 0.0
    assert summary["settings"]["generation"]["n_samples"] == 2
    assert "pass@1 0.0%" in capsys.readouterr().out
    # the written samples score the same in scoring mode
    assert script.main(["--problems", str(problems_file), "--samples", str(out / "samples.jsonl"),
                        "--out_dir", str(tmp_path / "rescored")]) == 0
    rescored = json.loads((tmp_path / "rescored" / "summary.json").read_text(encoding="utf-8"))
    assert rescored["result_counts"] == summary["result_counts"]


# ------------------------------------------------------------------ isolation from the network

needs_namespaces = pytest.mark.skipif(not network_isolation()[0], reason="no unprivileged user+net namespace on "
                                      f"this machine ({network_isolation()[1]}): samples keep the network here")


@needs_namespaces
def test_a_sample_cannot_reach_a_socket_on_this_machine():
    """The test listens on 127.0.0.1; the sample's 127.0.0.1 is its own namespace's loopback, which is down."""
    import socket

    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(3)
    port = listener.getsockname()[1]
    try:
        sample = hostile("t/add", f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)")
        rows = score_samples([{"task_id": "t/add", "output": sample}], BY_ID, timeout=5, memory_mb=512)
        with pytest.raises(socket.timeout):
            listener.accept()  # the sample ran to its end already: nothing is waiting to be accepted
    finally:
        listener.close()
    assert rows[0]["result"] == FAILED and "OSError" in rows[0]["error"], rows[0]


@needs_namespaces
def test_inside_the_namespace_the_limits_and_the_guard_still_hold():
    program = ("import os, resource, socket\n"
               "assert [name for _, name in socket.if_nameindex()] == ['lo'], socket.if_nameindex()\n"
               "assert resource.getrlimit(resource.RLIMIT_AS) == (512 << 20, 512 << 20)\n"
               "assert resource.getrlimit(resource.RLIMIT_FSIZE)[0] == 64 << 20\n"
               "assert os.getuid() == %d and open('own.txt', 'w').write('x') == 1\n"
               "try:\n    os.kill(os.getppid(), 0)\nexcept PermissionError as err:\n    assert 'disabled' in str(err)\n"
               "else:\n    raise AssertionError('os.kill is not guarded')\n" % os.getuid())
    assert run_program(program, timeout=5, memory_mb=512) == (PASSED, None)


def test_where_namespaces_are_forbidden_the_first_line_says_so_and_scoring_goes_on(problems_file, tmp_path):
    """A kernel that forbids them is made here: `unshare -r` gives a user namespace whose own limit of
    nested user namespaces is then set to 0, so the evaluator's probe is refused as on such a machine."""
    import shutil
    import subprocess

    forbid = "echo 0 > /proc/sys/user/max_user_namespaces"
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-r", "sh", "-c", forbid],
                                                         capture_output=True).returncode:
        pytest.skip("`unshare -r` with a per-namespace user.max_user_namespaces is not available here, "
                    "so a machine without namespaces cannot be made")
    samples = write_jsonl(tmp_path / "s.jsonl", [{"task_id": t, "output": canonical(t)} for t in BY_ID])
    command = (f"{forbid} && exec {sys.executable} evaluate.py --problems "
               f"{problems_file} --samples {samples} --out_dir {tmp_path / 'out'} --workers 2")
    proc = subprocess.run(["unshare", "-r", "sh", "-c", command], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("isolation: none from the network") and "unshare" in lines[0], lines
    assert lines[1].startswith("pass@1 100.0%"), lines
