"""The one training loop behind training/train_peft.py and training/train_full.py.

The two entry points differ only in a Mode: how the model and optimizer are built and
how the result is saved. Data, the step, eval and the loop are here; checkpoints and
metrics have modules of their own. run() is the recipe: set up, resume, loop, finish.

Loss discipline (as torchtune's): every micro-batch returns the SUM of its target-token
losses; the step divides by the number of target tokens of the whole step, counted across
gradient-accumulation micro-batches and processes before the first backward. So the loss
of a step is one token mean, whatever the batch layout, grad_accum or world size.
"""

import argparse
import contextlib
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import numpy as np
import torch

from reasoning_sft.artifacts import check_dataset_matches, load_manifest, load_prepared_tokenizer, write_json
from reasoning_sft.data.batching import collate, empty_batch, step_schedule
from reasoning_sft.data.template import SECTION_NAMES, tag_ids
from reasoning_sft.errors import UserError, add_verbose_flag
from reasoning_sft.train import attention, precision, run_contract
from reasoning_sft.train.checkpoints import (
    Preemption,
    check_shared_output_dir,
    directory_bytes,
    load_newest_checkpoint,
    preemption_advice,
    register_trainable_only_checkpointing,
    save_checkpoint,
    sigterm_line,
)
from reasoning_sft.train.compiling import compile_decoder_layers
from reasoning_sft.train.divergence import DivergenceGuard, read_verdict, skip_line
from reasoning_sft.train.generation_config import save_tokenizer_and_generation_config
from reasoning_sft.train.locking import LOCK_NAME, lock_output_dir
from reasoning_sft.train.metrics import (
    REPORT_TO,
    MetricsLog,
    Throughput,
    check_report_to,
    default_report_to,
    forget_steps_after,
    tracker_config,
)
from reasoning_sft.train.modeling import (
    N_SECTIONS,
    ChunkedLossLM,
    load_causal_lm,
    mark_tag_rows_trained,
    resize_and_init_new_tokens,
)


@dataclass
class Mode:
    """What differs between LoRA and full fine-tuning."""
    name: str
    build_model: Callable     # (args, model, tag_row_ids) -> model to train
    build_optimizer: Callable  # (args, model) -> torch optimizer
    save_final: Callable      # (args, model, state_dict, accelerator) -> None; called on every rank
    describe: Callable = None  # (model) -> dict of facts about the built model, logged and in train_config.json


def common_parser(description):
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a("--model_name", required=True, help="base model: hub id or local directory")
    a("--tokenizer_dir", required=True, help="written by prepare_llamatokenizer.py")
    a("--train_dir", required=True, help="ENCODE_DIR/arrow_dataset written by encode_dataset.py")
    a("--output_dir", required=True)
    a("--batch_tokens", type=int, default=8192, help="token budget of a micro-batch per device")
    a("--grad_accum", type=int, default=1, help="micro-batches per optimizer step")
    a("--epochs", type=float, default=1, help="passes over the data (a fraction stops part-way)")
    a("--max_steps", type=int, default=0, help="stop after this many optimizer steps (0: no limit)")
    a("--lr", type=float, default=2e-5)
    a("--lr_scheduler", default="cosine", choices=["cosine", "linear", "constant", "constant_with_warmup"])
    a("--warmup_ratio", type=float, default=0.03)
    a("--weight_decay", type=float, default=0.0)
    a("--max_grad_norm", type=float, default=1.0, help="0 disables clipping")
    a("--max_bad_steps", type=int, default=3,
      help="stop after this many steps in a row whose loss or gradient norm is not finite (each one is skipped)")
    a("--seed", type=int, default=42)
    a("--packing", choices=["auto", "on", "off"], default="auto",
      help="auto: packed rows with a varlen kernel (--flash_attn), padded rows otherwise")
    a("--flash_attn", action="store_true",
      help="varlen attention in bf16: flash-attn when installed, else PyTorch's varlen_attn (CUDA); see README")
    a("--precision", choices=precision.CHOICES, default="auto",
      help="weights dtype and update rounding: fp32; bf16 (stochastic rounding: every update kept in "
           "expectation); bf16-nearest (small updates lost). auto: bf16 for full fine-tuning with --flash_attn "
           "(fp32 under FSDP), else fp32; for LoRA it sets the frozen base's dtype. See README")
    a("--gradient_checkpointing", action="store_true")
    a("--compile", action="store_true",
      help="torch.compile each decoder layer (fuses norms, RoPE, SwiGLU); the first steps pay the compile")
    a("--eval_dir", help="a second encoded dataset for evaluation")
    a("--eval_fraction", type=float, default=0.0, help="hold out this fraction of --train_dir for evaluation")
    a("--eval_every", type=int, default=0, help="evaluate every N steps (0: at the end only)")
    a("--save_every", type=int, default=0, help="checkpoint every N steps (0: at the end only)")
    a("--keep_checkpoints", type=int, default=2, help="the newest N checkpoints stay on disk (0: all)")
    a("--resume", action="store_true",
      help="continue from the newest checkpoint in --output_dir; every flag that shapes the run must be as it "
           "was (docs/training.md#resume)")
    a("--reschedule", action="store_true",
      help="with --resume: take new --max_steps/--epochs, stretching the rest of the saved LR schedule over the "
           "new number of remaining steps (the LR at the saved step is unchanged)")
    a("--log_every", type=int, default=10)
    a("--report_to", choices=REPORT_TO, default=default_report_to(),
      help="where metrics go besides OUTPUT_DIR/metrics.jsonl and loss.png (accelerate's trackers; tensorboard "
           "writes OUTPUT_DIR/tensorboard). Default: tensorboard if installed, else none (here: %(default)s)")
    a("--overwrite", action="store_true",
      help="start over in a training output: everything in --output_dir is removed before training starts")
    a("--plan", action="store_true",
      help="print the run's peak GPU memory per category and whether it fits (fake tensors: no weights read, "
           "nothing written), then exit; see README")
    a("--gpu_memory_gib", type=float, help="--plan: the card's memory (default: the visible card's)")
    a("--accelerate_config", help="--plan: the accelerate config the run will be launched with (processes, FSDP, "
                                  "mixed precision); default: this process's launch")
    a("--plan_kernel", choices=("auto", "flash-attn", "torch-varlen", "torch-varlen-repeat-kv"), default="auto",
      help="--plan with --flash_attn: the varlen kernel to plan for (auto: what this software would select; "
           "torch-varlen-repeat-kv is torch 2.11's, which repeats KV heads for grouped-query attention)")
    a("--no_plan_check", action="store_true",
      help="on a GPU, start even if the plan says the run does not fit (by default it is refused before loading; "
           "the plan is still made and logged)")
    add_verbose_flag(p)
    return p


def check_args(args):
    if args.batch_tokens < 1 or args.grad_accum < 1 or args.epochs <= 0:
        raise UserError("--batch_tokens, --grad_accum and --epochs must be positive")
    if args.log_every < 1:
        raise UserError("--log_every must be >= 1")
    if args.max_bad_steps < 1:
        raise UserError("--max_bad_steps must be >= 1 (a step that is not finite is always skipped)")
    negative = [f"--{name}" for name in ("max_steps", "eval_every", "save_every", "keep_checkpoints")
                if getattr(args, name) < 0]
    if negative:
        raise UserError(f"{', '.join(negative)} must be >= 0 (see --help for what 0 means)")
    if not 0 <= args.eval_fraction < 1:
        raise UserError("--eval_fraction must be in [0, 1)")
    if args.eval_dir and args.eval_fraction:
        raise UserError("give --eval_dir or --eval_fraction, not both")
    if args.reschedule and not args.resume:
        raise UserError("--reschedule is for --resume (a new run takes its schedule from its flags)")
    check_report_to(args.report_to)


# ---------------------------------------------------------------- data

def load_encoded(path, tokenizer_meta, tokenizer_dir):
    import datasets

    manifest = load_manifest(path)
    check_dataset_matches(manifest, tokenizer_meta, path, tokenizer_dir)
    try:
        dataset = datasets.load_from_disk(path)
    except Exception as err:
        raise UserError(f"{path}: cannot load the Arrow dataset ({type(err).__name__}: {err})") from None
    return dataset, manifest


def split_eval(dataset, fraction, seed):
    if not fraction:
        return dataset, None
    order = np.random.default_rng([seed, 3]).permutation(len(dataset))
    n_eval = max(1, int(round(fraction * len(dataset))))
    return dataset.select(np.sort(order[n_eval:])), dataset.select(np.sort(order[:n_eval]))


def fetch_rows(dataset, indices):
    columns = dataset[list(indices)]
    return [{"input_ids": ids, "labels": labels} for ids, labels in zip(columns["input_ids"], columns["labels"])]


# ---------------------------------------------------------------- the step

def to_device(tensor, device):
    """Host -> device without making the host wait for the device's queue (pinned memory, non-blocking, on CUDA).

    A copy from pageable memory blocks the host until the GPU has run everything queued before it.
    """
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def move(batch, device):
    return {k: to_device(v, device) for k, v in batch.items()}


def micro_batches(dataset, step, rank, pad_id, packed, tags):
    """This rank's collated micro-batches of an optimizer step."""
    out = []
    for micro in step:
        indices = micro[rank]
        out.append(collate(fetch_rows(dataset, indices), pad_id, packed, tags) if indices else empty_batch(pad_id))
    return out


def section_token_counts(batch):
    """Target tokens per section of a host-side batch (bincount on a GPU would sync: it sizes its output)."""
    keep = batch["targets"] != -100
    return torch.bincount(batch["sections"][keep].long(), minlength=N_SECTIONS).float()


class Prefetcher:
    """Fetches and collates the next step's micro-batches on a background thread while this step computes.

    The batches are the same ones, in the same order (the plan decides them, not the thread),
    so runs, resumes and ranks stay deterministic; only the host work overlaps the compute.
    """

    def __init__(self, load):
        self.load = load  # (epoch, step_in_epoch) -> micro-batches
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch")
        self.pending = None  # (key, future)

    def get(self, key, next_key):
        """The batches of step `key`; starts fetching `next_key`'s (None: no next step)."""
        if self.pending is not None and self.pending[0] == key:
            batches = self.pending[1].result()
        else:
            batches = self.load(*key)
        self.pending = (next_key, self.pool.submit(self.load, *next_key)) if next_key is not None else None
        return batches

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.pool.shutdown(wait=True, cancel_futures=True)


class StepSums(NamedTuple):
    """One step's global sums, reduced across ranks in one collective."""
    loss_sum: torch.Tensor
    tokens: torch.Tensor
    section_loss: torch.Tensor
    section_tokens: torch.Tensor
    stop_votes: torch.Tensor  # ranks that had been sent SIGTERM when the step's sums were reduced


def is_fsdp(model):
    """Whether `model` (as accelerate.prepare returned it) is sharded by FSDP: torch's fully_shard (FSDP2) or
    FullyShardedDataParallel (FSDP1) at its root, as accelerate wraps it."""
    from torch.distributed.fsdp import FSDPModule, FullyShardedDataParallel

    return isinstance(model, (FSDPModule, FullyShardedDataParallel))


def train_step(accelerator, model, batches, stop_requested=False):
    """Forward/backward over the micro-batches of one step; returns its global StepSums.

    Gradients end up as d(global token mean)/d(params): each micro-batch's loss sum is divided
    by the global token count and multiplied by world size (DDP/FSDP average gradients over ranks).
    The SIGTERM vote rides in the loss's all-reduce: all ranks agree to stop without a collective
    (and a host read) of its own each step.
    """
    device = accelerator.device
    local_sections = to_device(sum(section_token_counts(b) for b in batches), device)
    global_sections = accelerator.reduce(local_sections.clone(), reduction="sum")
    global_tokens = global_sections.sum().clamp(min=1)
    loss_sum = torch.zeros((), device=device)
    section_loss = torch.zeros(N_SECTIONS, device=device)
    sharded = is_fsdp(model)
    for i, batch in enumerate(batches):
        last = i == len(batches) - 1
        # DDP: all but the last micro-batch accumulate locally (no_sync), one all-reduce per step. FSDP: never
        # no_sync, which would keep every rank's gradients unsharded until the last micro-batch (FSDP1's
        # no_sync; FSDP2's set_requires_gradient_sync(False) alike): about 52 GB per GPU at 13B. Each micro-
        # batch's backward reduce-scatters instead, into the sharded gradients it accumulates into.
        sync = contextlib.nullcontext() if last or sharded else accelerator.no_sync(model)
        with sync:
            batch_loss, per_section = model(**move(batch, device))
            accelerator.backward(batch_loss * accelerator.num_processes / global_tokens)
        loss_sum += batch_loss.detach()
        section_loss += per_section
    vote = torch.full((1,), float(stop_requested), device=device)
    totals = accelerator.reduce(torch.cat([loss_sum[None], section_loss, vote]), reduction="sum")
    return StepSums(totals[0], global_tokens, totals[1:-1], global_sections, totals[-1])


@torch.no_grad()
def evaluate(accelerator, model, dataset, args, pad_id, packed, tags):
    """Token-mean loss over an eval set split across ranks; overall and per section."""
    model.eval()
    rank, world = accelerator.process_index, accelerator.num_processes
    sums = torch.zeros(1 + N_SECTIONS, device=accelerator.device)
    counts = torch.zeros(N_SECTIONS, device=accelerator.device)
    for step in step_schedule(dataset["length"], args.batch_tokens, packed, 0, 0, world, 1):
        for batch in micro_batches(dataset, step, rank, pad_id, packed, tags):
            loss, per_section = model(**move(batch, accelerator.device))
            sums += torch.cat([loss[None], per_section])
            counts += to_device(section_token_counts(batch), accelerator.device)
    model.train()
    sums = accelerator.reduce(sums, reduction="sum")
    counts = accelerator.reduce(counts, reduction="sum")
    return sums[0].item() / max(counts.sum().item(), 1), section_means(sums[1:], counts)


def section_means(loss_sums, counts):
    """Mean loss of reasoning / intention / code (EOS counted with code: it ends the program)."""
    loss_sums, counts = loss_sums.tolist(), counts.tolist()
    loss_sums[3] += loss_sums[4]
    counts[3] += counts[4]
    return {name: (loss_sums[i] / counts[i] if counts[i] else None)
            for i, name in enumerate(SECTION_NAMES) if name in ("reasoning", "intention", "code")}


# ---------------------------------------------------------------- set up

def log(accelerator, msg):
    if accelerator.is_main_process:
        print(msg, flush=True)


def start_accelerator(args):
    from accelerate import Accelerator

    try:
        if args.report_to == "none":
            return Accelerator()
        return Accelerator(log_with=args.report_to, project_dir=args.output_dir)
    except (RuntimeError, ValueError) as err:  # e.g. an FSDP config on a machine without GPUs
        raise UserError(f"accelerate cannot start with this config: {err}") from None


def prepare_output_dir(args, accelerator):
    """Lock --output_dir for this run (before --overwrite deletes anything), then check or clear it.

    Whatever the flags, the completed-run marker goes first: from now on the directory holds no
    finished run (run_contract.py). --overwrite then empties it (the lock stays).
    Returns the lock; it is held until the process ends or run() releases it.
    """
    lock = lock_output_dir(accelerator, args.output_dir)
    contents = ([name for name in os.listdir(args.output_dir) if name != LOCK_NAME]
                if os.path.isdir(args.output_dir) else [])
    if contents and not (args.resume or args.overwrite):
        raise UserError(f"{args.output_dir} is not empty; pass --resume to continue or --overwrite to start over")
    start_over = args.overwrite and not args.resume
    refusal = run_contract.overwrite_refusal(args.output_dir, contents) if start_over else None
    if refusal:  # every rank sees the same directory: all refuse together
        raise UserError(refusal)
    if accelerator.is_main_process and contents:
        run_contract.clear_run_complete(args.output_dir)
        if start_over:
            run_contract.clear_output_dir(args.output_dir, keep={LOCK_NAME})
    accelerator.wait_for_everyone()
    os.makedirs(args.output_dir, exist_ok=True)
    return lock


@dataclass
class Data:
    tokenizer: object
    train_set: object
    eval_set: object
    manifest: dict
    packed: bool
    tags: dict
    pad_id: int


def load_data(args):
    tokenizer, tok_meta = load_prepared_tokenizer(args.tokenizer_dir)
    train_set, manifest = load_encoded(args.train_dir, tok_meta, args.tokenizer_dir)
    train_set, eval_set = split_eval(train_set, args.eval_fraction, args.seed)
    if args.eval_dir:
        eval_set, _ = load_encoded(args.eval_dir, tok_meta, args.tokenizer_dir)
    packed = args.packing == "on" or (args.packing == "auto" and args.flash_attn)
    return Data(tokenizer, train_set, eval_set, manifest, packed, tag_ids(tokenizer), tokenizer.pad_token_id)


def build_model(args, mode, tokenizer, policy, weights=True):
    """The model to train, its weights in the precision policy's dtype, and the ids of its tag rows.

    weights=False: from the config alone (--plan runs this under FakeTensorMode)."""
    model = load_causal_lm(args.model_name, dtype=policy.weights, flash_attn=args.flash_attn,
                           load_in_4bit=getattr(args, "load_in_4bit", False), weights=weights)
    tag_rows = resize_and_init_new_tokens(model, tokenizer)
    model = mode.build_model(args, model, tag_rows)
    if args.gradient_checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    if args.compile:
        compile_decoder_layers(model)
    return model, tag_rows


def plan_epochs(args, lengths, packed, world):
    """Each epoch's list of optimizer steps (batching.step_schedule) and the number of steps to run."""
    epochs = math.ceil(args.epochs)
    plans = [step_schedule(lengths, args.batch_tokens, packed, args.seed, e, world, args.grad_accum)
             for e in range(epochs)]
    if args.epochs != epochs:  # a fractional last epoch
        plans[-1] = plans[-1][:max(1, int(len(plans[-1]) * (args.epochs - epochs + 1)))]
    total_steps = sum(len(p) for p in plans)
    if args.max_steps:
        total_steps = min(total_steps, args.max_steps)
    return plans, total_steps


def param_groups(model, weight_decay):
    """Decay matrices; not norms, biases or 1-d vectors (the usual AdamW practice)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def adamw(groups, lr):
    """torch's AdamW, fused: one kernel a parameter group instead of a dozen element-wise passes over
    every weight (on CPU too). The per-parameter fp32 step of --precision bf16 gains most: there a
    step is one parameter."""
    return torch.optim.AdamW(groups, lr=lr, fused=True)


def optimizer_state_bytes_per_param(optimizer):
    n_params = sum(p.numel() for group in optimizer.param_groups for p in group["params"])
    n_bytes = sum(v.numel() * v.element_size() for state in optimizer.state.values()
                  for v in state.values() if torch.is_tensor(v) and v.dim() > 0)
    return n_bytes / max(n_params, 1)


@dataclass
class Position:
    """Where the run is: what a checkpoint records and a resumed run continues from."""
    global_step: int = 0
    epoch: int = 0
    step_in_epoch: int = 0

    def state(self, contract, schedule):
        return {"global_step": self.global_step, "epoch": self.epoch, "step_in_epoch": self.step_in_epoch,
                "contract": contract, "schedule": schedule}


PROFILE_FORWARD_BACKWARD = "sft:forward_backward"  # torch.profiler label of a step's forward/backward


class Callback:
    """Observes the loop without patching it (benchmarks, profilers): override what you need.

    step_context(trainer) wraps one optimizer step (forward/backward of its micro-batches, clipping,
    the update); trainer.position.global_step is the number of steps before it. on_checkpoint(trainer,
    path, seconds) follows each checkpoint written, seconds = {"save": s, "seal": s} on this rank.
    Profile labels: PROFILE_FORWARD_BACKWARD, and modeling.PROFILE_LOSS_HEAD inside it.
    """

    def step_context(self, trainer):
        return contextlib.nullcontext()

    def on_checkpoint(self, trainer, path, seconds):
        pass


@dataclass
class Trainer:
    """What the loop works with, set up once by run()."""
    args: argparse.Namespace
    accelerator: object
    data: Data
    wrapper: torch.nn.Module
    optimizer: object
    scheduler: object
    policy: precision.Policy
    plans: list
    total_steps: int
    contract: dict  # run_contract.build_contract: what a --resume must match
    schedule: dict  # run_contract.schedule_record: the LR schedule the scheduler follows
    position: Position = field(default_factory=Position)
    run_id: str = None  # this invocation's, in train_config.json and the completed-run marker
    planned_peak_gib: float = None  # the plan's predicted peak (planning.preflight), on CUDA
    callbacks: tuple = ()  # Callback objects
    write_speed: float = None  # bytes/s to --output_dir, measured at start (main process)
    step_seconds: float = None  # the last optimizer step's wall time
    checkpoint_seconds: float = None  # the last checkpoint's (write and seal), on this rank


def prepare_training(args, accelerator, data, model, mode, policy):
    """Loss wrapper, optimizer (rounding as `policy` says) and LR schedule, prepared by accelerate, and
    checkpointing registered."""
    from accelerate.utils import DistributedType

    world = accelerator.num_processes
    lengths = np.asarray(data.train_set["length"])
    plans, total_steps = plan_epochs(args, lengths, data.packed, world)
    wrapper = ChunkedLossLM(model)
    optimizer = precision.wrap_optimizer(mode.build_optimizer(args, model), policy, args.seed)
    schedule = run_contract.schedule_record(args.lr_scheduler, int(args.warmup_ratio * total_steps), total_steps)
    scheduler = run_contract.make_scheduler(optimizer, schedule)
    # the scheduler is stepped by hand once per optimizer step (accelerate's wrapper would step it per process)
    wrapper, optimizer = accelerator.prepare(wrapper, optimizer)
    accelerator.register_for_checkpointing(scheduler)
    if accelerator.distributed_type != DistributedType.FSDP:  # FSDP writes its own sharded states
        register_trainable_only_checkpointing(accelerator)
    return Trainer(args, accelerator, data, wrapper, optimizer, scheduler, policy, plans, total_steps,
                   contract_of(args, mode, accelerator, data, policy), schedule)


def contract_of(args, mode, accelerator, data, policy):
    """What a --resume of this run must match (run_contract.build_contract): flags, data, launch, precision."""
    launch = {"distributed_type": str(accelerator.distributed_type), "mixed_precision": accelerator.mixed_precision,
              "precision_policy": policy.name}
    return run_contract.build_contract(args, mode.name, accelerator.num_processes, data.packed, len(data.train_set),
                                       data.manifest, launch)


# ---------------------------------------------------------------- resume, loop, finish

def resume(trainer):
    """Restore the newest intact checkpoint whose contract this run keeps, and the LR schedule it followed
    (--reschedule: stretched to this run's length)."""
    args, accelerator = trainer.args, trainer.accelerator
    unrecorded = []

    def check(state, path):
        unrecorded.extend(run_contract.check_resume(run_contract.saved_contract(state), trainer.contract,
                                                    os.path.basename(path), args.reschedule))
        if args.reschedule and "schedule" not in state:
            raise UserError(f"--reschedule: {os.path.basename(path)} was written by an older version that did not "
                            "record its LR schedule; resume without --reschedule")

    state = load_newest_checkpoint(accelerator, args.output_dir, check)
    if unrecorded:
        log(accelerator, f"--resume: {os.path.basename(state['path'])} (an older version's) does not record "
                         f"{', '.join(unrecorded[:4])}{' ...' if len(unrecorded) > 4 else ''}; not compared")
    trainer.position = Position(state["global_step"], state["epoch"], state["step_in_epoch"])
    schedule = state.get("schedule", trainer.schedule)
    if args.reschedule:
        schedule = run_contract.rescheduled(schedule, state["global_step"], trainer.total_steps)
        log(accelerator, f"--reschedule: the LR schedule from step {state['global_step']} now ends at step "
                         f"{trainer.total_steps}")
    run_contract.install_stretches(trainer.scheduler, schedule)
    trainer.schedule = schedule
    log(trainer.accelerator, f"resumed from {state['path']}: step {state['global_step']}, epoch {state['epoch']}, "
                             f"step {state['step_in_epoch']} of it")
    if trainer.accelerator.is_main_process:
        forget_steps_after(os.path.join(trainer.args.output_dir, "metrics.jsonl"), state["global_step"])


def optimizer_step(trainer, batches, stop_requested=False, verdict=read_verdict):
    """One optimizer step over this rank's micro-batches; returns what is logged of it, whether it was
    applied, and whether every rank is to stop after it (some rank had been sent SIGTERM).

    A step whose loss or gradient norm is not finite changes nothing: no update, no scheduler step
    (divergence.py). Both values are global, so every rank makes the same choice.
    verdict: read_verdict; --plan's fake step, whose values do not exist, passes one that says finite.
    """
    args, accelerator, optimizer = trainer.args, trainer.accelerator, trainer.optimizer
    with torch.profiler.record_function(PROFILE_FORWARD_BACKWARD):  # a label for profilers; free without one
        sums = train_step(accelerator, trainer.wrapper, batches, stop_requested)
    # the global norm is needed even without clipping (--max_grad_norm 0): a max of inf measures, never clips
    grad_norm = accelerator.clip_grad_norm_(trainer.wrapper.parameters(), args.max_grad_norm or math.inf)
    if hasattr(grad_norm, "full_tensor"):  # FSDP2: a DTensor over the sharded gradients; every rank joins here
        grad_norm = grad_norm.full_tensor()
    loss_scaled = accelerator.scaler is not None
    finite, stop = verdict(sums.loss_sum, grad_norm, loss_scaled, sums.stop_votes)
    if finite or loss_scaled:  # fp16's loss scaler must see every step: it skips an overflow itself
        optimizer.step()
    if finite:
        trainer.scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return (sums, grad_norm), finite, stop


def step_record(trainer, plan, step_result, window):
    """What metrics.jsonl holds of a step (a non-finite loss or norm is written as null)."""
    sums, grad_norm = step_result
    pos = trainer.position
    record = {"step": pos.global_step, "epoch": round(pos.epoch + pos.step_in_epoch / len(plan), 4),
              "loss": sums.loss_sum.item() / sums.tokens.item(), "lr": trainer.scheduler.get_last_lr()[0],
              "tokens": int(sums.tokens.item()), **window.rates(trainer.accelerator.num_processes)}
    if grad_norm is not None:  # None only where accelerate cannot say (DeepSpeed before its first step)
        record["grad_norm"] = float(grad_norm)
    for name, value in section_means(sums.section_loss, sums.section_tokens).items():
        if value is not None:
            record[f"loss_{name}"] = value
    return record


def train_loop(trainer, metrics):
    """Run optimizer steps until the plan or --max_steps ends; returns None, or how the run stops early:
    SystemExit(143) on SIGTERM (checkpointed), RunDiverged after --max_bad_steps non-finite steps in a row."""
    args, accelerator, data, pos = trainer.args, trainer.accelerator, trainer.data, trainer.position
    trainer.wrapper.train()
    window = Throughput()
    guard = DivergenceGuard(args.max_bad_steps, args.output_dir)
    state_unreported = True  # the optimizer's state exists after its first applied step

    def load(epoch, step_in_epoch):
        return micro_batches(data.train_set, trainer.plans[epoch][step_in_epoch], accelerator.process_index,
                             data.pad_id, data.packed, data.tags)

    # SIGTERM is ours only while steps run: finish() after the loop gets the handler there was before
    with Preemption() as preemption, Prefetcher(load) as prefetch:
        while pos.epoch < len(trainer.plans) and pos.global_step < trainer.total_steps:
            plan = trainer.plans[pos.epoch]
            while pos.step_in_epoch < len(plan) and pos.global_step < trainer.total_steps:
                batches = prefetch.get((pos.epoch, pos.step_in_epoch), next_step_key(trainer))
                with contextlib.ExitStack() as observed:
                    for callback in trainer.callbacks:
                        observed.enter_context(callback.step_context(trainer))
                    t0 = time.perf_counter()
                    result, finite, stop = optimizer_step(trainer, batches, preemption.requested)
                    trainer.step_seconds = time.perf_counter() - t0  # the step reads its verdict: synced
                pos.global_step += 1  # a skipped step's data counts as seen: --resume goes on after it
                pos.step_in_epoch += 1
                in_a_row = guard.note(pos.global_step, finite)
                if finite and state_unreported:
                    kind = type(precision.unwrap(trainer.optimizer)).__name__
                    log(accelerator, f"optimizer state: {optimizer_state_bytes_per_param(trainer.optimizer):.2f} "
                                     f"bytes per trainable parameter ({kind})")
                    advise_on_preemption(trainer)  # an estimate; the first checkpoint measures it
                    state_unreported = False
                window.add(batches)
                if pos.global_step == 2 and trainer.planned_peak_gib is not None and accelerator.device.type == "cuda":
                    report_planned_peak(trainer, metrics)
                if not finite or pos.global_step % args.log_every == 0 or pos.global_step in (1, trainer.total_steps):
                    record = step_record(trainer, plan, result, window)
                    if not finite:  # every skipped step has its own record, whatever --log_every
                        record.update(skipped=True, bad_in_a_row=in_a_row)
                        log(accelerator, skip_line(pos.global_step, record["loss"], record.get("grad_norm"),
                                                   in_a_row, args.max_bad_steps))
                    metrics.write(record)
                    window = Throughput()
                if guard.must_stop():
                    return guard.stop()
                if data.eval_set is not None and args.eval_every and pos.global_step % args.eval_every == 0:
                    run_eval(trainer, metrics)
                metrics.advance()
                # never in a streak of skipped steps: the checkpoint a stop names is from a good step
                if args.save_every and pos.global_step % args.save_every == 0 and not guard.streak and \
                        pos.global_step < trainer.total_steps:
                    checkpoint(trainer)
                if stop:
                    return preempted(trainer)
            if pos.step_in_epoch >= len(plan):
                pos.epoch, pos.step_in_epoch = pos.epoch + 1, 0
        # a SIGTERM that came after the last step's vote: one collective, once per run
        return preempted(trainer) if preemption.agreed(accelerator) else None


def report_planned_peak(trainer, metrics):
    """After step 2 on CUDA (the optimizer state exists): the plan's peak beside the measured one."""
    measured = torch.cuda.max_memory_allocated(trainer.accelerator.device) / 2 ** 30
    planned = trainer.planned_peak_gib
    log(trainer.accelerator, f"memory after step 2: max_memory_allocated {measured:.2f} GiB, planned peak "
                             f"{planned:.2f} GiB ({(planned - measured) / measured:+.1%})")
    metrics.write({"step": trainer.position.global_step, "planned_peak_gib": round(planned, 3),
                   "max_memory_allocated_gib": round(measured, 3)})


def local_state_bytes(trainer):
    """Bytes of trainable parameters and optimizer state this rank holds (its shards under FSDP): what it writes
    of a checkpoint, about."""
    def local(t):
        return t.to_local() if hasattr(t, "to_local") else t

    params = [local(p) for p in trainer.wrapper.parameters() if p.requires_grad]
    state = [local(v) for st in precision.unwrap(trainer.optimizer).state.values() for v in st.values()
             if torch.is_tensor(v) and v.dim() > 0]
    return sum(t.numel() * t.element_size() for t in params + state)


def advise_on_preemption(trainer, path=None):
    """Log whether a SIGTERM checkpoint fits a grace period, and the --save_every that bounds what a preemption
    loses (checkpoints.preemption_advice): measured on the checkpoint at `path`, or before one exists estimated
    from the state this rank writes (all of it on the main process; its shards under FSDP, every rank at once)
    and the write speed measured at start (written, then read back for the digest, at that speed)."""
    if trainer.step_seconds is None:
        return
    if path is not None:
        nbytes, seconds = directory_bytes(path), trainer.checkpoint_seconds
    elif trainer.write_speed:
        local = local_state_bytes(trainer)
        nbytes = local * (trainer.accelerator.num_processes if is_fsdp(trainer.wrapper) else 1)
        seconds = 2 * local / trainer.write_speed
    else:
        return
    log(trainer.accelerator, preemption_advice(nbytes, seconds, trainer.step_seconds, trainer.args.save_every,
                                               measured=path is not None))


def checkpoint(trainer):
    """save_checkpoint where the loop stands, then the callbacks' on_checkpoint; returns its path. The first
    checkpoint's measured time gives the preemption advice."""
    seconds = {}
    first = trainer.checkpoint_seconds is None
    path = save_checkpoint(trainer.accelerator, trainer.args.output_dir,
                           trainer.position.state(trainer.contract, trainer.schedule),
                           trainer.args.keep_checkpoints, seconds)
    trainer.checkpoint_seconds = seconds["save"] + seconds["seal"]
    if first:
        advise_on_preemption(trainer, path)
    for callback in trainer.callbacks:
        callback.on_checkpoint(trainer, path, seconds)
    return path


def preempted(trainer):
    """Checkpoint where the loop stands; SystemExit(143): continue with --resume."""
    log(trainer.accelerator, sigterm_line(trainer.checkpoint_seconds, trainer.step_seconds))
    path = checkpoint(trainer)
    log(trainer.accelerator, f"SIGTERM: saved {path}; run again with --resume to continue")
    return SystemExit(143)


def next_step_key(trainer):
    """(epoch, step_in_epoch) of the step after the current one, or None if the run ends before it."""
    pos = trainer.position
    if pos.global_step + 1 >= trainer.total_steps:
        return None
    if pos.step_in_epoch + 1 < len(trainer.plans[pos.epoch]):
        return pos.epoch, pos.step_in_epoch + 1
    return (pos.epoch + 1, 0) if pos.epoch + 1 < len(trainer.plans) else None


def run_eval(trainer, metrics):
    data = trainer.data
    loss, sections = evaluate(trainer.accelerator, trainer.wrapper, data.eval_set, trainer.args, data.pad_id,
                              data.packed, data.tags)
    record = {"step": trainer.position.global_step, "eval_loss": loss}
    record.update({f"eval_loss_{k}": v for k, v in sections.items() if v is not None})
    metrics.write(record)


def finish(trainer, metrics, mode):
    """Last eval and checkpoint, then the final model (LoRA adapter or full weights), tokenizer and loss plot."""
    args, accelerator, pos = trainer.args, trainer.accelerator, trainer.position
    if trainer.data.eval_set is not None and (not args.eval_every or pos.global_step % args.eval_every):
        run_eval(trainer, metrics)
    checkpoint(trainer)
    metrics.close()
    # gathered on every rank (FSDP shards must all take part); only the main process writes
    state = {k.removeprefix("model."): v for k, v in accelerator.get_state_dict(trainer.wrapper).items()}
    trained_model = accelerator.unwrap_model(trainer.wrapper).model
    mark_tag_rows_trained(trained_model, trainer.data.tokenizer)  # a later run on this model keeps its tag rows
    mode.save_final(args, trained_model, state, accelerator)
    if accelerator.is_main_process:
        # the tokenizer, and generation_config.json: stop at the EOS after </code>, in generate() and servers
        save_tokenizer_and_generation_config(args.output_dir, trainer.data.tokenizer)
        from reasoning_sft.plots import loss_curves
        loss_curves(os.path.join(args.output_dir, "metrics.jsonl"), os.path.join(args.output_dir, "loss.png"))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:  # last: everything above is whole (export.py and generate.py check it)
        run_contract.write_run_complete(args.output_dir, trainer.run_id, pos.global_step)
    log(accelerator, f"done: {pos.global_step} steps{metrics.closing_summary()} -> {args.output_dir}")


def describe(trainer, mode, model, tag_rows):
    accelerator, world = trainer.accelerator, trainer.accelerator.num_processes
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_total = sum(p.numel() for p in model.parameters())
    log(accelerator, f"[{mode.name}] {accelerator.distributed_type} x{world}, mixed precision "
                     f"{accelerator.mixed_precision}; {n_trainable:,} of {n_total:,} parameters trainable; "
                     f"{len(tag_rows)} tag rows trained; layout {'packed' if trainer.data.packed else 'padded'}")
    log(accelerator, f"attention: {attention.describe(model)}")
    policy = trainer.policy.summary(trainer.optimizer)
    log(accelerator, f"precision: {policy['policy']} (--precision {trainer.args.precision}): "
                     f"{policy['weights_dtype']} weights, update rounding {policy['update_rounding']}; "
                     f"{policy['optimizer']} state {policy['optimizer_state_bytes_per_param']} bytes per parameter")
    facts = mode.describe(model) if mode.describe else {}
    for name, value in facts.items():
        log(accelerator, f"{name}: {value}")
    if accelerator.is_main_process:
        write_json(os.path.join(trainer.args.output_dir, "train_config.json"),
                   {"mode": mode.name, "run_id": trainer.run_id, "args": vars(trainer.args), "world_size": world,
                    "total_steps": trainer.total_steps, "distributed_type": str(accelerator.distributed_type),
                    "mixed_precision": accelerator.mixed_precision, "precision": policy, **facts})


def resolve_precision(args, mode, accelerator):
    from accelerate.utils import DistributedType

    return precision.resolve(args.precision, mode.name, args.flash_attn,
                             fsdp=accelerator.distributed_type == DistributedType.FSDP)


def run(args, mode, preflight=None, callbacks=()):
    """Train with `mode`; returns the output directory. callbacks: Callback objects that observe the loop.

    preflight(args, mode, accelerator) -> the planned peak GiB or None; it runs before anything is
    loaded or written, and raises UserError to refuse the run (planning.preflight: on CUDA, the
    plan must fit the card)."""
    from accelerate.utils import set_seed

    check_args(args)
    accelerator = start_accelerator(args)
    planned_peak = preflight(args, mode, accelerator) if preflight is not None else None
    lock = prepare_output_dir(args, accelerator)
    try:
        write_speed = check_shared_output_dir(accelerator, args.output_dir)  # every rank sees rank 0's files
        set_seed(args.seed)  # before anything random: resize_token_embeddings, LoRA init, dropout
        data = load_data(args)
        policy = resolve_precision(args, mode, accelerator)
        if args.resume:  # a changed flag is refused before the model loads; resume() checks what it restores
            run_contract.check_newest(args.output_dir, contract_of(args, mode, accelerator, data, policy),
                                      args.reschedule)
        model, tag_rows = build_model(args, mode, data.tokenizer, policy)
        trainer = prepare_training(args, accelerator, data, model, mode, policy)
        trainer.planned_peak_gib = planned_peak
        trainer.run_id = run_contract.new_run_id()
        trainer.write_speed = write_speed
        trainer.callbacks = tuple(callbacks)
        if args.resume:
            resume(trainer)
        describe(trainer, mode, model, tag_rows)

        metrics = MetricsLog(accelerator, args.output_dir, trainer.total_steps, trainer.position.global_step,
                             args.report_to, tracker_config(args))
        stopped = train_loop(trainer, metrics)
        if stopped is not None:  # preempted or diverged: no final model
            metrics.close()
            accelerator.end_training()
            raise stopped
        finish(trainer, metrics, mode)
        accelerator.end_training()
    finally:
        if lock:
            lock.release()  # also when a run in this process fails, so the next one may start
    return args.output_dir
