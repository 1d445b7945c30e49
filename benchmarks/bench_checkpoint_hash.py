"""Cost of a checkpoint's integrity record, per GiB: seal (hash + fsync of every file) and verify,
with sha256 as sealed before (one thread, a new 16 MiB bytes object per read) and with xxh3-128 as
sealed now (a reused read buffer, files hashed in parallel threads).

    python benchmarks/bench_checkpoint_hash.py --gib 1 --files 2 --repeat 3

Writes --gib GiB of random bytes, split over --files files (a full fine-tuning checkpoint is mostly two
large files: the weights and the optimizer state), in a temporary directory beside this repository
(the same filesystem as a run's output would be here), then times seal() and verify() each way, one
process. Hashing reads the files back, so the result depends on the disk and on how much of them the
page cache still holds (here: all of it, the files were just written); an order of magnitude, not a
constant. Prints each repeat, then the minimum over the repeats and the sha256 / xxh3-128 ratio.
"""

import argparse
import hashlib
import os
import shutil
import tempfile
import time

from reasoning_sft.train import checkpoints


def old_hash_files(path, files, desc, fsync=False, algorithm="sha256"):
    """The sealing as it was before xxh3-128: sha256, file after file, f.read() of 16 MiB chunks."""
    out = {}
    for name in files:
        h = hashlib.sha256()
        with open(os.path.join(path, name), "rb") as f:
            if fsync:
                os.fsync(f.fileno())
            while chunk := f.read(16 * 2**20):
                h.update(chunk)
        out[name] = {"size": os.path.getsize(os.path.join(path, name)), "sha256": h.hexdigest()}
    return out


def write_files(work, gib, n_files):
    per_file = int(gib * 2**30) // n_files
    for i in range(n_files):
        with open(os.path.join(work, f"part-{i}.bin"), "wb") as f:
            for start in range(0, per_file, 64 * 2**20):
                f.write(os.urandom(min(64 * 2**20, per_file - start)))


def time_once(work, hasher):
    t0 = time.perf_counter()
    checkpoints.seal(work, hasher)
    t1 = time.perf_counter()
    assert checkpoints.verify(work, hasher) is None
    return t1 - t0, time.perf_counter() - t1


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gib", type=float, default=1.0)
    p.add_argument("--files", type=int, default=2)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--dir", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    args = p.parse_args(argv)
    ways = {"sha256 (before)": old_hash_files, "xxh3-128 (now)": checkpoints._hash_files}
    work = tempfile.mkdtemp(prefix=".bench-hash-", dir=args.dir)
    best = {}
    try:
        write_files(work, args.gib, args.files)
        for _ in range(args.repeat):
            for name, hasher in ways.items():  # interleaved: a load spike from elsewhere hits both
                s, v = time_once(work, hasher)
                best[name] = min(best.get(name, (s, v)), (s, v), key=sum)
                print(f"{name:16s} {args.gib:g} GiB in {args.files} files: seal {s / args.gib:.3f} s/GiB, "
                      f"verify {v / args.gib:.3f} s/GiB", flush=True)
    finally:
        shutil.rmtree(work)
    (s_old, v_old), (s_new, v_new) = best.values()
    print(f"best of {args.repeat}: sha256 seal {s_old / args.gib:.3f} verify {v_old / args.gib:.3f} s/GiB; "
          f"xxh3-128 seal {s_new / args.gib:.3f} verify {v_new / args.gib:.3f} s/GiB; "
          f"ratio seal {s_old / s_new:.1f}x, verify {v_old / v_new:.1f}x")
    return 0


if __name__ == "__main__":
    main()
