"""Checkpoints of the training loop: list, save (atomically), resume, and preemption.

A checkpoint is OUTPUT_DIR/checkpoint-STEP/ holding accelerate's state (optimizer, scheduler,
RNGs), the trainable parameters only (a LoRA checkpoint is MBs, not a base-model copy),
trainer_state.json, which says where in the data the run was and what it was run with (its
contract and LR schedule, run_contract.py), and
integrity.json, written last: the size and digest (xxh3-128; sha256 in records sealed by older
versions, which still verify) of every other file. --resume verifies the newest checkpoint against
it and falls back to the one before when it is truncated or corrupt.
"""

import json
import math
import os
import re
import shutil
import signal
import sys
import time

import torch

from reasoning_sft import digests
from reasoning_sft.artifacts import fsync_dir, replace_dir, write_json
from reasoning_sft.errors import UserError

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
TRAINER_STATE = "trainer_state.json"
TRAINABLE_STATE = "trainable_params.pt"
INTEGRITY = "integrity.json"  # {"files": {relative path: {"size", ALGORITHM: hex digest}}}, written last


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


def save_checkpoint(accelerator, output_dir, state, keep, seconds=None):
    """Atomic: written under a temporary name, sealed with its integrity record, renamed when every rank is done.

    seconds (a dict), if given, gets this rank's "save" (the state's parts) and "seal" (the integrity
    record) wall times.

    A write that fails (a full disk) removes the temporary directory and stops every rank with one
    line; the checkpoints already there are not touched.
    """
    name = f"checkpoint-{state['global_step']}"
    final = os.path.join(output_dir, name)
    tmp = os.path.join(output_dir, f".{name}.tmp")
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()

    def write_parts():  # every rank writes its part (RNG states; FSDP shards)
        accelerator.save_state(tmp)

    def write_state():  # once every part is on disk: where the run is
        if accelerator.is_main_process:
            write_json(os.path.join(tmp, TRAINER_STATE), state)

    def write_record():  # last: the integrity record; every rank hashes a share of the bytes
        seal(tmp, shared_hasher(accelerator), write=accelerator.is_main_process)

    timings = {"save": 0.0, "seal": 0.0}
    for write, part in ((write_parts, "save"), (write_state, "save"), (write_record, "seal")):
        t0 = time.perf_counter()
        failure = _first_failure(accelerator, _write_failure(write))  # also the barrier between them
        timings[part] += time.perf_counter() - t0
        if failure is not None:
            if accelerator.is_main_process:
                shutil.rmtree(tmp, ignore_errors=True)
            raise UserError(_save_failed_message(output_dir, name, failure))
    if accelerator.is_main_process:
        replace_dir(tmp, final)
        fsync_dir(output_dir)
        for old in list_checkpoints(output_dir)[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    if seconds is not None:
        seconds.update({k: round(v, 3) for k, v in timings.items()})
    return final


def _write_failure(write):
    """None, or what went wrong writing: an OSError (ENOSPC, EDQUOT, EIO ...) or torch's own writer failing."""
    try:
        write()
    except OSError as err:
        return f"{err.strerror or err}" + (f" ({err.filename})" if err.filename else "")
    except RuntimeError as err:
        # torch.save reports a short write (a full disk) as "[enforce fail at inline_container.cc] ..."
        if "inline_container" not in str(err) and "PytorchStreamWriter" not in str(err):
            raise
        return f"torch.save could not write ({str(err).splitlines()[0]})"
    return None


def _first_failure(accelerator, failure):
    """Every rank learns whether any rank failed, so they all stop together."""
    if accelerator.num_processes == 1:
        return failure
    from accelerate.utils import gather_object
    return next((f for f in gather_object([failure]) if f is not None), None)


def _save_failed_message(output_dir, name, failure):
    try:
        free = f"; {shutil.disk_usage(output_dir).free / 2**30:.2f} GiB free there"
    except OSError:
        free = ""
    intact = list_checkpoints(output_dir)
    keeps = (f"{os.path.basename(intact[-1])} is intact; free space and run again with --resume" if intact
             else "no earlier checkpoint; free space and run again")
    return f"cannot write {name} in {output_dir}: {failure}{free}. {keeps}"


# ---------------------------------------------------------------- integrity record

def _checkpoint_files(path):
    """Relative paths of every file of a checkpoint except the record itself, sorted."""
    out = []
    for root, _, files in os.walk(path):
        for f in files:
            rel = os.path.relpath(os.path.join(root, f), path)
            if rel != INTEGRITY:
                out.append(rel)
    return sorted(out)


def _hash_files(path, files, desc, fsync=False, algorithm=digests.DEFAULT):
    """{file: {"size", algorithm: digest}} for files (relative to path), hashed in parallel threads."""
    from reasoning_sft.progress import progress

    full = {f: os.path.join(path, f) for f in files}
    total = sum(os.path.getsize(p) for p in full.values())
    with progress(total=total, desc=desc, unit="B", unit_scale=True) as bar:
        found = digests.digest_files(list(full.values()), algorithm, bar.update, fsync)
    return {f: {"size": os.path.getsize(p), algorithm: found[p]} for f, p in full.items()}


def shared_hasher(accelerator):
    """_hash_files with the work split across processes: each reads about 1/world of the bytes, all get
    every hash. Hashing a multi-GB checkpoint on one rank alone would keep the others waiting at a
    collective long enough to hit its timeout."""
    if accelerator.num_processes == 1:
        return _hash_files
    from accelerate.utils import gather_object

    rank, world = accelerator.process_index, accelerator.num_processes

    def hash_files(path, files, desc, fsync=False, algorithm=digests.DEFAULT):
        largest_first = sorted(files, key=lambda f: -os.path.getsize(os.path.join(path, f)))
        try:
            mine, error = _hash_files(path, largest_first[rank::world], desc, fsync, algorithm), None
        except OSError as err:  # reported by every rank below, so none is left waiting
            mine, error = {}, f"{err.strerror or err} ({err.filename})"
        merged, errors = {}, []
        for part, err in gather_object([(mine, error)]):
            merged.update(part)
            errors.append(err)
        if any(errors):
            raise OSError(next(e for e in errors if e))
        return merged

    return hash_files


def seal(path, hasher=_hash_files, write=True):
    """Write INTEGRITY (size and xxh3-128 of every file), last: a checkpoint without it was never finished.

    Under several processes every rank calls this (they share the hashing); only one writes.
    """
    record = {"files": hasher(path, _checkpoint_files(path), "seal checkpoint", fsync=True)}
    if write:
        write_json(os.path.join(path, INTEGRITY), record)
        with open(os.path.join(path, INTEGRITY), "rb") as f:
            os.fsync(f.fileno())


def verify(path, hasher=_hash_files):
    """None when the checkpoint is whole, else why not (one phrase). Sizes first (cheap), then hashes."""
    record_path = os.path.join(path, INTEGRITY)
    if not os.path.exists(record_path):
        return f"no {INTEGRITY} (never finished)"
    try:
        with open(record_path, encoding="utf-8") as f:
            expected = {name: _expected(meta) for name, meta in json.load(f)["files"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        return f"unreadable {INTEGRITY} ({type(err).__name__})"
    present = _checkpoint_files(path)
    missing = sorted(set(expected) - set(present))
    if missing:
        return f"{missing[0]} is missing"
    for name, (size, _, _) in expected.items():
        found = os.path.getsize(os.path.join(path, name))
        if found != size:
            return f"{name} has {found} bytes, {size} expected (truncated)"
    for algorithm in sorted({algorithm for _, algorithm, _ in expected.values()}):
        names = sorted(name for name, (_, a, _) in expected.items() if a == algorithm)
        try:
            hashes = hasher(path, names, f"verify {os.path.basename(path)}", algorithm=algorithm)
        except OSError as err:
            return f"cannot be read ({err})"
        for name in names:
            if hashes[name][algorithm] != expected[name][2]:
                return f"{name} does not match its {algorithm} (corrupt)"
    return None


def _expected(meta):
    """(size, algorithm, digest) of one file's entry; a record names its digest per file, so records sealed
    with sha256 by older versions verify as they are. KeyError when no known digest is there."""
    known = [algorithm for algorithm in digests.ALGORITHMS if algorithm in meta]
    if not known:
        raise KeyError("no known digest")
    return int(meta["size"]), known[0], str(meta[known[0]])


def newest_intact_checkpoint(output_dir, say=print, checkpoints=None, hasher=_hash_files, sync=None, main=True):
    """The newest checkpoint that verifies; a broken newer one is moved aside (CHECKPOINT.corrupt), named in one line.

    Under several processes every rank calls this with the main process's `checkpoints`, a shared
    `hasher` and `sync` (a barrier, so no rank still reads a checkpoint that the main one moves aside).
    """
    checkpoints = list_checkpoints(output_dir) if checkpoints is None else checkpoints
    if not checkpoints:
        raise UserError(f"--resume: no checkpoint in {output_dir}")
    broken = []
    for path in reversed(checkpoints):
        if not os.path.exists(os.path.join(path, INTEGRITY)):
            say(f"--resume: {os.path.basename(path)} has no {INTEGRITY} (written by an older version); "
                "resuming from it unverified")
            problem = None
        else:
            problem = verify(path, hasher)
            if sync is not None:
                sync()
        if problem is None:
            for bad, why in broken:
                say(f"--resume: {os.path.basename(bad)} is incomplete or corrupt ({why}); "
                    f"moved to {os.path.basename(bad)}.corrupt, using {os.path.basename(path)}")
            return path
        broken.append((path, problem))
        if main:
            aside = path + ".corrupt"
            shutil.rmtree(aside, ignore_errors=True)
            os.rename(path, aside)  # kept for inspection; no longer listed, pruned or resumed from
    details = "; ".join(f"{os.path.basename(p)}: {why}" for p, why in broken)
    raise UserError(f"--resume: no intact checkpoint in {output_dir} ({details}); start over with --overwrite")


def load_newest_checkpoint(accelerator, output_dir, check):
    """Restore the newest intact checkpoint that check(trainer state, path) accepts (it raises UserError
    otherwise, before anything is loaded); returns its trainer state.

    Every rank takes part in the verification (each hashes a share) and so reaches the same verdict;
    the main process lists the checkpoints, says what it finds and moves broken ones aside.
    """
    checkpoints = list_checkpoints(output_dir) if accelerator.is_main_process else None
    sync = None
    if accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list
        checkpoints = broadcast_object_list([checkpoints])[0]
        sync = accelerator.wait_for_everyone

    def say(line):
        if accelerator.is_main_process:
            print(line, file=sys.stderr, flush=True)

    newest = newest_intact_checkpoint(output_dir, say, checkpoints, shared_hasher(accelerator), sync,
                                      accelerator.is_main_process)
    with open(os.path.join(newest, TRAINER_STATE)) as f:
        state = json.load(f)
    check(state, newest)
    accelerator.load_state(newest)
    state["path"] = newest
    return state


class Preemption:
    """SIGTERM (cluster preemption) sets a flag; the loop checkpoints after the current step.

    Each step's all-reduce carries the flag as a vote (train.loop.train_step), so all ranks stop at
    the same step even if only one got the signal; agreed() is the collective for after the last step.
    A context manager: the SIGTERM handler there was before comes back on exit.
    """

    def __init__(self):
        self.requested = False
        self.previous = None

    def __enter__(self):
        self.previous = signal.signal(signal.SIGTERM, self._handler)
        return self

    def __exit__(self, *exc):
        signal.signal(signal.SIGTERM, self.previous)

    def _handler(self, signum, frame):
        self.requested = True

    def agreed(self, accelerator):
        """All ranks stop together, even if only one of them got the signal."""
        if accelerator.num_processes == 1:
            return self.requested
        flag = torch.tensor([float(self.requested)], device=accelerator.device)
        return bool(accelerator.reduce(flag, reduction="sum").item() > 0)


# ---------------------------------------------------------------- clusters: a shared --output_dir, preemption

PROBE_BYTES = 16 * 2 ** 20  # what rank 0 writes (and fsyncs) at start: the check file, and a write-speed sample
GRACE_SECONDS = 30  # between SIGTERM and SIGKILL, by default: SLURM's KillWait, Kubernetes' grace period
CHECKPOINT_OVERHEAD = 0.05  # the share of the run's time the --save_every advice allows for checkpoints


def check_shared_output_dir(accelerator, output_dir):
    """Every rank must see what rank 0 writes in --output_dir: each rank writes its part of every checkpoint
    there (RNG states, FSDP shards) and rank 0 seals and renames it, so on node-local disks each node would
    hold a different half of every checkpoint. Rank 0 writes a file of PROBE_BYTES under a fresh name (no
    cached lookup can answer for it) and fsyncs it; every rank reads its token back; one gather says who saw
    it. Refuses in one line on the main process (the others exit 2, as lock_output_dir does).

    Returns the main process's measured write speed to --output_dir in bytes/s (None elsewhere): the
    preemption advice's estimate before the first checkpoint measures one."""
    import socket
    import uuid

    speed = None
    name, failure = None, None
    if accelerator.is_main_process:
        name = f".shared-check-{uuid.uuid4().hex}"
        token = f"{name} {socket.gethostname()} {os.getpid()}\n".encode()
        try:
            t0 = time.perf_counter()
            with open(os.path.join(output_dir, name), "wb") as f:
                f.write(token)
                block = os.urandom(2 ** 20)  # incompressible: some filesystems compress zeros away
                for _ in range(PROBE_BYTES // len(block)):
                    f.write(block)
                f.flush()
                os.fsync(f.fileno())
            speed = PROBE_BYTES / max(time.perf_counter() - t0, 1e-9)
        except OSError as err:
            failure = f"cannot write there ({err.strerror or err})"
    if accelerator.num_processes == 1:
        _remove_quietly(output_dir, name)
        if failure:
            raise UserError(f"--output_dir {output_dir}: {failure}")
        return speed
    from accelerate.utils import broadcast_object_list, gather_object

    name, failure = broadcast_object_list([name, failure])
    seen = False
    if failure is None:
        try:
            with open(os.path.join(output_dir, name), "rb") as f:
                seen = f.readline().split(b" ", 1)[0].decode(errors="replace") == name
        except OSError:
            pass
    views = gather_object([(accelerator.process_index, socket.gethostname(), seen)])
    if accelerator.is_main_process:
        _remove_quietly(output_dir, name)
    blind = [(rank, host) for rank, host, ok in views if not ok]
    if failure is None and not blind:
        return speed
    if not accelerator.is_main_process:
        raise SystemExit(2)  # the main process says why, in one line
    if failure:
        raise UserError(f"--output_dir {output_dir}: {failure}")
    hosts = sorted({host for _, host in blind})
    raise UserError(f"--output_dir {output_dir} is not on a filesystem all {accelerator.num_processes} processes "
                    f"share: {len(blind)} of them (rank {_ranges([r for r, _ in blind])} on {', '.join(hosts)}) do "
                    f"not see the file rank 0 wrote there. Every rank writes its part of each checkpoint into "
                    f"--output_dir and rank 0 seals it: give a directory every node mounts at the same path "
                    f"(NFS, Lustre, GPFS, ...)")


def _remove_quietly(directory, name):
    if name:
        try:
            os.remove(os.path.join(directory, name))
        except OSError:
            pass


def _ranges(numbers):
    """[0, 1, 2, 5] -> '0-2, 5'."""
    out, numbers = [], sorted(numbers)
    for n in numbers:
        if out and n == out[-1][1] + 1:
            out[-1][1] = n
        else:
            out.append([n, n])
    return ", ".join(f"{a}-{b}" if a != b else f"{a}" for a, b in out)


def sigterm_line(last_checkpoint_seconds, step_seconds, grace=GRACE_SECONDS):
    """What the log says when a SIGTERM checkpoint starts: how long the last one took, and whether that fits."""
    line = "SIGTERM: the current step is done; writing a checkpoint"
    if last_checkpoint_seconds is None:
        return line
    need = last_checkpoint_seconds + (step_seconds or 0)
    verdict = (f"within a {grace} s grace period" if need <= grace else
               f"more than a {grace} s grace period: if this process is killed first, --resume takes the "
               f"checkpoint before")
    return f"{line} (the last took {last_checkpoint_seconds:.0f} s; with this step ~{need:.0f} s, {verdict})"


def directory_bytes(path):
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)


def preemption_advice(checkpoint_bytes, checkpoint_seconds, step_seconds, save_every, measured,
                      grace=GRACE_SECONDS):
    """One log line: whether a SIGTERM checkpoint fits a grace period, and what --save_every bounds the loss.

    On SIGTERM the loop finishes the step it is in, then writes and seals a checkpoint (every byte written,
    then read back for its digest): step_seconds + checkpoint_seconds, which a cluster may not wait for.
    When it does not fit, the periodic checkpoints are what --resume will find: --save_every K puts K steps
    of work at risk and spends checkpoint_seconds every K steps; the advice is the K whose checkpoints cost
    CHECKPOINT_OVERHEAD of the run's time. measured: checkpoint_seconds is a checkpoint's own (else an
    estimate from the write speed measured at start)."""
    need = step_seconds + checkpoint_seconds
    how = "took" if measured else "should take about"
    size = (f"{checkpoint_bytes / 2 ** 30:.2f} GiB" if checkpoint_bytes >= 2 ** 30
            else f"{checkpoint_bytes / 2 ** 20:.1f} MiB")
    head = (f"checkpoints: {size} {how} {checkpoint_seconds:.0f} s to write "
            f"and seal ({checkpoint_bytes / 2 ** 20 / max(checkpoint_seconds, 1e-9):.0f} MiB/s); on SIGTERM the "
            f"current step ({step_seconds:.1f} s) ends first: ~{need:.0f} s in all")
    advised = max(1, math.ceil(checkpoint_seconds / (CHECKPOINT_OVERHEAD * max(step_seconds, 1e-9))))
    at_risk = f"{save_every * step_seconds / 60:.0f} min" if save_every else ""
    if need <= grace:
        return f"{head}, within a {grace} s grace period (SLURM's KillWait and Kubernetes' default)"
    if save_every:
        periodic = (f"--save_every {save_every} puts up to {at_risk} of work at risk; --save_every {advised} "
                    f"would keep checkpoints near {CHECKPOINT_OVERHEAD:.0%} of the run's time")
    else:
        periodic = (f"without --save_every a preemption can lose the whole run: --save_every {advised} keeps "
                    f"checkpoints near {CHECKPOINT_OVERHEAD:.0%} of the run's time, "
                    f"{advised * step_seconds / 60:.0f} min of work at risk")
    return (f"{head}, more than a {grace} s grace period (SLURM's KillWait and Kubernetes' default): a SIGTERM "
            f"checkpoint may be killed before it is sealed (then --resume takes the one before), unless your "
            f"cluster grants more; {periodic}")
