"""One process of tests/test_fsdp.py's two: the trainer's step on a model sharded as accelerate's FSDP2 shards it.

    ACCELERATE_USE_CPU=true torchrun --nproc_per_node 2 tests/fsdp_step_worker.py CONFIG MODEL TOKENIZER TRAIN OUT

accelerate runs FSDP only on multi-accelerator types (a use_cpu FSDP config runs DDP), so this process takes
accelerate's real Accelerator (MULTI_CPU, gloo) for the step's collectives and shards the model with
accelerate's own fsdp2_prepare_model, given the FSDP plugin that CONFIG (the shipped YAML) makes, the way
`accelerate launch` passes it: the wrap units come from the model's _no_split_modules. Then
loop.optimizer_step runs one optimizer step of two micro-batches per rank (--grad_accum 2; the micro-batches
--plan runs for --batch_tokens 512, on every rank), with the trainer's loss wrapper, fused loss head, AdamW,
clipping and --gradient_checkpointing (the model's own); then a second step under the planner's MemTracker.
It records, when each micro-batch's forward starts, how many gradient elements this rank holds and in what
form, and writes OUT (JSON, rank 0): those records, each parameter's full gradient after the first step's
backward (before the update) against a single-process reference over all ranks' micro-batches, whether the
update ran, the bytes of this rank's shards (parameters, gradients, AdamW state) and the second step's peak
by category.
"""

import json
import os
import sys
from types import SimpleNamespace

import numpy as np
import torch


def fsdp_plugin(config_path):
    """The FullyShardedDataParallelPlugin a launch with CONFIG gives each process (env set by accelerate's launcher
    from the config file, read by the plugin as in a real run)."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.launch import prepare_multi_gpu_env

    args = launch_command_parser().parse_args(["--config_file", config_path, "--num_processes", "2", "x.py"])
    args, _, _ = _validate_launch_command(args)
    env = prepare_multi_gpu_env(args)
    fsdp_env = {k: v for k, v in env.items() if k.startswith("FSDP_") or k == "ACCELERATE_USE_FSDP"}
    os.environ.update(fsdp_env)
    return FullyShardedDataParallelPlugin(), fsdp_env


def main(config_path, model_dir, tokenizer_dir, train_dir, out_path):
    import datasets
    from accelerate import Accelerator
    from accelerate.utils.fsdp_utils import fsdp2_prepare_model
    from torch.distributed.tensor import DTensor

    from reasoning_sft.artifacts import load_prepared_tokenizer
    from reasoning_sft.data.batching import step_schedule
    from reasoning_sft.data.template import tag_ids
    from reasoning_sft.train import loop, planning, precision
    from reasoning_sft.train.modeling import ChunkedLossLM, load_causal_lm, resize_and_init_new_tokens

    accelerator = Accelerator()  # MULTI_CPU under torchrun with ACCELERATE_USE_CPU=true
    rank, world = accelerator.process_index, accelerator.num_processes
    plugin, fsdp_env = fsdp_plugin(config_path)
    torch.manual_seed(0)
    tokenizer, _ = load_prepared_tokenizer(tokenizer_dir)
    dataset = datasets.load_from_disk(train_dir)
    # the micro-batches --plan runs for --batch_tokens 512 --grad_accum 2 (its one-process schedule, seed 42: the
    # largest micro-batch after the smallest other one of its step), on every rank, so that the measured peak
    # compares with the plan's
    data = SimpleNamespace(train_set=dataset, packed=False)
    schedule = step_schedule(dataset["length"], 512, False, 42, 0, 1, 2)
    step, plan_rank, _ = planning.largest_step(data, SimpleNamespace(plans=[schedule], args=None))
    tags, pad = tag_ids(tokenizer), tokenizer.pad_token_id
    planned = planning.planned_micro_batches(data, step, plan_rank, 2, schedule)
    batches = loop.micro_batches(dataset, planned, plan_rank, pad, False, tags)
    every_rank = batches * world

    def loaded():
        model = load_causal_lm(model_dir)
        resize_and_init_new_tokens(model, tokenizer)
        # --gradient_checkpointing as build_model enables it: the model's own, per decoder layer; under FSDP2 a
        # layer's recompute in backward gathers its parameters again
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        model.train()
        return ChunkedLossLM(model)

    # the reference: one process, unsharded, the same global token mean over every rank's micro-batches
    reference = loaded()
    tokens = sum(int((b["targets"] != -100).sum()) for b in every_rank)
    for b in every_rank:
        (reference(**b)[0] / tokens).backward()
    want = {name: p.grad for name, p in reference.named_parameters()}

    # sharded as accelerate's FSDP2 shards it (fsdp2_prepare_model reads the plugin and, for the mixed
    # precision upcast, the accelerator's setting: "no" here, fp32 weights as --precision resolves under FSDP)
    launcher = SimpleNamespace(state=SimpleNamespace(fsdp_plugin=plugin), mixed_precision="no",
                               is_main_process=accelerator.is_main_process, device=accelerator.device)
    wrapper = fsdp2_prepare_model(launcher, loaded())
    units = sorted({type(m).__name__ for m in wrapper.modules()
                    if type(m).__name__.startswith("FSDP") and m is not wrapper})
    names = [name for name, _ in wrapper.named_parameters()]
    full_bytes = sum(want[n].numel() * 4 for n in names)

    held = []  # at the start of each micro-batch's forward: gradient elements held on this rank, and how

    def note(module, args, kwargs):
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        held.append({"bytes": sum((g.to_local() if isinstance(g, DTensor) else g).numel() * g.element_size()
                                  for g in grads),
                     "sharded": all(isinstance(g, DTensor) for g in grads), "count": len(grads)})

    wrapper.register_forward_pre_hook(note, with_kwargs=True)
    optimizer = loop.adamw(loop.param_groups(wrapper, 0.0), 1e-3)
    args = SimpleNamespace(max_grad_norm=1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    policy = precision.resolve("auto", "full", False, fsdp=True)
    trainer = SimpleNamespace(args=args, accelerator=accelerator, wrapper=wrapper, optimizer=optimizer,
                              scheduler=scheduler, policy=policy)
    before = {n: p.full_tensor().clone() for n, p in wrapper.named_parameters()}
    grads, kept_local = {}, {}  # full gradients (to compare), and this rank's shards (to size)

    def keep_grads(opt, *_):  # after the step's backward and clipping, before the update
        for n, p in wrapper.named_parameters():
            grads[n] = p.grad.full_tensor().clone()
            kept_local[n] = p.grad

    optimizer.register_step_pre_hook(keep_grads)
    (sums, clip), finite, _ = loop.optimizer_step(trainer, batches)
    scale = min(1.0, 1.0 / (float(clip) + 1e-6))  # clip_grad_norm_ scaled the gradients by this
    errors = {n: float((grads[n] - want[n] * scale).abs().max() / (want[n].abs().max() * scale + 1e-12))
              for n in names}

    def local_bytes(tensors):
        return sum((t.to_local() if isinstance(t, DTensor) else t).numel() * t.element_size() for t in tensors)

    held_after = {"params": local_bytes(wrapper.parameters()),
                  "grads": local_bytes(kept_local.values()),
                  "optimizer": local_bytes(v for st in optimizer.state.values() for v in st.values()
                                           if torch.is_tensor(v) and v.dim() > 0)}
    moved = all(not torch.equal(before[n], p.full_tensor()) for n, p in wrapper.named_parameters())

    # a second step (the optimizer state exists now) under the planner's MemTracker: this rank's peak by
    # category, real tensors, what --plan predicts for this launch on fake ones
    tracker = planning.memory_tracker()
    tracker.track_external(wrapper, optimizer)
    with tracker:
        loop.optimizer_step(trainer, batches)
    measured_peak = planning._gib(tracker.get_tracker_snapshot("peak").get(torch.device("cpu"), {}))
    if rank == 0:
        with open(out_path, "w") as f:
            json.dump({"world": world, "is_fsdp": loop.is_fsdp(wrapper), "local_bytes": held_after,
                       "measured_peak_gib": measured_peak, "slots": [b["input_ids"].numel() for b in batches],
                       "units": units, "fsdp_env": fsdp_env, "held": held,
                       "full_grad_bytes": full_bytes, "max_rel_error": max(errors.values()),
                       "worst": max(errors, key=errors.get), "finite": bool(finite), "updated": moved,
                       "loss": float(sums.loss_sum) / float(sums.tokens), "tokens": int(sums.tokens),
                       "reference_tokens": tokens, "grad_norm": float(clip),
                       "n_micro_batches": len(batches), "wrapped_layers": int(np.sum(
                           [type(m).__name__.startswith("FSDP") and type(m).__name__.endswith("DecoderLayer")
                            for m in wrapper.modules()]))}, f)
    accelerator.wait_for_everyone()


if __name__ == "__main__":
    main(*sys.argv[1:6])
