"""Serving: generation (transformers or vLLM backend) and the export of a trained model for serving engines."""
