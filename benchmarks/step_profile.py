"""Where one optimizer step's time goes: torch.profiler around one step of a trainer, summarized.

gpu_check's worker installs this in the trainer's process (--profile_step N): the Nth call of
reasoning_sft.train.loop.optimizer_step runs under the profiler, with named ranges around the loss head
(ChunkedLossLM._loss_with_gradients) and the forward/backward (train.loop.train_step), so the step's
GPU kernels can be split by category:

- loss head: every kernel launched inside the loss head's range (its matmuls included: the head
  computes its gradients in forward, see fused_head.py);
- optimizer: kernels of the step outside forward/backward (gradient clipping, the optimizer's update,
  zero_grad);
- the rest by kernel name: attention (flash / varlen / fmha), matmul (gemm / cutlass / cuBLAS),
  memory copies, and element-wise/normalization (everything else: RMSNorm, RoPE, SwiGLU, casts, adds);
- host waits/idle: the step's wall time (synchronized) minus the time at least one kernel ran.

On CPU (--smoke) there are no kernels; the same split is made over the CPU operators' self time,
which exercises the code and means nothing about a GPU.
"""

import contextlib
import re
import time

from tables import markdown_table

from reasoning_sft.train.loop import PROFILE_FORWARD_BACKWARD, Callback
from reasoning_sft.train.modeling import PROFILE_LOSS_HEAD

STEP = "gpu_check:step"
RANGES = (STEP, PROFILE_LOSS_HEAD, PROFILE_FORWARD_BACKWARD)  # the profile ranges this split reads
CATEGORIES = ["matmul", "attention", "element-wise/normalization", "loss head", "optimizer", "memory copies",
              "host waits/idle"]
BY_NAME = [  # first match wins; attention before matmul (flash kernels' names can contain "gemm")
    ("attention", re.compile(r"flash|fmha|attention|varlen|sdpa|_efficient_attention", re.I)),
    ("matmul", re.compile(r"gemm|cutlass|cublas|nvjet|xmma|aten::(mm|addmm|bmm|baddbmm|_int_mm)$|matmul", re.I)),
    ("memory copies", re.compile(r"memcpy|memset|aten::copy_$|aten::to$|aten::_to_copy$", re.I)),
]


def category(name, ranges):
    """The category of a kernel (or a CPU operator) named `name` launched inside `ranges` (nearest first)."""
    for r in ranges:
        if r == PROFILE_LOSS_HEAD:
            return "loss head"
        if r == PROFILE_FORWARD_BACKWARD:
            break
    else:
        if ranges:  # inside the profiled step but outside forward/backward
            return "optimizer"
    for label, pattern in BY_NAME:
        if pattern.search(name):
            return label
    return "element-wise/normalization"


def ranges_of(event):
    """Names of the ranges (RANGES) enclosing a profiler event, nearest first."""
    out, parent = [], event.cpu_parent
    while parent is not None:
        if parent.name in RANGES:
            out.append(parent.name)
        parent = parent.cpu_parent
    return out


def busy_us(intervals):
    """Length of the union of (start, end) intervals: time at least one kernel was running."""
    total, end = 0.0, None
    for a, b in sorted(intervals):
        if end is None or a > end:
            total += b - a
            end = b
        elif b > end:
            total += b - end
            end = b
    return total


def summarize(events, wall_s, device):
    """{categories: {name: ms}, top_kernels: [...], wall_ms, ...} from the profiler's events of one step."""
    cuda = device == "cuda"
    items = []  # (name, category, microseconds)
    intervals = []
    for e in events:
        if cuda:
            for k in getattr(e, "kernels", []):
                items.append((k.name, category(k.name, ranges_of(e)), k.duration))
            if str(e.device_type).endswith("CUDA"):
                intervals.append((e.time_range.start, e.time_range.end))
        elif str(e.device_type).endswith("CPU") and e.name not in RANGES and e.self_cpu_time_total:
            items.append((e.name, category(e.name, ranges_of(e)), e.self_cpu_time_total))
    wall_us = wall_s * 1e6
    busy = busy_us(intervals) if cuda else min(wall_us, sum(us for _, _, us in items))
    split = {c: 0.0 for c in CATEGORIES}
    for _, cat, us in items:
        split[cat] += us / 1e3
    split["host waits/idle"] = max(0.0, wall_us - busy) / 1e3
    by_kernel = {}  # (name, category): the same kernel in forward and in the optimizer counts twice
    for name, cat, us in items:
        total, count = by_kernel.get((name, cat), (0.0, 0))
        by_kernel[(name, cat)] = (total + us, count + 1)
    top = sorted(by_kernel.items(), key=lambda kv: -kv[1][0])[:10]
    return {"device": device, "wall_ms": wall_us / 1e3, "busy_ms": busy / 1e3,
            "kernel_ms": sum(us for _, _, us in items) / 1e3, "categories_ms": split,
            "top_kernels": [{"name": name, "ms": total / 1e3, "calls": count, "category": cat}
                            for (name, cat), (total, count) in top]}


def markdown(title, summary):
    """A results.md section: the split (share of the step's wall time) and the top 10 kernels."""
    wall = summary["wall_ms"] or 1.0
    unit = "kernel" if summary["device"] == "cuda" else "CPU operator (smoke: not meaningful)"
    lines = [f"### Step profile: {title}", "",
             f"One optimizer step, {summary['wall_ms']:.1f} ms wall; {unit} time {summary['kernel_ms']:.1f} ms "
             f"(kernels can overlap; categories are summed kernel time, idle is wall minus busy).", "",
             markdown_table(("category", "ms", "share of the step"),
                            [(cat, f"{ms:.1f}", f"{100 * ms / wall:.1f}%")
                             for cat, ms in summary["categories_ms"].items()], right=(1, 2)),
             "", f"Top 10 by time ({unit}s):", ""]
    kernels = [(i, f"`{k['name'] if len(k['name']) <= 90 else k['name'][:87] + '...'}`", k["category"], k["calls"],
                f"{k['ms']:.2f}") for i, k in enumerate(summary["top_kernels"], 1)]
    lines.append(markdown_table(("#", "name", "category", "calls", "ms"), kernels, right=(0, 3, 4)))
    return "\n".join(lines)


class StepProfiler(Callback):
    """Profiles the Nth optimizer step of a run (a trainer callback); on_summary(dict) gets the result.

    The trainer labels its forward/backward and loss head itself (train.loop.PROFILE_FORWARD_BACKWARD,
    modeling.PROFILE_LOSS_HEAD); what runs outside them in the step is the optimizer.
    """

    def __init__(self, step_to_profile, on_summary):
        self.step_to_profile, self.on_summary = step_to_profile, on_summary

    @contextlib.contextmanager
    def step_context(self, trainer):
        if trainer.position.global_step + 1 != self.step_to_profile:
            yield
            return
        import torch
        from torch.profiler import ProfilerActivity, profile, record_function

        cuda = torch.cuda.is_available()
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        sync = torch.cuda.synchronize if cuda else (lambda: None)
        sync()
        with profile(activities=activities) as prof:
            t0 = time.perf_counter()
            with record_function(STEP):
                yield
            sync()
            wall = time.perf_counter() - t0
        try:
            self.on_summary(summarize(prof.events(), wall, "cuda" if cuda else "cpu"))
        except Exception as err:  # noqa: BLE001 (a profile that cannot be summarized must not fail the run)
            self.on_summary({"error": f"{type(err).__name__}: {err}"})
