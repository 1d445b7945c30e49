"""What the training loop reports: metrics.jsonl, TensorBoard when installed, a progress bar, throughput."""

import json
import os
import time

from .progress import progress


class MetricsLog:
    """metrics.jsonl (one object per logged step), TensorBoard when installed, a progress bar."""

    def __init__(self, accelerator, output_dir, total_steps, start_step):
        self.main = accelerator.is_main_process
        self.path = os.path.join(output_dir, "metrics.jsonl")
        self.writer = None
        self.bar = None
        self.last = {}  # the newest train and eval losses, for the closing line
        if self.main:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.writer = SummaryWriter(os.path.join(output_dir, "tensorboard"))
            except ImportError:
                pass
            self.bar = progress(total=total_steps, initial=start_step, desc="train", unit="step")

    def write(self, record):
        if not self.main:
            return
        self.last.update({k: v for k, v in record.items() if k in ("loss", "eval_loss")})
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "step":
                    self.writer.add_scalar(key, value, record["step"])
        if self.bar is not None and not self.bar.disable:
            self.bar.set_postfix(loss=f"{record.get('loss', float('nan')):.4f}", lr=f"{record.get('lr', 0):.2e}",
                                 tok_s=f"{record.get('tokens_per_s', 0):.0f}")
        else:  # not a terminal: plain log lines
            print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()
                           if not isinstance(v, dict)), flush=True)

    def advance(self):
        if self.bar is not None:
            self.bar.update(1)

    def closing_summary(self):
        """', loss X, eval loss Y' from the newest records, for the trainer's last line."""
        return "".join(f", {name.replace('_', ' ')} {self.last[name]:.4f}" for name in ("loss", "eval_loss")
                       if name in self.last)

    def close(self):
        if self.bar is not None:
            self.bar.close()
        if self.writer:
            self.writer.close()


class Throughput:
    """Real tokens per second and batching efficiency (real tokens / token slots computed) since the last log."""

    def __init__(self):
        self.real, self.slots, self.t0 = 0, 0, time.time()

    def add(self, batches):
        for b in batches:
            mask = b.get("attention_mask")
            self.real += int(mask.sum()) if mask is not None else b["input_ids"].numel()
            self.slots += b["input_ids"].numel()

    def rates(self, world_size):
        elapsed = max(time.time() - self.t0, 1e-9)
        # ranks carry near-equal tokens by construction, so this rank's rate x world size
        return {"tokens_per_s": self.real * world_size / elapsed, "batch_efficiency": self.real / max(self.slots, 1)}


def forget_steps_after(metrics_path, step):
    """Drop metrics of steps the resumed run will redo, so every step is logged once."""
    if not os.path.exists(metrics_path):
        return
    with open(metrics_path, encoding="utf-8", errors="replace") as f:
        kept = [line for line in f if _step_of(line) is not None and _step_of(line) <= step]
    tmp = metrics_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(kept)
    os.replace(tmp, metrics_path)


def _step_of(line):
    """The step of a metrics line; None for a line a kill cut short (the process died mid-write)."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record.get("step") if isinstance(record, dict) and line.endswith("\n") else None
