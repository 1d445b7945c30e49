"""Stages 1-3: the training format (template, format), records, tokenizer, filtering, encoding, batching."""
