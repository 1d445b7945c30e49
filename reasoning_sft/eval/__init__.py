"""Evaluation: HumanEval-style problems, the sandbox that runs a sample against its tests, pass@k."""
