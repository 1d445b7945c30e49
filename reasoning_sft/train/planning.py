"""`--plan`: a run's peak GPU memory per category, and whether it fits, before any weight is read.

The model is built from its config.json under FakeTensorMode (shapes and dtypes, no storage) by
the trainer's own build_model: tokenizer resize with the tag rows, LoRA with its trainable token
rows, the --precision policy's dtype, --flash_attn, gradient checkpointing. prepare_training
builds the loss wrapper, optimizer and schedule as for the run; the optimizer steps once on zero
gradients (step 1 as far as memory goes: its state now exists), and the trainer's own optimizer_step
runs on the largest micro-batch of the run's schedule (--batch_tokens, packing), after another micro-batch
of its step when --grad_accum > 1 (its gradients then exist during the largest one's forward, as in the
real step; planned_micro_batches), all under torch's MemTracker, which tracks every tensor's storage by
category: parameters, gradients, optimizer state, activations, temporaries. The categories are those at
the moment of the peak (with no gradient checkpointing and --grad_accum 1, the end of the forward pass,
before any gradient exists). --precision bf16's fp32
copies of one parameter at a time are made outside the wrapped optimizer's step and count as
activations there.

The step runs on fake CPU tensors: fake CUDA tensors fail on a CPU-only torch. The parameters are
fake; the batch stays real (so the trainer's data-dependent host logic, its target positions and
sequence boundaries, runs as it does for real). What cannot run on fake tensors is accounted for by
its formula, and the output says so:

- --adam8bit: bitsandbytes' AdamW8bit cannot be built on fake tensors. AdamW8bitState allocates
  the state it keeps (tests/test_plan.py checks it against the real one on CPU): per parameter of
  >= 4096 elements two uint8 moments plus two fp32 absmax per 256-element block; below that, two
  fp32 moments (bitsandbytes' min_8bit_size).
- --flash_attn: the varlen kernel is a CUDA call. PlannedVarlen saves what flash attention saves
  for backward (q, k, v, the output and an fp32 log-sum-exp [heads, tokens]) and allocates its
  backward's fp32 dq accumulator; the CPU check is the same layout against sdpa's flash kernel on
  CPU. The plumbing around it (cu_seqlens, GQA handling) is the trainer's (attention.py).
- the launch: FSDP's sharding (model states / world, plus the gathered layers) and DDP's gradient
  buckets (one more copy of the gradients) by formula; the fake step runs as one process.
- CUDA's caching allocator rounds each block to 512 bytes (not counted: under 0.1% here), and
  max_memory_allocated, which the plan predicts, counts neither the CUDA context nor fragmentation:
  FIT_FRACTION of the card is what a plan may use and still be said to fit.
"""

import contextlib
import json
import math
import os
import time
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

from reasoning_sft.errors import UserError
from reasoning_sft.train import attention, precision
from reasoning_sft.train.loop import (
    build_model,
    check_args,
    load_data,
    micro_batches,
    optimizer_step,
    param_groups,
    prepare_training,
)

GIB = 2 ** 30
FIT_FRACTION = 0.95   # assumed room for the CUDA context and the allocator's fragmentation (not measured)
MIN_8BIT_SIZE = 4096  # bitsandbytes' AdamW8bit keeps fp32 state for smaller tensors
BLOCK_8BIT = 256      # its blockwise quantization: one fp32 absmax per block, per moment
CATEGORIES = ("params", "grads", "optimizer", "activations", "temporaries")
PLANNED_KERNELS = ("flash-attn", "torch-varlen", "torch-varlen-repeat-kv")


# ---------------------------------------------------------------- what runs in place of CUDA-only code

class AdamW8bitState(torch.optim.Optimizer):
    """bitsandbytes' AdamW8bit as far as memory goes: the state it allocates at its first step, and an
    update in place. The weights' values are of no interest on fake tensors."""

    def __init__(self, params, lr):
        super().__init__(params, {"lr": lr})

    @staticmethod
    def state_for(p):
        if p.numel() < MIN_8BIT_SIZE:
            return {"state1": torch.zeros_like(p, dtype=torch.float32),
                    "state2": torch.zeros_like(p, dtype=torch.float32)}
        blocks = math.ceil(p.numel() / BLOCK_8BIT)
        return {"state1": torch.zeros_like(p, dtype=torch.uint8), "state2": torch.zeros_like(p, dtype=torch.uint8),
                "absmax1": p.new_zeros(blocks, dtype=torch.float32),
                "absmax2": p.new_zeros(blocks, dtype=torch.float32)}

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if not self.state[p]:
                    self.state[p].update(self.state_for(p))
                p.add_(p.grad, alpha=-group["lr"])  # fused kernel: in place, no temporaries


def state_bytes(optimizer, shared=()):
    """Bytes of tensor state an optimizer holds (tensors in `shared`, e.g. bitsandbytes' qmaps, once)."""
    seen, total = set(), 0
    for state in optimizer.state.values():
        for v in state.values():
            if torch.is_tensor(v) and v.dim() > 0:
                key = id(v) if any(v is s for s in shared) else None
                if key in seen:
                    continue
                if key is not None:
                    seen.add(key)
                total += v.numel() * v.element_size()
    return total


class PlannedVarlen(torch.autograd.Function):
    """A varlen flash-attention call as far as memory goes: out = q's shape; saved q, k, v, out and the
    fp32 log-sum-exp [Hq, T]; backward allocates the fp32 dq accumulator and dq, dk, dv (and, with
    native GQA, dk/dv over all query heads before they are summed per KV head)."""

    @staticmethod
    def forward(ctx, q, k, v):
        out = torch.empty_like(q)
        lse = q.new_empty((q.shape[1], q.shape[0]), dtype=torch.float32)
        ctx.save_for_backward(q, k, v, out, lse)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, out, lse = ctx.saved_tensors
        dq_accum = torch.empty_like(q, dtype=torch.float32)
        delta = torch.empty_like(lse)
        if k.shape[1] != q.shape[1]:
            dk_all, dv_all = torch.empty_like(q), torch.empty_like(q)
            group = q.shape[1] // k.shape[1]
            dk = dk_all.view(q.shape[0], k.shape[1], group, q.shape[2]).sum(2)
            dv = dv_all.view(q.shape[0], k.shape[1], group, q.shape[2]).sum(2)
            del dk_all, dv_all
        else:
            dk, dv = torch.empty_like(k), torch.empty_like(v)
        dq = dq_accum.to(q.dtype)
        del dq_accum, delta
        return dq, dk, dv


class CudaDropout(TorchFunctionMode):
    """Dropout as CUDA runs it: torch's fused kernel (native_dropout), which keeps a 1-byte mask for backward.
    On CPU, F.dropout multiplies by a noise tensor of the input's dtype and keeps that (4 bytes an element
    for fp32 input: LoRA's adapters cast their input to fp32), which a fake CPU step would otherwise count."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.nn.functional.dropout:
            named = dict(zip(("input", "p", "training", "inplace"), args), **kwargs)
            p, training = named.get("p", 0.5), named.get("training", True)
            if training and 0 < p < 1 and not named.get("inplace", False):
                return torch.native_dropout(named["input"], p, True)[0]
        return func(*args, **kwargs)


def planned_varlen_attn(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, scale=None,
                        window_size=(-1, -1), enable_gqa=False):
    """torch.nn.attention.varlen.varlen_attn's signature (2.11+), planned."""
    return PlannedVarlen.apply(query, key, value)


def planned_varlen_attn_no_gqa(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, scale=None,
                               window_size=(-1, -1)):
    """The same without enable_gqa (torch 2.11's): the trainer repeats the KV heads before the call."""
    return PlannedVarlen.apply(query, key, value)


def planned_kernel(name):
    """The varlen kernel --flash_attn would run, planned: flash-attn (native GQA), torch's varlen_attn with
    enable_gqa, or without it (KV heads repeated by attention.torch_varlen_kernel, as torch 2.11 does)."""
    if name == "flash-attn":
        return attention.Kernel("planned flash-attn", "flash-attn's varlen kernel, planned by formula",
                                lambda q, k, v, cu, longest, scale: PlannedVarlen.apply(q, k, v), torch.bfloat16)
    fn = planned_varlen_attn if name == "torch-varlen" else planned_varlen_attn_no_gqa
    kernel = attention.torch_varlen_kernel(fn)
    return replace(kernel, name=f"planned {name}", description=f"torch varlen_attn ({name}), planned by formula")


def default_kernel_name():
    """What --flash_attn would select on a GPU node with this software: flash-attn if it is installed,
    else torch's varlen_attn (with enable_gqa where the installed torch has it)."""
    import importlib.util
    import inspect

    if importlib.util.find_spec("flash_attn") is not None:
        return "flash-attn"
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return "flash-attn"
    return "torch-varlen" if "enable_gqa" in inspect.signature(varlen_attn).parameters else "torch-varlen-repeat-kv"


# ---------------------------------------------------------------- the launch

@dataclass(frozen=True)
class Launch:
    world: int             # processes in all
    fsdp: bool
    mixed_precision: str   # no | bf16 | fp16
    source: str            # where it was read, in words


def launch_from_config(path):
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            config = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError) as err:
        raise UserError(f"--accelerate_config {path}: cannot read it ({type(err).__name__}: {err})") from None
    world = int(config.get("num_processes", 1) or 1)  # accelerate's count: all machines' processes
    fsdp = str(config.get("distributed_type", "NO")).upper() == "FSDP"
    fsdp_config = config.get("fsdp_config") or {}
    if fsdp and int(fsdp_config.get("fsdp_version", 1) or 1) == 2:  # FSDP2: a bool; true is FULL_SHARD
        full_shard = str(fsdp_config.get("fsdp_reshard_after_forward", True)).lower() == "true"
    else:
        full_shard = str(fsdp_config.get("fsdp_sharding_strategy", "FULL_SHARD")) in ("FULL_SHARD", "1")
    if fsdp and not full_shard:
        raise UserError(f"--accelerate_config {path}: --plan knows FSDP's FULL_SHARD only (FSDP2: "
                        "fsdp_reshard_after_forward: true)")
    return Launch(world, fsdp, str(config.get("mixed_precision", "no") or "no"), path)


def launch_settings(args, accelerator=None):
    """The launch the plan is for: the running accelerator's, --accelerate_config's, or this process's."""
    if accelerator is not None:
        from accelerate.utils import DistributedType
        return Launch(accelerator.num_processes, accelerator.distributed_type == DistributedType.FSDP,
                      str(accelerator.mixed_precision), "this launch")
    if args.accelerate_config:
        return launch_from_config(args.accelerate_config)
    env = os.environ
    return Launch(int(env.get("WORLD_SIZE", 1)), env.get("ACCELERATE_USE_FSDP", "false").lower() == "true",
                  env.get("ACCELERATE_MIXED_PRECISION", "no"), "this process (no --accelerate_config)")


class _Autocast(torch.nn.Module):
    """The loss wrapper's forward under autocast, as accelerate's prepare() makes it under mixed precision."""

    def __init__(self, module, dtype):
        super().__init__()
        self.module, self.dtype = module, dtype

    def forward(self, **batch):
        with torch.autocast("cpu", dtype=self.dtype):
            return self.module(**batch)


class PlanAccelerator:
    """What train_step, optimizer_step and prepare_training use of accelerate's Accelerator, for one process
    on fake CPU tensors (accelerate's own is a process-wide singleton that the real run may still need)."""

    device = torch.device("cpu")
    num_processes, process_index, is_main_process = 1, 0, True
    scaler = None

    def __init__(self, mixed_precision):
        from accelerate.utils import DistributedType

        self.mixed_precision = mixed_precision
        self.distributed_type = DistributedType.NO

    def prepare(self, wrapper, optimizer):
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.mixed_precision)
        return (_Autocast(wrapper, dtype) if dtype else wrapper), optimizer

    def reduce(self, tensor, reduction="sum"):
        return tensor

    def no_sync(self, model):
        return contextlib.nullcontext()

    def backward(self, loss):
        loss.backward()

    def clip_grad_norm_(self, parameters, max_norm):
        return torch.nn.utils.clip_grad_norm_(parameters, max_norm)

    def register_for_checkpointing(self, *objects):
        pass

    def register_save_state_pre_hook(self, hook):
        pass

    def register_load_state_pre_hook(self, hook):
        pass

    def unwrap_model(self, model):
        return model


class _NoHook:
    def remove(self):
        pass


def memory_tracker():
    """torch's MemTracker, for models with frozen parameters too (LoRA's base): it hooks every parameter's
    gradient, which a parameter without requires_grad refuses; those get a do-nothing entry instead."""
    from torch.distributed._tools.mem_tracker import MemTracker

    class Tracker(MemTracker):
        def _track_module_params_and_buffers(self, module, install_grad_hooks=True):
            for p in module.parameters():
                if not p.requires_grad and self._param_to_grad_hook_handles.get(p) is None:
                    self._param_to_grad_hook_handles[p] = (_NoHook(), _NoHook())
            return super()._track_module_params_and_buffers(module, install_grad_hooks)

        def _pre_fw_hook(self, module, inputs):
            # The root module's forward again, outside backward: the next micro-batch of the step (--grad_accum)
            # or the next step. torch's tracker keeps per-module stats for one iteration and refuses a second;
            # the plan reads only the whole step's peak (below), so it forgets them, as reset_mod_stats()
            # between iterations does. Parameters, gradients and optimizer state stay tracked: the gradients
            # accumulated by the micro-batches before stay in the count, as they stay in memory.
            if module in self.memory_tracking and not self._mod_tracker.is_bw and \
                    set(self._mod_tracker.parents) - {self._mod_tracker.get_known_fqn(module)} == {"Global"}:
                self.reset_mod_stats()
            super()._pre_fw_hook(module, inputs)

        def _update_peak_stats(self, peak_state):
            # the whole step's peak only: torch's also updates each active module's own peak, scanning
            # every module seen so far at every op (a 13B LoRA step: thousands of modules, minutes)
            for dev, snap in self._curr_mem_snap.items():
                if self._peak_mem.get(dev, 0) < snap["Total"]:
                    self._peak_mem[dev] = snap["Total"]
                    self._peak_mem_snap[dev] = dict(snap)

    return Tracker()


def finite_verdict(loss_sum, grad_norm, loss_scaled, stop_votes):
    """A fake step's verdict: finite, no stop (its values do not exist to be read)."""
    return True, False


# ---------------------------------------------------------------- the plan

@dataclass
class Plan:
    per_device: dict        # GiB by CATEGORIES, and "peak"
    fake_step: dict         # GiB by category of the fake single-process step, and "peak"
    gpu_gib: float          # None: no card given or visible
    fits: bool              # None without a card
    notes: list             # what was accounted for by formula
    setup: dict             # what was planned, in words/numbers
    suggestion: str         # the flag that would help most (when it does not fit)
    checkpoint_gib: float   # a checkpoint on disk
    final_save_host_gib: float  # host memory the final save needs
    final_weights_gib: float
    seconds: float

    def summary(self):
        """The last line --plan prints (one JSON object)."""
        d = {f"{k}_gib": round(self.per_device[k], 3) for k in ("params", "grads", "optimizer", "activations")}
        d.update(temporaries_gib=round(self.per_device["temporaries"], 3), peak_gib=round(self.per_device["peak"], 3),
                 gpu_gib=self.gpu_gib, fits=self.fits, world_size=self.setup["world_size"],
                 checkpoint_gib=round(self.checkpoint_gib, 3), final_save_host_gib=round(self.final_save_host_gib, 3))
        return d


def micro_batch_slots(lengths, indices, packed):
    """Token slots of one micro-batch: its tokens when packed, its longest row times its rows when padded."""
    ls = lengths[list(indices)]
    return int(ls.sum()) if packed else int(ls.max()) * len(ls)


def largest_step(data, trainer):
    """The optimizer step of the first epoch whose largest micro-batch (in token slots) is the largest, the
    rank it is largest on, and its slots. The plan's schedule is one process's: --batch_tokens is per device,
    so a rank's micro-batches fill the same budget under any world size."""
    lengths = np.asarray(data.train_set["length"])
    best, best_slots = None, -1
    for step in trainer.plans[0]:
        for micro in step:
            for rank, indices in enumerate(micro):
                if not indices:
                    continue
                slots = micro_batch_slots(lengths, indices, data.packed)
                if slots > best_slots:
                    best, best_slots = (step, rank), slots
    if best is None:
        raise UserError(f"{trainer.args.train_dir}: no training rows to plan a step with")
    return best[0], best[1], best_slots


def planned_micro_batches(data, step, rank, grad_accum=1, schedule=()):
    """The part of `step` the plan runs on `rank`, in this order: its smallest other micro-batch, then its
    largest one (just the largest with --grad_accum 1).

    The real step runs its micro-batches one after another, each backward adding to the gradients the ones
    before left (train_step). From the second micro-batch on, memory holds the same things at the same
    sizes (the weights, the accumulated gradients, one micro-batch's activations), so the worst of any
    order is the largest micro-batch run after another: two are planned for any --grad_accum > 1, each
    tracked as the real step runs it (the tracker forgets per-module stats between them). Where the largest
    micro-batch is alone in its step (an epoch's short last step) but --grad_accum > 1, the smallest
    micro-batch of another step of `schedule` goes before it: other steps run it after one."""
    lengths = np.asarray(data.train_set["length"])

    def slots(micro):
        return micro_batch_slots(lengths, micro[rank], data.packed) if micro[rank] else 0

    sized = sorted((slots(micro), i) for i, micro in enumerate(step))
    largest = step[sized[-1][1]]
    if len(sized) > 1:
        return [step[sized[0][1]], largest]
    others = [micro for other in schedule if other is not step for micro in other]
    if grad_accum > 1 and others:
        return [min(others, key=slots), largest]
    return [largest]


def _gib(snapshot):
    from torch.distributed._tools.mem_tracker import _MemRefType

    get = lambda *types: sum(snapshot.get(t, 0) for t in types) / GIB  # noqa: E731
    return {"params": get(_MemRefType.PARAM, _MemRefType.BUFFER), "grads": get(_MemRefType.GRAD),
            "optimizer": get(_MemRefType.OPT), "activations": get(_MemRefType.ACT),
            "temporaries": get(_MemRefType.TEMP, _MemRefType.OTH), "peak": snapshot.get("Total", 0) / GIB}


def fake_model(args, mode, data, policy, kernel_name):
    """The run's model as build_model makes it, from config.json alone, on fake tensors; and its tag rows."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    kernel = attention.kernel_override(planned_kernel(kernel_name)) if args.flash_attn else contextlib.nullcontext()
    # built on the meta device, then given fake CPU storage: a Parameter made of a fake tensor cannot be
    # moved with .to() (torch swaps it in place, and fake Parameters carry a weakref), which peft does
    with kernel, torch.device("meta"):
        model, tag_rows = build_model(args, mode, data.tokenizer, policy, weights=False)
    with FakeTensorMode(allow_non_fake_inputs=True):
        to_empty_keeping_ties(model, "cpu")
    return model, tag_rows


def to_empty_keeping_ties(model, device):
    """model.to_empty(device=device), except that a tensor shared by several modules stays shared.

    nn.Module.to_empty replaces a Parameter once per module that holds it, so a tied head (StarCoder2,
    Qwen2.5 0.5B-3B: the head's weight is the embedding's Parameter) came out as a second matrix: the
    plan counted its weights, gradient and optimizer state twice.
    """
    new = {}
    for module in model.modules():
        for table in (module._parameters, module._buffers):
            for name, tensor in table.items():
                if tensor is None:
                    continue
                if id(tensor) not in new:
                    empty = torch.empty_like(tensor, device=device)
                    new[id(tensor)] = (torch.nn.Parameter(empty, requires_grad=tensor.requires_grad)
                                       if isinstance(tensor, torch.nn.Parameter) else empty)
                table[name] = new[id(tensor)]


def measure_step(args, mode, launch, kernel_name, weights_dtype=None, fake=True):
    """Build the model and optimizer and run the trainer's step under MemTracker: on fake tensors (the plan:
    the optimizer state primed, then one step), or with fake=False on real ones, the weights loaded and two
    real steps (what tests/test_plan.py compares the plan with, on CPU at small sizes; no --flash_attn).

    Returns (peak snapshot in GiB by category, facts about the model and step)."""
    data = load_data(args)
    policy = precision.resolve(args.precision, mode.name, args.flash_attn, fsdp=launch.fsdp)
    if weights_dtype is not None:  # FSDP: compute on unsharded bf16 copies (see fsdp_per_device)
        policy = replace(policy, weights=weights_dtype, stochastic=False)
    if fake:
        model, tag_rows = fake_model(args, mode, data, policy, kernel_name)
        mode = replace(mode, build_optimizer=_optimizer_for_plan(mode))
    else:
        model, tag_rows = build_model(args, mode, data.tokenizer, policy)
    accelerator = PlanAccelerator(launch.mixed_precision)
    trainer = prepare_training(args, accelerator, data, model, mode, policy)
    step, rank, slots = largest_step(data, trainer)
    planned = planned_micro_batches(data, step, rank, args.grad_accum, trainer.plans[0])
    batches = micro_batches(data.train_set, planned, rank, data.pad_id, data.packed, data.tags)
    tracker = memory_tracker()
    tracker.track_external(trainer.wrapper, precision.unwrap(trainer.optimizer))
    with tracker:
        if fake:
            prime_optimizer_state(trainer)
            # (a TorchFunctionMode sees every torch call: only where dropout runs)
            with CudaDropout() if getattr(args, "lora_dropout", 0) else contextlib.nullcontext():
                optimizer_step(trainer, batches, verdict=finite_verdict)
        else:
            for _ in range(2):
                optimizer_step(trainer, batches)
                tracker.reset_mod_stats()
    snapshot = tracker.get_tracker_snapshot("peak")
    peak = _gib(snapshot.get(torch.device("cpu"), {}))
    params = list(model.parameters())
    trainable = [p for p in params if p.requires_grad]
    facts = {
        "model": model, "policy": policy, "packed": data.packed, "micro_batch_slots": slots,
        "micro_batches": len(batches), "tag_rows": len(tag_rows),
        "n_params": sum(p.numel() for p in params), "n_trainable": sum(p.numel() for p in trainable),
        "param_bytes": sum(p.numel() * p.element_size() for p in params),
        "buffer_bytes": sum(b.numel() * b.element_size() for b in model.buffers()),
        "trainable_bytes": sum(p.numel() * p.element_size() for p in trainable),
        "optimizer_state_bytes": state_bytes(precision.unwrap(trainer.optimizer)),
        "optimizer": type(precision.unwrap(trainer.optimizer)).__name__,
    }
    return peak, facts


def prime_optimizer_state(trainer):
    """Step 1 as far as memory goes: the optimizer steps once on (fake) zero gradients, so its state exists
    when the trainer's step runs; on fake tensors this costs nothing, where a whole forward and backward
    would double the plan's time without changing its peak (step 2 holds everything step 1 does, and the
    state besides)."""
    for p in trainer.wrapper.parameters():
        if p.requires_grad:
            p.grad = torch.zeros_like(p)
    trainer.optimizer.step()
    trainer.optimizer.zero_grad(set_to_none=True)


def _optimizer_for_plan(mode):
    def build(args, model):
        if getattr(args, "adam8bit", False):  # train_full.build_optimizer's bitsandbytes AdamW8bit, planned
            return AdamW8bitState(param_groups(model, args.weight_decay), lr=args.lr)
        return mode.build_optimizer(args, model)
    return build


def wrap_units(model):
    """The modules FSDP gives a unit each: those of the model's _no_split_modules classes (what accelerate's
    TRANSFORMER_BASED_WRAP without a class list wraps; the decoder layers of every family here)."""
    names = set(getattr(model, "_no_split_modules", None) or ())
    return [m for m in model.modules() if type(m).__name__ in names]


def largest_layer_bytes(model, dtype_size):
    """Parameters of the largest FSDP unit (a decoder layer), and of everything outside them, in bytes at
    dtype_size."""
    layers = wrap_units(model)
    per_layer = max((sum(p.numel() for p in m.parameters()) for m in layers), default=0)
    in_layers = sum(p.numel() for m in layers for p in m.parameters())
    outside = sum(p.numel() for p in model.parameters()) - in_layers
    return per_layer * dtype_size, outside * dtype_size


def fsdp_per_device(fake, facts, launch, policy_dtype):
    """FULL_SHARD over launch.world processes: fp32 (or policy dtype) parameters, gradients and optimizer
    state sharded (tests/test_fsdp.py checks these against fully_shard's shards on two CPU processes); the
    gradients stay sharded at any --grad_accum, since every micro-batch reduce-scatters (no no_sync under
    FSDP, loop.train_step), so the fake step's unsharded gradients are not counted; the step's activations
    and temporaries as the unsharded bf16 step's; plus what FSDP holds unsharded at once: the root and the
    tail units (embedding, head, norm: the head is not resharded between forward and backward) and two
    decoder layers (the current one and the prefetched one), parameters and gradients, in the compute
    dtype, and the all-gather and reduce-scatter flat buffers of the largest unit. tests/test_fsdp.py
    compares the whole peak with the real FSDP2 step's on two CPU processes."""
    world = launch.world
    n = facts["n_trainable"]
    size = torch.empty((), dtype=policy_dtype).element_size()
    compute = 2 if launch.mixed_precision in ("bf16", "fp16") else size
    model = facts["model"]
    layer, root = largest_layer_bytes(model, compute)
    # the largest unit FSDP2 gathers as accelerate shards: a decoder layer, the embedding, or the head with the
    # final norm; an all-gather lands in a flat buffer before it is copied out into the unsharded parameters,
    # and a reduce-scatter copies the unsharded gradients into one: two flat buffers of that unit in flight
    head = model.get_output_embeddings()
    unit = max(layer, model.get_input_embeddings().weight.numel() * compute,
               (head.weight.numel() * compute) if head is not None else 0)
    gathered = ((root + 2 * layer) * 2 + 2 * unit) / GIB  # parameters and gradients, and the flat buffers
    params = (facts["n_params"] * size) / world / GIB
    grads = n * size / world / GIB
    optimizer = facts["optimizer_state_bytes_full"] / world / GIB
    out = {"params": params, "grads": grads, "optimizer": optimizer,
           "activations": fake["activations"], "temporaries": fake["temporaries"] + gathered}
    out["peak"] = sum(out[k] for k in CATEGORIES)
    return out, gathered


def suggest(args, mode, launch, per_device, facts, usable):
    """The flag that would help most, estimated from the plan's categories (run --plan with it to check).

    Activations and temporaries shrink with the micro-batch, or to each layer's input plus one layer's
    activations under gradient checkpointing; the model states do not, and once activations are small the
    peak is the optimizer step's, where the gradients exist too."""
    act = per_device["activations"] + per_device["temporaries"]
    grads = per_device["grads"] or facts["trainable_bytes"] / GIB / (launch.world if launch.fsdp else 1)
    states = per_device["params"] + per_device["optimizer"]
    step_floor = states + grads  # the optimizer step: weights, gradients, state
    options = []
    if not args.gradient_checkpointing:
        model = facts["model"]
        layers = len(wrap_units(model)) or 1
        kept = facts["micro_batch_slots"] * model.config.hidden_size * 2 * layers / GIB  # each layer's input, bf16
        options.append((max(states + kept + act / layers, step_floor), "--gradient_checkpointing"))
    for div in (2, 4, 8):
        if args.batch_tokens // div >= 512:
            options.append((max(states + act / div, step_floor), f"--batch_tokens {args.batch_tokens // div}"))
    if mode.name == "full" and not launch.fsdp:
        for world in (2, 4, 8):  # model states sharded; the gathered layers not counted in this estimate
            options.append((act + step_floor / world, f"FSDP over {world} GPUs (configs/fsdp_full_shard.yaml with "
                                                      f"num_processes {world})"))
    for estimate, flag in options:
        if estimate <= usable:
            return f"{flag} (estimated peak {estimate:.1f} GiB; run --plan with it to check)"
    return "none of --gradient_checkpointing, a smaller --batch_tokens or FSDP alone fits (estimated)"


def card_memory_gib(args):
    if args.gpu_memory_gib:
        return args.gpu_memory_gib
    if torch.cuda.is_available():
        return torch.cuda.get_device_properties(0).total_memory / GIB
    return None


def make_plan(args, mode, launch, kernel_name=None):
    t0 = time.time()
    check_args(args)
    if getattr(args, "load_in_4bit", False):
        raise UserError("--plan does not plan --load_in_4bit (QLoRA) yet: its 4-bit weights cannot be built on "
                        "fake tensors")
    if args.gpu_memory_gib is not None and args.gpu_memory_gib <= 0:
        raise UserError("--gpu_memory_gib must be positive")
    kernel_name = kernel_name or default_kernel_name()
    notes = []
    if args.flash_attn:
        notes.append(f"varlen attention ({kernel_name}): saved q, k, v, output and fp32 log-sum-exp, by formula")
    if getattr(args, "adam8bit", False):
        notes.append("8-bit AdamW state: uint8 moments + fp32 absmax per 256 (fp32 under 4096 elements), by formula")
    if launch.mixed_precision == "no" and not launch.fsdp and launch.source.startswith("this process"):
        notes.append("no mixed precision (this process was not launched by accelerate): plan with "
                     "--accelerate_config FILE for the config the run will be launched with (bf16 autocast changes "
                     "what is kept for backward)")
    if getattr(args, "lora_dropout", 0):
        notes.append("dropout as CUDA's fused kernel runs it (a 1-byte mask kept for backward), not as on CPU")
    if args.compile:
        notes.append("planned without --compile: what the compiled layers keep is not planned")
    fsdp_dtype = None
    if launch.fsdp:
        if mode.name != "full":
            raise UserError("--plan plans FSDP for full fine-tuning only")
        fsdp_dtype = torch.bfloat16 if launch.mixed_precision in ("bf16", "fp16") else None
    fake, facts = measure_step(args, mode, launch, kernel_name, weights_dtype=fsdp_dtype)
    policy = precision.resolve(args.precision, mode.name, args.flash_attn, fsdp=launch.fsdp)
    per_device = dict(fake)
    if launch.fsdp:
        size = torch.empty((), dtype=policy.weights).element_size()
        per_step = facts["optimizer_state_bytes"] / max(facts["n_trainable"], 1)  # of the bf16 step's optimizer
        facts["optimizer_state_bytes_full"] = facts["n_trainable"] * (8 if not getattr(args, "adam8bit", False)
                                                                      else per_step)
        per_device, gathered = fsdp_per_device(fake, facts, launch, policy.weights)
        notes.append(f"FSDP FULL_SHARD over {launch.world}: {size}-byte parameters, gradients and optimizer state "
                     f"/ {launch.world} (checked against fully_shard on CPU), gradients sharded at any --grad_accum "
                     f"(each micro-batch reduce-scatters), plus {gathered:.2f} GiB of gathered units and buffers by "
                     f"formula (the peak checked against FSDP2 on CPU, not yet on GPUs)")
    elif launch.world > 1:
        per_device["temporaries"] += facts["trainable_bytes"] / GIB
        per_device["peak"] += facts["trainable_bytes"] / GIB
        notes.append(f"DDP over {launch.world}: gradient buckets, one more copy of the gradients, by formula")
    gpu = card_memory_gib(args)
    usable = gpu * FIT_FRACTION if gpu else None
    fits = None if gpu is None else per_device["peak"] <= usable
    suggestion = suggest(args, mode, launch, per_device, facts, usable) if fits is False else ""
    saved_dtype = 2 if policy.weights == torch.bfloat16 else 4
    if mode.name == "lora":
        final_weights = facts["trainable_bytes"] / GIB
        checkpoint = (facts["trainable_bytes"] + facts["optimizer_state_bytes"]) / GIB
    elif launch.fsdp:  # the sharded fp32 (policy dtype) masters and optimizer state, all shards together
        final_weights = facts["n_params"] * saved_dtype / GIB
        checkpoint = (facts["n_trainable"] * saved_dtype + facts["optimizer_state_bytes_full"]) / GIB
    else:
        final_weights = facts["n_params"] * saved_dtype / GIB
        checkpoint = (facts["trainable_bytes"] + facts["optimizer_state_bytes"]) / GIB
    # safetensors serializes a shard's tensors on the host at once (transformers' default shard: 50 GB, so
    # the whole model); FSDP first gathers the full state dict on the main process's host too
    host = final_weights * (2 if launch.fsdp else 1)
    setup = {"mode": mode.name, "model": args.model_name, "world_size": launch.world, "fsdp": launch.fsdp,
             "mixed_precision": launch.mixed_precision, "launch": launch.source, "precision": facts["policy"].name,
             "weights_dtype": str(policy.weights).removeprefix("torch."), "optimizer": facts["optimizer"],
             "n_params": facts["n_params"], "n_trainable": facts["n_trainable"], "packed": facts["packed"],
             "micro_batch_slots": facts["micro_batch_slots"], "batch_tokens": args.batch_tokens,
             "grad_accum": args.grad_accum, "gradient_checkpointing": args.gradient_checkpointing,
             "attention": attention.describe(facts["model"]) if not args.flash_attn else f"varlen ({kernel_name})"}
    return Plan(per_device, fake, gpu, fits, notes, setup, suggestion, checkpoint, host, final_weights,
                time.time() - t0)


# ---------------------------------------------------------------- output

def verdict_line(plan):
    peak = plan.per_device["peak"]
    if plan.gpu_gib is None:
        return f"peak {peak:.1f} GiB per device; no card to compare with: give --gpu_memory_gib"
    usable = plan.gpu_gib * FIT_FRACTION
    if plan.fits:
        return (f"fits: peak {peak:.1f} GiB of {plan.gpu_gib:.1f} GiB, {usable - peak:.1f} GiB to spare "
                f"(after {1 - FIT_FRACTION:.0%} kept for the CUDA context and fragmentation)")
    return (f"does not fit: peak {peak:.1f} GiB > {usable:.1f} GiB usable of {plan.gpu_gib:.1f} GiB; "
            f"most help: {plan.suggestion}")


def format_plan(plan):
    s = plan.setup
    lines = [f"plan [{s['mode']}] {s['model']}: {s['n_params']:,} parameters, {s['n_trainable']:,} trainable; "
             f"{s['weights_dtype']} weights (--precision {s['precision']}), {s['optimizer']}, mixed precision "
             f"{s['mixed_precision']}, {s['world_size']} process(es){' FSDP' if s['fsdp'] else ''} ({s['launch']})",
             f"step: {s['micro_batch_slots']:,} token slots in the largest micro-batch "
             f"({'packed' if s['packed'] else 'padded'}, "
             f"--batch_tokens {s['batch_tokens']}, --grad_accum {s['grad_accum']}), gradient checkpointing "
             f"{'on' if s['gradient_checkpointing'] else 'off'}, attention {s['attention']}",
             "", "| category | at the peak, per device (GiB) |", "|---|---:|"]
    for k in CATEGORIES:
        lines.append(f"| {k} | {plan.per_device[k]:.2f} |")
    lines.append(f"| **total (peak)** | **{plan.per_device['peak']:.2f}** |")
    lines.append(f"| card | {plan.gpu_gib:.1f} |" if plan.gpu_gib else "| card | (none: --gpu_memory_gib) |")
    lines.append("")
    for note in plan.notes:
        lines.append(f"note: {note}")
    lines.append(f"checkpoint on disk: {plan.checkpoint_gib:.2f} GiB; final weights {plan.final_weights_gib:.2f} GiB, "
                 f"host memory for the final save: {plan.final_save_host_gib:.2f} GiB")
    lines.append(f"planned in {plan.seconds:.0f} s on fake tensors; nothing was read but config.json, nothing written")
    lines.append(verdict_line(plan))
    return "\n".join(lines)


def main(args, mode):
    """--plan: print the table, the verdict and, last, one JSON line; write nothing. Returns 0."""
    plan = make_plan(args, mode, launch_settings(args), args.plan_kernel if args.plan_kernel != "auto" else None)
    print(format_plan(plan), flush=True)
    print(json.dumps(plan.summary()), flush=True)
    return 0


def preflight(args, mode, accelerator):
    """A real run's check before anything is loaded: on CUDA (or with --gpu_memory_gib) the plan's peak is
    logged and must fit the card, else UserError; --no_plan_check logs it and starts anyway (and starts
    without a plan where none can be made). Returns the planned peak GiB, or None."""
    if not (torch.cuda.is_available() or args.gpu_memory_gib):
        return None
    say = print if accelerator.is_main_process else (lambda *a, **k: None)
    if getattr(args, "load_in_4bit", False):
        say("plan: none (--plan cannot build 4-bit weights); starting without a memory check", flush=True)
        return None
    kernel = args.plan_kernel if args.plan_kernel != "auto" else None
    try:
        if args.flash_attn and kernel is None and torch.cuda.is_available():
            kernel = "flash-attn" if attention.select_kernel().name == "flash-attn" else default_kernel_name()
        plan = make_plan(args, mode, launch_settings(args, accelerator), kernel)
    except Exception as err:  # noqa: BLE001 -- a plan that cannot be made must not stop a run told to start
        if not args.no_plan_check:
            raise
        say(f"plan: could not plan ({type(err).__name__}: {err}); --no_plan_check: starting anyway", flush=True)
        return None
    say(f"plan: peak {plan.per_device['peak']:.2f} GiB per device predicted "
        f"({', '.join(f'{k} {plan.per_device[k]:.2f}' for k in CATEGORIES)}); {verdict_line(plan)}", flush=True)
    if plan.fits is False and not args.no_plan_check:
        raise UserError(f"the plan does not fit: {verdict_line(plan)} (--no_plan_check starts anyway)")
    return plan.per_device["peak"]
