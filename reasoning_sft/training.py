"""The one training loop behind training/train_peft.py and training/train_full.py.

The two entry points differ only in a Mode: how the model and optimizer are built and
how the result is saved. Data, batching, the step, logging, eval and checkpoints are here.

Loss discipline (as torchtune's): every micro-batch returns the SUM of its target-token
losses; the step divides by the number of target tokens of the whole step, counted across
gradient-accumulation micro-batches and processes before the first backward. So the loss
of a step is one token mean, whatever the batch layout, grad_accum or world size.
"""

import argparse
import contextlib
import json
import math
import os
import re
import shutil
import signal
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .artifacts import check_dataset_matches, load_manifest, load_prepared_tokenizer, replace_dir, write_json
from .batching import collate, empty_batch, step_schedule
from .errors import UserError
from .generation import write_generation_config
from .modeling import ChunkedLossLM, N_SECTIONS, load_causal_lm, mark_tag_rows_trained, resize_and_init_new_tokens
from .progress import progress
from .template import SECTION_NAMES, tag_ids

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
TRAINER_STATE = "trainer_state.json"
TRAINABLE_STATE = "trainable_params.pt"


@dataclass
class Mode:
    """What differs between LoRA and full fine-tuning."""
    name: str
    build_model: Callable     # (args, model, tag_row_ids) -> model to train
    build_optimizer: Callable  # (args, model) -> torch optimizer
    save_final: Callable      # (args, model, state_dict, accelerator) -> None; called on every rank


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
    a("--seed", type=int, default=42)
    a("--packing", choices=["auto", "on", "off"], default="auto",
      help="auto: packed rows with a varlen kernel (--flash_attn), padded rows otherwise")
    a("--flash_attn", action="store_true", help="flash-attention 2 in bf16 (pip install -r requirements-gpu.txt)")
    a("--gradient_checkpointing", action="store_true")
    a("--eval_dir", help="a second encoded dataset for evaluation")
    a("--eval_fraction", type=float, default=0.0, help="hold out this fraction of --train_dir for evaluation")
    a("--eval_every", type=int, default=0, help="evaluate every N steps (0: at the end only)")
    a("--save_every", type=int, default=0, help="checkpoint every N steps (0: at the end only)")
    a("--keep_checkpoints", type=int, default=2)
    a("--resume", action="store_true", help="continue from the newest checkpoint in --output_dir")
    a("--log_every", type=int, default=10)
    a("--overwrite", action="store_true", help="allow a non-empty --output_dir without --resume")
    return p


def check_args(args):
    if args.batch_tokens < 1 or args.grad_accum < 1 or args.epochs <= 0:
        raise UserError("--batch_tokens, --grad_accum and --epochs must be positive")
    if not 0 <= args.eval_fraction < 1:
        raise UserError("--eval_fraction must be in [0, 1)")
    if args.eval_dir and args.eval_fraction:
        raise UserError("give --eval_dir or --eval_fraction, not both")


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


# ---------------------------------------------------------------- checkpoints

def list_checkpoints(output_dir):
    found = []
    if os.path.isdir(output_dir):
        for name in os.listdir(output_dir):
            m = CHECKPOINT_RE.match(name)
            if m and os.path.exists(os.path.join(output_dir, name, TRAINER_STATE)):
                found.append((int(m.group(1)), os.path.join(output_dir, name)))
    return [path for _, path in sorted(found)]


def register_trainable_only_checkpointing(accelerator):
    """Checkpoints hold the trainable parameters only: a LoRA checkpoint is MBs, not a base-model copy."""

    def save_hook(models, weights, output_dir):
        if accelerator.is_main_process:
            for i, model in enumerate(models):
                state = {n: p.detach().cpu() for n, p in accelerator.unwrap_model(model).named_parameters()
                         if p.requires_grad}
                torch.save(state, os.path.join(output_dir, f"{i}_{TRAINABLE_STATE}"))
        weights.clear()

    def load_hook(models, input_dir):
        for i, model in enumerate(models):
            state = torch.load(os.path.join(input_dir, f"{i}_{TRAINABLE_STATE}"), map_location="cpu")
            missing, unexpected = accelerator.unwrap_model(model).load_state_dict(state, strict=False)
            if unexpected:
                raise UserError(f"{input_dir}: checkpoint does not fit this model ({unexpected[:3]} ...)")
        models.clear()

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)


def save_checkpoint(accelerator, output_dir, state, keep):
    """Atomic: written under a temporary name, renamed when every rank has finished."""
    final = os.path.join(output_dir, f"checkpoint-{state['global_step']}")
    tmp = os.path.join(output_dir, f".checkpoint-{state['global_step']}.tmp")
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(tmp)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_json(os.path.join(tmp, TRAINER_STATE), state)
        replace_dir(tmp, final)
        for old in list_checkpoints(output_dir)[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


class Preemption:
    """SIGTERM (cluster preemption) sets a flag; the loop checkpoints after the current step."""

    def __init__(self):
        self.requested = False
        signal.signal(signal.SIGTERM, self._handler)

    def _handler(self, signum, frame):
        self.requested = True

    def agreed(self, accelerator):
        """All ranks stop together, even if only one of them got the signal."""
        if accelerator.num_processes == 1:
            return self.requested
        flag = torch.tensor([float(self.requested)], device=accelerator.device)
        return bool(accelerator.reduce(flag, reduction="sum").item() > 0)


# ---------------------------------------------------------------- the step

def move(batch, device):
    return {k: v.to(device) for k, v in batch.items()}


def micro_batches(dataset, step, rank, pad_id, packed, tags):
    """This rank's collated micro-batches of an optimizer step."""
    out = []
    for micro in step:
        indices = micro[rank]
        out.append(collate(fetch_rows(dataset, indices), pad_id, packed, tags) if indices else empty_batch(pad_id))
    return out


def section_token_counts(batch):
    keep = batch["targets"] != -100
    return torch.bincount(batch["sections"][keep].long(), minlength=N_SECTIONS).float()


def train_step(accelerator, model, batches):
    """Forward/backward over the micro-batches of one step; returns global (loss sum, tokens, section sums, section tokens).

    Gradients end up as d(global token mean)/d(params): each micro-batch's loss sum is divided
    by the global token count and multiplied by world size (DDP/FSDP average gradients over ranks).
    """
    device = accelerator.device
    local_sections = sum(section_token_counts(b) for b in batches).to(device)
    global_sections = accelerator.reduce(local_sections.clone(), reduction="sum")
    global_tokens = global_sections.sum().clamp(min=1)
    loss_sum = torch.zeros((), device=device)
    section_loss = torch.zeros(N_SECTIONS, device=device)
    for i, batch in enumerate(batches):
        last = i == len(batches) - 1
        sync = contextlib.nullcontext() if last else accelerator.no_sync(model)
        with sync:
            batch_loss, per_section = model(**move(batch, device))
            accelerator.backward(batch_loss * accelerator.num_processes / global_tokens)
        loss_sum += batch_loss.detach()
        section_loss += per_section
    totals = accelerator.reduce(torch.cat([loss_sum[None], section_loss]), reduction="sum")
    return totals[0], global_tokens, totals[1:], global_sections


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
            counts += section_token_counts(batch).to(accelerator.device)
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


# ---------------------------------------------------------------- logging

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


def log(accelerator, msg):
    if accelerator.is_main_process:
        print(msg, flush=True)


# ---------------------------------------------------------------- the loop

def schedule_signature(args, world_size, packed, n_rows, manifest):
    """What must not change between a run and its resume, or the data order would differ."""
    return {"batch_tokens": args.batch_tokens, "grad_accum": args.grad_accum, "seed": args.seed,
            "world_size": world_size, "packed": packed, "rows": n_rows,
            "eval_fraction": args.eval_fraction, "dataset": manifest.get("tokenizer_fingerprint"),
            "dataset_tokens": manifest.get("total_tokens")}


def param_groups(model, weight_decay):
    """Decay matrices; not norms, biases or 1-d vectors (the usual AdamW practice)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def optimizer_state_bytes_per_param(optimizer):
    n_params = sum(p.numel() for group in optimizer.param_groups for p in group["params"])
    n_bytes = sum(v.numel() * v.element_size() for state in optimizer.state.values()
                  for v in state.values() if torch.is_tensor(v) and v.dim() > 0)
    return n_bytes / max(n_params, 1)


def run(args, mode):
    """Train with `mode`; returns the output directory."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedType, set_seed
    from transformers import get_scheduler

    check_args(args)
    try:
        accelerator = Accelerator()
    except (RuntimeError, ValueError) as err:  # e.g. an FSDP config on a machine without GPUs
        raise UserError(f"accelerate cannot start with this config: {err}") from None
    rank, world = accelerator.process_index, accelerator.num_processes
    if os.path.isdir(args.output_dir) and os.listdir(args.output_dir) and not (args.resume or args.overwrite):
        raise UserError(f"{args.output_dir} is not empty; pass --resume to continue or --overwrite to start over")
    if args.overwrite and not args.resume and accelerator.is_main_process:
        for name in ("metrics.jsonl",):
            if os.path.exists(os.path.join(args.output_dir, name)):
                os.remove(os.path.join(args.output_dir, name))
        for old in list_checkpoints(args.output_dir):
            shutil.rmtree(old)
    accelerator.wait_for_everyone()
    os.makedirs(args.output_dir, exist_ok=True)
    # seed before anything random: resize_token_embeddings, LoRA init, dropout
    set_seed(args.seed)

    tokenizer, tok_meta = load_prepared_tokenizer(args.tokenizer_dir)
    train_set, manifest = load_encoded(args.train_dir, tok_meta, args.tokenizer_dir)
    train_set, eval_set = split_eval(train_set, args.eval_fraction, args.seed)
    if args.eval_dir:
        eval_set, _ = load_encoded(args.eval_dir, tok_meta, args.tokenizer_dir)
    packed = args.packing == "on" or (args.packing == "auto" and args.flash_attn)
    tags, pad_id = tag_ids(tokenizer), tokenizer.pad_token_id

    model = load_causal_lm(args.model_name, flash_attn=args.flash_attn, load_in_4bit=getattr(args, "load_in_4bit", False))
    tag_rows = resize_and_init_new_tokens(model, tokenizer)
    model = mode.build_model(args, model, tag_rows)
    if args.gradient_checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_total = sum(p.numel() for p in model.parameters())
    log(accelerator, f"[{mode.name}] {accelerator.distributed_type} x{world}, mixed precision "
                     f"{accelerator.mixed_precision}; {n_trainable:,} of {n_total:,} parameters trainable; "
                     f"{len(tag_rows)} tag rows trained; layout {'packed' if packed else 'padded'}")

    lengths = np.asarray(train_set["length"])
    epochs = math.ceil(args.epochs)
    plans = [step_schedule(lengths, args.batch_tokens, packed, args.seed, e, world, args.grad_accum)
             for e in range(epochs)]
    if args.epochs != epochs:  # a fractional last epoch
        plans[-1] = plans[-1][:max(1, int(len(plans[-1]) * (args.epochs - epochs + 1)))]
    total_steps = sum(len(p) for p in plans)
    if args.max_steps:
        total_steps = min(total_steps, args.max_steps)

    wrapper = ChunkedLossLM(model)
    optimizer = mode.build_optimizer(args, model)
    scheduler = get_scheduler(args.lr_scheduler, optimizer, num_warmup_steps=int(args.warmup_ratio * total_steps),
                              num_training_steps=total_steps)
    # the scheduler is stepped by hand once per optimizer step (accelerate's wrapper would step it per process)
    wrapper, optimizer = accelerator.prepare(wrapper, optimizer)
    accelerator.register_for_checkpointing(scheduler)
    if accelerator.distributed_type != DistributedType.FSDP:  # FSDP writes its own sharded states
        register_trainable_only_checkpointing(accelerator)

    signature = schedule_signature(args, world, packed, len(train_set), manifest)
    global_step, epoch, step_in_epoch = 0, 0, 0
    if args.resume:
        checkpoints = list_checkpoints(args.output_dir)
        if not checkpoints:
            raise UserError(f"--resume: no checkpoint in {args.output_dir}")
        with open(os.path.join(checkpoints[-1], TRAINER_STATE)) as f:
            state = json.load(f)
        if state["signature"] != signature:
            changed = sorted(k for k in signature if state["signature"].get(k) != signature[k])
            raise UserError(f"--resume: {checkpoints[-1]} was made with other {changed}; "
                            "resume with the same data, batch settings, seed and number of processes")
        accelerator.load_state(checkpoints[-1])
        global_step, epoch, step_in_epoch = state["global_step"], state["epoch"], state["step_in_epoch"]
        log(accelerator, f"resumed from {checkpoints[-1]}: step {global_step}, epoch {epoch}, step {step_in_epoch} of it")
        if accelerator.is_main_process:
            forget_steps_after(os.path.join(args.output_dir, "metrics.jsonl"), global_step)

    write_json_main(accelerator, os.path.join(args.output_dir, "train_config.json"),
                    {"mode": mode.name, "args": vars(args), "world_size": world, "total_steps": total_steps,
                     "distributed_type": str(accelerator.distributed_type), "mixed_precision": accelerator.mixed_precision})
    metrics = MetricsLog(accelerator, args.output_dir, total_steps, global_step)
    preemption = Preemption()

    def checkpoint_state():
        return {"global_step": global_step, "epoch": epoch, "step_in_epoch": step_in_epoch, "signature": signature}

    wrapper.train()
    window = Throughput()
    stopped_early = False
    while epoch < len(plans) and global_step < total_steps:
        plan = plans[epoch]
        while step_in_epoch < len(plan) and global_step < total_steps:
            batches = micro_batches(train_set, plan[step_in_epoch], rank, pad_id, packed, tags)
            loss_sum, tokens, section_loss, section_tokens = train_step(accelerator, wrapper, batches)
            grad_norm = None
            if args.max_grad_norm > 0:
                grad_norm = accelerator.clip_grad_norm_(wrapper.parameters(), args.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            global_step += 1
            step_in_epoch += 1
            if global_step == 1:
                log(accelerator, f"optimizer state: {optimizer_state_bytes_per_param(optimizer):.2f} bytes per "
                                 f"trainable parameter ({type(optimizer.optimizer).__name__})")
            window.add(batches)
            if global_step % args.log_every == 0 or global_step == 1 or global_step == total_steps:
                record = {"step": global_step, "epoch": round(epoch + step_in_epoch / len(plan), 4),
                          "loss": loss_sum.item() / tokens.item(), "lr": scheduler.get_last_lr()[0],
                          "tokens": int(tokens.item()), **window.rates(world)}
                if grad_norm is not None:
                    record["grad_norm"] = float(grad_norm)
                for name, value in section_means(section_loss, section_tokens).items():
                    if value is not None:
                        record[f"loss_{name}"] = value
                metrics.write(record)
                window = Throughput()
            if eval_set is not None and args.eval_every and global_step % args.eval_every == 0:
                run_eval(accelerator, wrapper, eval_set, args, pad_id, packed, tags, metrics, global_step)
            metrics.advance()
            if args.save_every and global_step % args.save_every == 0 and global_step < total_steps:
                save_checkpoint(accelerator, args.output_dir, checkpoint_state(), args.keep_checkpoints)
            if preemption.agreed(accelerator):
                path = save_checkpoint(accelerator, args.output_dir, checkpoint_state(), args.keep_checkpoints)
                log(accelerator, f"SIGTERM: saved {path}; run again with --resume to continue")
                stopped_early = True
                break
        if stopped_early:
            break
        if step_in_epoch >= len(plan):
            epoch, step_in_epoch = epoch + 1, 0

    if stopped_early:
        metrics.close()
        accelerator.end_training()
        raise SystemExit(143)
    if eval_set is not None and (not args.eval_every or global_step % args.eval_every):
        run_eval(accelerator, wrapper, eval_set, args, pad_id, packed, tags, metrics, global_step)
    save_checkpoint(accelerator, args.output_dir, checkpoint_state(), args.keep_checkpoints)
    metrics.close()
    losses = "".join(f", {name.replace('_', ' ')} {metrics.last[name]:.4f}" for name in ("loss", "eval_loss")
                     if name in metrics.last)
    # gathered on every rank (FSDP shards must all take part); only the main process writes
    state = {k.removeprefix("model."): v for k, v in accelerator.get_state_dict(wrapper).items()}
    trained_model = accelerator.unwrap_model(wrapper).model
    mark_tag_rows_trained(trained_model, tokenizer)  # a later run on this model keeps its tag rows
    mode.save_final(args, trained_model, state, accelerator)
    if accelerator.is_main_process:
        tokenizer.save_pretrained(args.output_dir)
        write_generation_config(args.output_dir, tokenizer)  # stop at EOS and </code>, in generate() and servers
        from .plots import loss_curves
        loss_curves(os.path.join(args.output_dir, "metrics.jsonl"), os.path.join(args.output_dir, "loss.png"))
    accelerator.wait_for_everyone()
    log(accelerator, f"done: {global_step} steps{losses} -> {args.output_dir}")
    accelerator.end_training()
    return args.output_dir


def run_eval(accelerator, wrapper, eval_set, args, pad_id, packed, tags, metrics, global_step):
    loss, sections = evaluate(accelerator, wrapper, eval_set, args, pad_id, packed, tags)
    record = {"step": global_step, "eval_loss": loss}
    record.update({f"eval_loss_{k}": v for k, v in sections.items() if v is not None})
    metrics.write(record)


def forget_steps_after(metrics_path, step):
    """Drop metrics of steps the resumed run will redo, so every step is logged once."""
    if not os.path.exists(metrics_path):
        return
    with open(metrics_path, encoding="utf-8") as f:
        kept = [line for line in f if line.strip() and json.loads(line)["step"] <= step]
    tmp = metrics_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(kept)
    os.replace(tmp, metrics_path)


def write_json_main(accelerator, path, obj):
    if accelerator.is_main_process:
        write_json(path, obj)
