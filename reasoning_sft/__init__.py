"""Shared logic of the reasoning -> intention -> code SFT toolkit.

Every stage script (prepare_llamatokenizer.py, filter_data.py, encode_dataset.py,
training/train_*.py, generate.py) is a thin argparse wrapper around this package,
so the template, the special tokens and the artifact checks exist exactly once.
"""

__version__ = "0.1.0"
