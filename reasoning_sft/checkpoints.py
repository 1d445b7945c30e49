"""Checkpoints of the training loop: list, save (atomically), resume, and preemption.

A checkpoint is OUTPUT_DIR/checkpoint-STEP/ holding accelerate's state (optimizer, scheduler,
RNGs), the trainable parameters only (a LoRA checkpoint is MBs, not a base-model copy) and
trainer_state.json, which says where in the data the run was and what it was run with.
"""

import json
import os
import re
import shutil
import signal

import torch

from .artifacts import replace_dir, write_json
from .errors import UserError

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
TRAINER_STATE = "trainer_state.json"
TRAINABLE_STATE = "trainable_params.pt"


def list_checkpoints(output_dir):
    """Complete checkpoints, oldest first."""
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


def load_newest_checkpoint(accelerator, output_dir, signature):
    """Restore the newest checkpoint made with the same `signature`; returns its trainer state."""
    checkpoints = list_checkpoints(output_dir)
    if not checkpoints:
        raise UserError(f"--resume: no checkpoint in {output_dir}")
    newest = checkpoints[-1]
    with open(os.path.join(newest, TRAINER_STATE)) as f:
        state = json.load(f)
    if state["signature"] != signature:
        changed = sorted(k for k in signature if state["signature"].get(k) != signature[k])
        raise UserError(f"--resume: {newest} was made with other {changed}; "
                        "resume with the same data, batch settings, seed and number of processes")
    accelerator.load_state(newest)
    state["path"] = newest
    return state


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
