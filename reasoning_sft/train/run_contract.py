"""What a run is, saved with every checkpoint and held to on --resume; and the marker that says it finished.

The contract. Every checkpoint's trainer_state.json holds the run's contract: every trainer flag,
except the few in MAY_CHANGE_ON_RESUME (where output goes, what is logged, when checkpoints and evals
happen, planning), plus what the flags point at, by content (the base model's config and weight
sizes, the tokenizer's fingerprint, the encoded data's manifest), and what the launch decides
(number of processes, distributed type, mixed precision, the resolved precision policy, layout).
Beside it is the LR schedule's record (schedule_record). A flag that a later version adds is
therefore in the contract unless it is listed here as free to change. --resume compares the
contract of the checkpoint it resumes with today's and refuses the first difference in one line
naming it and both values: a resumed run is the run that was started, or it does not start.

--reschedule is the one way to resume with another --max_steps or --epochs: the rest of the saved
LR schedule, from the saved step on, is stretched (or shrunk) over the new number of remaining
steps, so the LR at the saved step is unchanged and the schedule still ends where its shape ends
(0 for cosine and linear). The stretch is recorded in the contract, so a later plain --resume
rebuilds the same schedule. (transformers' LambdaLR saves no lambda: without this record a resume
rebuilds the schedule from its own command line.)

The marker. RUN_COMPLETE is written by the trainer last, after the final weights, tokenizer,
generation_config.json and loss plot, naming the run id that the run also wrote into
train_config.json. Every start of a trainer on the directory (--resume and --overwrite included)
removes it first. export.py and generate.py take a training output's final weights only when the
marker names the run of its train_config.json: a run that was stopped, killed or is still going
never passes for a finished one, and neither do weights an earlier run left.
"""

import hashlib
import json
import os
import uuid

from reasoning_sft.artifacts import fsync_dir
from reasoning_sft.errors import UserError

RUN_COMPLETE = "run_complete.json"
TRAIN_CONFIG = "train_config.json"

# flags (argparse dests of the trainers) a --resume may change: where this invocation writes and what it
# reports, never what a step computes. Every other flag is part of the contract.
MAY_CHANGE_ON_RESUME = frozenset({
    "output_dir", "resume", "overwrite", "reschedule",  # how this invocation starts
    "save_every", "keep_checkpoints", "log_every", "report_to", "verbose",  # what is written and when
    "eval_dir", "eval_every",  # held-out loss: computed without gradients (--eval_fraction splits the data: fixed)
    "max_bad_steps",  # when a diverging run stops; every step's update is unchanged
    "gradient_checkpointing",  # memory only: the same forward is recomputed for backward
    "plan", "gpu_memory_gib", "accelerate_config", "plan_kernel", "no_plan_check",  # the preflight plan
    "merge_lora",  # what is also written at the end
})
# flags that name something on disk: compared by what they hold (contract keys "model", "dataset", ...), so a
# moved directory resumes and a changed one does not
COMPARED_BY_CONTENT = frozenset({"model_name", "tokenizer_dir", "train_dir"})
# --reschedule lets these differ, and only these
SCHEDULE_LENGTH_FLAGS = ("max_steps", "epochs")

LABELS = {  # contract keys that are not flags, as the refusal names them
    "mode": "the trainer (LoRA or full)",
    "model": "the base model (--model_name: digest of config.json and weight file sizes)",
    "dataset": "the tokenizer of the data (--tokenizer_dir/--train_dir fingerprint)",
    "dataset_tokens": "the data's token count (--train_dir)",
    "dataset_manifest": "the encoded data (--train_dir manifest digest)",
    "rows": "the training rows",
    "world_size": "the number of processes",
    "packed": "the batch layout (packed)",
    "distributed_type": "the distributed type (accelerate config)",
    "mixed_precision": "the mixed precision (accelerate config)",
    "precision_policy": "the precision policy (--precision as resolved)",
}


def model_identity(model_name):
    """A short digest of a local model directory's config.json and weight files' names and sizes (cheap: no
    weights are read); a hub id as it is."""
    if not os.path.isdir(model_name):
        return f"hub:{model_name}"
    h = hashlib.sha256()
    config = os.path.join(model_name, "config.json")
    if os.path.isfile(config):
        with open(config, "rb") as f:
            h.update(f.read())
    for name in sorted(os.listdir(model_name)):
        if name.endswith((".safetensors", ".bin", ".pt", ".pth")):
            h.update(f"{name}:{os.path.getsize(os.path.join(model_name, name))};".encode())
    return h.hexdigest()[:16]


def manifest_digest(manifest):
    """What encode_dataset.py wrote about the data, less where the raw file was."""
    kept = {k: v for k, v in manifest.items() if k != "source"}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:16]


def build_contract(args, mode_name, world_size, packed, n_rows, manifest, launch):
    """The run's contract (JSON-ready). launch: {"distributed_type", "mixed_precision", "precision_policy"}."""
    flags = {k: v for k, v in sorted(vars(args).items())
             if k not in MAY_CHANGE_ON_RESUME and k not in COMPARED_BY_CONTENT}
    contract = {"mode": mode_name, "model": model_identity(args.model_name),
                "dataset": manifest.get("tokenizer_fingerprint"), "dataset_tokens": manifest.get("total_tokens"),
                "dataset_manifest": manifest_digest(manifest), "rows": n_rows, "world_size": world_size,
                "packed": packed, **launch, **flags}
    return json.loads(json.dumps(contract))  # as it reads back from trainer_state.json (tuples are lists)


def label(key):
    return LABELS.get(key, f"--{key}")


def saved_contract(state):
    """The contract of a checkpoint's trainer state; older versions saved a few keys as "signature"."""
    return state.get("contract") or state.get("signature") or {}


def check_resume(saved, current, where, reschedule=False):
    """UserError naming the first key whose value differs between the checkpoint's contract and this run's.

    Keys an older checkpoint does not record are not compared; returns their labels (to be said once).
    With reschedule, --max_steps and --epochs may differ (rescheduled() stretches the schedule)."""
    free = set(SCHEDULE_LENGTH_FLAGS) if reschedule else set()
    # the trainer first, then the flags as the command line has them, then what they point at
    for key in sorted(current, key=lambda k: (k != "mode", k in LABELS, k)):
        if key in free or key not in saved or saved[key] == current[key]:
            continue
        hint = ("pass --reschedule to stretch the rest of the saved schedule over the new length, or "
                if key in SCHEDULE_LENGTH_FLAGS else "")
        raise UserError(f"--resume: {label(key)} is {_show(current[key])} here but {_show(saved[key])} in {where}; "
                        f"{hint}resume with the same value, or start over with --overwrite")
    return [label(k) for k in current if k not in saved]


def check_newest(output_dir, contract, reschedule=False):
    """check_resume against the newest checkpoint's trainer state as listed, before anything is loaded (a
    13B model takes minutes); one that cannot be read is left to the verified load, which falls back."""
    from reasoning_sft.train.checkpoints import TRAINER_STATE, list_checkpoints

    found = list_checkpoints(output_dir)
    if not found:
        return
    try:
        with open(os.path.join(found[-1], TRAINER_STATE), encoding="utf-8") as f:
            state = json.load(f)
    except (OSError, ValueError):
        return
    if isinstance(state, dict):
        check_resume(saved_contract(state), contract, os.path.basename(found[-1]), reschedule)


def _show(value):
    return json.dumps(value) if isinstance(value, (dict, list, str)) or value is None else str(value)


# ---------------------------------------------------------------- the LR schedule

def schedule_record(kind, warmup_steps, total_steps):
    """The schedule as the contract keeps it: transformers' shape, and the stretches --reschedule made."""
    return {"kind": kind, "warmup_steps": warmup_steps, "total_steps": total_steps, "stretches": []}


def make_scheduler(optimizer, record):
    """transformers' scheduler for record's kind, warmup and length, with its stretches applied."""
    from transformers import get_scheduler

    scheduler = get_scheduler(record["kind"], optimizer, num_warmup_steps=record["warmup_steps"],
                              num_training_steps=record["total_steps"])
    install_stretches(scheduler, record)
    return scheduler


def install_stretches(scheduler, record):
    """Make scheduler follow record: the base lambda read at a remapped step. No stretch: left as made.

    A stretch (step s, old total a, new total b) maps a step t >= s of the new schedule to
    s + (t - s) (a - s) / (b - s) of the old one: at s nothing changes, at b the old end is reached.
    Later stretches are applied first (each starts at or after the ones before)."""
    if not record["stretches"]:
        return
    import torch

    base = make_scheduler(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0),
                          dict(record, stretches=[])).lr_lambdas[0]
    stretches = [tuple(s) for s in record["stretches"]]

    def multiplier(step):
        for start, old_total, new_total in reversed(stretches):
            if step > start:
                step = start + (step - start) * (old_total - start) / (new_total - start)
        return base(step)

    # set after any load_state_dict (LambdaLR keeps no plain function's state): a fresh list, one per group
    scheduler.lr_lambdas = [multiplier] * len(scheduler.optimizer.param_groups)


def rescheduled(record, step, new_total):
    """The record with the rest of its schedule, from `step`, stretched to end at new_total."""
    old_total = record["stretches"][-1][2] if record["stretches"] else record["total_steps"]
    if new_total <= step:
        raise UserError(f"--reschedule: the run is at step {step}; --max_steps/--epochs must give more steps "
                        f"than that (they give {new_total})")
    if old_total <= step and record["kind"] != "constant":
        raise UserError(f"--reschedule: the saved schedule ended at step {old_total} (the run is at step {step}): "
                        f"there is no rest of it to stretch; start a new run from this one's final model")
    if new_total == old_total:
        return record
    return dict(record, stretches=record["stretches"] + [[step, old_total, new_total]])


# ---------------------------------------------------------------- the completed-run marker

def new_run_id():
    return uuid.uuid4().hex[:12]


def clear_run_complete(output_dir):
    """A trainer starting on output_dir: whatever is there is no longer a finished run's result."""
    path = os.path.join(output_dir, RUN_COMPLETE)
    if os.path.exists(path):
        os.remove(path)
        fsync_dir(output_dir)


def write_run_complete(output_dir, run_id, step):
    """Last of all a run writes: its final model, tokenizer and generation config are whole."""
    from reasoning_sft.artifacts import write_json_atomic

    path = os.path.join(output_dir, RUN_COMPLETE)
    write_json_atomic(path, {"run_id": run_id, "global_step": step})
    fsync_dir(output_dir)


def check_run_complete(model_dir, train_config):
    """UserError unless model_dir's final weights are from the run its train_config.json describes.

    A train_config.json without a run id was written before the marker existed: taken as it is."""
    run_id = train_config.get("run_id")
    if run_id is None:
        return
    path = os.path.join(model_dir, RUN_COMPLETE)
    try:
        with open(path, encoding="utf-8") as f:
            done = json.load(f)
    except FileNotFoundError:
        raise UserError(f"{model_dir}: run {run_id} (its {TRAIN_CONFIG}) did not finish (no {RUN_COMPLETE}): "
                        f"it was stopped, killed or is still running, and no final model there is its own; "
                        f"resume it with --resume") from None
    except (OSError, ValueError) as err:
        raise UserError(f"{model_dir}: unreadable {RUN_COMPLETE} ({err})") from None
    if not isinstance(done, dict) or done.get("run_id") != run_id:
        found = done.get("run_id") if isinstance(done, dict) else None
        raise UserError(f"{model_dir}: its final model is from run {found}, but {TRAIN_CONFIG} is run {run_id}'s; "
                        "train again with --overwrite")


def check_training_output_if_any(model_dir):
    """check_run_complete for a directory holding train_config.json (a trainer's --output_dir); any other
    directory (an export, a hub model) is not a training output and is not checked here."""
    path = os.path.join(model_dir, TRAIN_CONFIG)
    if not os.path.isfile(path):
        return
    from reasoning_sft.artifacts import read_json

    check_run_complete(model_dir, read_json(path, "training config"))


# ---------------------------------------------------------------- --overwrite

def clear_output_dir(output_dir, keep):
    """Remove everything in a training output except `keep` (the lock): the marker first (from then on the
    directory is no finished run), train_config.json last (until then it is recognisably a training
    output, so a kill part-way leaves a directory a second --overwrite still clears)."""
    import shutil

    names = [n for n in os.listdir(output_dir) if n not in keep]
    order = sorted(names, key=lambda n: (n != RUN_COMPLETE, n == TRAIN_CONFIG))
    for name in order:
        path = os.path.join(output_dir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
    fsync_dir(output_dir)


def overwrite_refusal(output_dir, contents):
    """Why --overwrite must not empty output_dir (None: it may): only a training output is emptied."""
    if contents and TRAIN_CONFIG not in contents:
        shown = ", ".join(sorted(contents)[:3]) + (" ..." if len(contents) > 3 else "")
        return (f"--overwrite: {output_dir} is not a training output (no {TRAIN_CONFIG}; it holds {shown}) and "
                "--overwrite empties the directory; give a new or empty --output_dir")
    return None

