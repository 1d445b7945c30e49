"""Cost of a checkpoint's integrity record: seal (sha256 + fsync of every file) and verify, per GiB.

    python benchmarks/bench_checkpoint_hash.py --gib 1 --repeat 2

Writes --gib GiB of random bytes as one file in a temporary directory beside this repository
(the same filesystem as a run's output would be here), then times reasoning_sft.checkpoints.seal()
and verify() on it, one process. Hashing reads the file back, so the result depends on the disk and
on how much of the file the page cache still holds; it is an order of magnitude, not a constant.
"""

import argparse
import os
import shutil
import tempfile
import time

from reasoning_sft.checkpoints import seal, verify


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gib", type=float, default=1.0)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--dir", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    args = p.parse_args(argv)
    work = tempfile.mkdtemp(prefix=".bench-hash-", dir=args.dir)
    try:
        n_bytes = int(args.gib * 2**30)
        with open(os.path.join(work, "optimizer.bin"), "wb") as f:
            for start in range(0, n_bytes, 64 * 2**20):
                f.write(os.urandom(min(64 * 2**20, n_bytes - start)))
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            seal(work)
            t1 = time.perf_counter()
            assert verify(work) is None
            t2 = time.perf_counter()
            print(f"{args.gib:g} GiB: seal {t1 - t0:.2f} s ({(t1 - t0) / args.gib:.2f} s/GiB), "
                  f"verify {t2 - t1:.2f} s ({(t2 - t1) / args.gib:.2f} s/GiB)", flush=True)
    finally:
        shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    main()
