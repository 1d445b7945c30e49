"""reasoning_sft: supervised fine-tuning of code LLMs on reasoning -> intention -> code targets.

The subpackages follow the pipeline, and imports go one way only (tests/test_layout.py checks it):

    data   template and its parser, records, tokenizer, filtering, encoding, batching
    train  the loop behind training/train_*.py, model loading and loss head, checkpoints, precision, plans
    serve  generation (transformers or vLLM) and the export for serving engines
    eval   pass@k: problems, the sandbox that runs samples, scoring
    demo   the demo's tiny model, its pre-training, the report

A subpackage imports only the ones above it in this list. The shared modules at this level
(errors, progress, digests, artifacts, plots) import nothing but each other and data.
"""

__version__ = "0.1.0"
