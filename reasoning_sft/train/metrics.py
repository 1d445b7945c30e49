"""What the training loop reports: metrics.jsonl, accelerate's trackers (--report_to), a progress bar, throughput."""

import importlib.util
import json
import math
import os
import time

from reasoning_sft.progress import progress

REPORT_TO = ("tensorboard", "wandb", "none")
TRACKER_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb"}
# accelerate's run name; TensorBoard writes to OUTPUT_DIR/<it>, where the loop always wrote its events
TRACKER_PROJECT = {"tensorboard": "tensorboard", "wandb": "reasoning_sft"}


def default_report_to():
    """TensorBoard where it is installed (what the loop always did), else none: nothing to install for a default."""
    return "tensorboard" if importlib.util.find_spec("tensorboard") is not None else "none"


def check_report_to(report_to):
    """A tracker whose package is missing: one clear line, before anything starts."""
    from reasoning_sft.errors import UserError

    package = TRACKER_PACKAGES.get(report_to)
    if package and importlib.util.find_spec(package) is None:
        raise UserError(f"--report_to {report_to} needs the {package} package: pip install {package}")


def tracker_config(args):
    """The run's arguments as trackers store hyperparameters: scalars and strings only."""
    return {k: v for k, v in vars(args).items() if isinstance(v, (bool, int, float, str))}


class MetricsLog:
    """metrics.jsonl (one object per logged step), accelerate's trackers (--report_to), a progress bar."""

    def __init__(self, accelerator, output_dir, total_steps, start_step, report_to="none", config=None):
        self.accelerator = accelerator
        self.main = accelerator.is_main_process
        self.path = os.path.join(output_dir, "metrics.jsonl")
        self.tracking = report_to != "none"
        self.bar = None
        self.last = {}  # the newest train and eval losses, for the closing line
        # steps skipped as not finite, before a --resume too (the closing line says how many)
        self.skipped = _count_skipped(self.path) if self.main and start_step else 0
        if self.tracking:  # every rank calls it; accelerate starts the tracker on the main process only
            accelerator.init_trackers(TRACKER_PROJECT[report_to], config=config or {})
        if self.main:
            self.bar = progress(total=total_steps, initial=start_step, desc="train", unit="step")

    def write(self, record):
        if not self.main:
            return
        record = finite_or_none(record)  # strict JSON: jq and browsers refuse a bare NaN or Infinity
        self.last.update({k: v for k, v in record.items() if k in ("loss", "eval_loss") and v is not None})
        self.skipped += bool(record.get("skipped"))
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, allow_nan=False) + "\n")
        if self.tracking:
            self.accelerator.log({k: v for k, v in record.items() if isinstance(v, (int, float)) and k != "step"},
                                 step=record["step"])
        if self.bar is not None and not self.bar.disable:
            self.bar.set_postfix(loss=_short(record.get("loss"), ".4f"), lr=_short(record.get("lr"), ".2e"),
                                 tok_s=_short(record.get("tokens_per_s"), ".0f"))
        else:  # not a terminal: plain log lines
            print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()
                           if not isinstance(v, dict)), flush=True)

    def advance(self):
        if self.bar is not None:
            self.bar.update(1)

    def closing_summary(self):
        """', loss X, eval loss Y' from the newest records (and how many steps were skipped), for the last line."""
        skipped = f", {self.skipped} skipped (not finite)" if self.skipped else ""
        return skipped + "".join(f", {name.replace('_', ' ')} {self.last[name]:.4f}" for name in ("loss", "eval_loss")
                                 if name in self.last)

    def close(self):
        if self.bar is not None:
            self.bar.close()
        # the trackers are closed by accelerator.end_training(), which run() calls on every exit path


def finite_or_none(value):
    """A value as strict JSON can hold it: NaN and +-Infinity become None (null), in lists and dicts too."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    return value


def _short(value, spec):
    """A progress-bar field; '-' for a value that is missing or was not finite."""
    return "-" if value is None else format(value, spec)


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


def _count_skipped(metrics_path):
    """Skipped-step records already in metrics.jsonl (a resumed run's earlier part)."""
    if not os.path.exists(metrics_path):
        return 0
    with open(metrics_path, encoding="utf-8", errors="replace") as f:
        return sum(1 for line in f if _record_of(line).get("skipped"))


def _record_of(line):
    """The object of a metrics line; {} for a line that is not one."""
    try:
        record = json.loads(line)
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def _step_of(line):
    """The step of a metrics line; None for a line a kill cut short (the process died mid-write)."""
    return _record_of(line).get("step") if line.endswith("\n") else None
