"""Training: the one loop (loop.py) behind training/train_full.py and train_peft.py, and what it uses."""
