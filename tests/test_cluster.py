"""Clusters: --output_dir must be on a filesystem every rank shares (checked at start), and the preemption advice
(whether a SIGTERM checkpoint fits a grace period; the --save_every that bounds what a preemption loses)."""

import os
import shutil
import subprocess
import sys

import pytest
from conftest import REPO_ROOT, common, free_port, our_error_line, train_here

from reasoning_sft.train.checkpoints import GRACE_SECONDS, preemption_advice, sigterm_line


def can_unshare_mounts():
    if shutil.which("unshare") is None or os.geteuid() != 0:
        return False
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not can_unshare_mounts(), reason="needs root and unshare(1) to give one rank its own disk")
def test_an_output_dir_one_rank_cannot_see_is_refused_in_one_line(tmp_path, tiny_model_dir, tokenizer_dir,
                                                                   small_encoded):
    """Two processes as two nodes with node-local disks: rank 1 runs in its own mount namespace with a tmpfs over
    the parent of --output_dir, so the same path is a different directory there. The run stops at start, before
    any step, with one line from the main process; both exit 2."""
    parent = tmp_path / "local"
    parent.mkdir()
    out = parent / "out"
    argv = [sys.executable, str(REPO_ROOT / "training" / "train_full.py"),
            *map(str, common(tiny_model_dir, tokenizer_dir, small_encoded, out, "--batch_tokens", 1024,
                             "--max_steps", 1, "--report_to", "none"))]
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), WORLD_SIZE="2",
               LOCAL_WORLD_SIZE="2", ACCELERATE_USE_CPU="true", OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false")
    node_local = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                  'mount -t tmpfs tmpfs "$0" && exec "$@"', str(parent)]
    procs = [subprocess.Popen(cmd, cwd=REPO_ROOT, env=dict(env, RANK=str(rank), LOCAL_RANK=str(rank)),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for rank, cmd in ((0, argv), (1, node_local + argv))]
    results = [p.communicate(timeout=300) for p in procs]
    main = subprocess.CompletedProcess(argv, procs[0].returncode, *results[0])
    assert [p.returncode for p in procs] == [2, 2], results[1][1][-2000:]
    line = our_error_line(main, "train_full.py")
    assert "is not on a filesystem all 2 processes share" in line and "rank 1 on" in line, line
    assert "step=" not in main.stdout and not list(out.glob("checkpoint-*"))
    assert not [name for name in os.listdir(out) if name.startswith(".shared-check")]  # rank 0 cleaned up


def test_one_process_measures_its_write_speed_and_logs_the_preemption_advice(tmp_path, tiny_model_dir,
                                                                            tokenizer_dir, small_encoded):
    out = tmp_path / "out"
    code, stdout = train_here("train_full.py", *common(tiny_model_dir, tokenizer_dir, small_encoded, out,
                                                       "--batch_tokens", 1024, "--max_steps", 3, "--save_every", 2,
                                                       "--report_to", "none"))
    assert code == 0
    advice = [line for line in stdout.splitlines() if line.startswith("checkpoints: ")]
    # an estimate at step 1 (the write speed measured at start), then checkpoint-2's measured time
    assert len(advice) == 2 and "should take about" in advice[0] and " took " in advice[1], advice
    assert all(f"within a {GRACE_SECONDS} s grace period" in line for line in advice)
    assert not [name for name in os.listdir(out) if name.startswith(".shared-check")]


def test_preemption_advice_says_what_fits_and_what_to_save_every():
    gib = 2 ** 30
    fits = preemption_advice(2 * gib, 10, 5, 0, measured=True)
    assert "2.00 GiB took 10 s" in fits and "~15 s in all" in fits and "within a 30 s grace period" in fits
    # a 7B full run: 75 GiB at 0.5 GiB/s (written and read back), 20 s steps: far past 30 s
    late = preemption_advice(75 * gib, 300, 20, 0, measured=False)
    assert "should take about 300 s" in late and "more than a 30 s grace period" in late
    assert "may be killed before it is sealed" in late
    # 300 s of checkpoint per 5% of the run: every 300 / (0.05 * 20) = 300 steps, 100 min at risk
    assert "without --save_every a preemption can lose the whole run: --save_every 300" in late
    assert "100 min of work at risk" in late
    given = preemption_advice(75 * gib, 300, 20, 600, measured=True)
    assert "--save_every 600 puts up to 200 min of work at risk; --save_every 300 would" in given
    assert "within" in preemption_advice(75 * gib, 300, 20, 0, measured=True, grace=600)
    assert "1.0 MiB took" in preemption_advice(2 ** 20, 1, 1, 0, measured=True)


def test_the_sigterm_line_says_whether_the_checkpoint_fits():
    assert sigterm_line(None, 3.0) == "SIGTERM: the current step is done; writing a checkpoint"
    assert "the last took 5 s; with this step ~8 s, within a 30 s grace period" in sigterm_line(5.0, 3.0)
    late = sigterm_line(300.0, 20.0)
    assert "~320 s, more than a 30 s grace period" in late and "--resume takes the checkpoint before" in late
