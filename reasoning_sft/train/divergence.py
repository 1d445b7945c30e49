"""What a diverging run does: a step whose loss or gradient norm is not finite changes nothing, and
--max_bad_steps such steps in a row stop the run (one line, exit 3, no final model).

The decision is made from values that are already global: the loss sum is all-reduced in
train_step and the gradient norm is taken after DDP's all-reduce (FSDP reduces it across shards),
so every rank reads the same numbers and skips or stops at the same step without a collective of
its own. Reading the verdict costs one host read a step (the update cannot be queued before it); the
SIGTERM vote (checkpoints.Preemption) is read in the same one.
"""

import torch

from reasoning_sft.errors import UserError
from reasoning_sft.train.checkpoints import list_checkpoints

EXIT_DIVERGED = 3  # not 2 (bad input) nor 143 (preempted): the input was fine, the run was not


class RunDiverged(UserError):
    """Too many non-finite steps in a row: run_cli prints the one line and exits EXIT_DIVERGED."""
    exit_code = EXIT_DIVERGED


def read_verdict(loss_sum, grad_norm, loss_scaled, stop_votes):
    """(whether this step may change the weights, whether all ranks stop after it), in one host read.

    loss_scaled: fp16 with a loss scaler, whose own job is to skip steps whose gradients overflowed
    (and lower its scale); there, as where no norm is known (None), only the loss is judged here.
    stop_votes: ranks that asked to stop (SIGTERM), summed in the step's all-reduce.
    """
    finite = torch.isfinite(loss_sum)
    if grad_norm is not None and not loss_scaled:
        finite &= torch.isfinite(torch.as_tensor(grad_norm, device=loss_sum.device))
    finite, stop = torch.stack([finite, stop_votes > 0]).tolist()
    return finite, stop


class DivergenceGuard:
    """Counts non-finite steps in a row; says when the run must stop, and in which words.

    The count starts at zero in each process: a --resume starts a new count (the checkpoint it
    continues from is one of a good step).
    """

    def __init__(self, max_bad_steps, output_dir):
        self.max_bad_steps = max_bad_steps
        self.output_dir = output_dir
        self.streak = []  # step numbers of the current run of non-finite steps

    def note(self, step, finite):
        """Record the verdict on `step`; returns how many non-finite steps in a row end with it."""
        self.streak = [] if finite else self.streak + [step]
        return len(self.streak)

    def must_stop(self):
        return len(self.streak) >= self.max_bad_steps

    def stop(self):
        """The error that ends the run, naming the steps and the checkpoint that --resume would use: the
        newest, which is from a good step (the loop saves none while a streak lasts)."""
        first, last = self.streak[0], self.streak[-1]
        steps = f"step {first}" if first == last else f"steps {first}-{last}"
        saved = list_checkpoints(self.output_dir)
        resume = f"last good checkpoint: {saved[-1]}" if saved else "no checkpoint saved yet"
        return RunDiverged(f"loss or gradient norm not finite at {steps} ({len(self.streak)} in a row, "
                           f"--max_bad_steps {self.max_bad_steps}): no update was applied from them and no final "
                           f"model was written; {resume}")


def skip_line(step, loss, grad_norm, in_a_row, max_bad_steps):
    """The log line of a skipped step."""
    return (f"step {step}: loss {_num(loss)}, gradient norm {_num(grad_norm)}: not finite, update skipped "
            f"({in_a_row} in a row; the run stops at {max_bad_steps})")


def _num(value):
    return "n/a" if value is None else f"{value:.4g}"

