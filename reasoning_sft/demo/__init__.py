"""The demo's own parts: a tiny Llama model and tokenizer built from the sample, its pre-training, the report."""
