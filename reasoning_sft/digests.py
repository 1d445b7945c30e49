"""File digests for checkpoint integrity records: xxh3-128 for new records, sha256 still read for old ones.

The record guards against truncated, torn and bit-rotted files, not against someone who can write the
checkpoint directory (they could rewrite the record as well), so a non-cryptographic digest is enough:
xxh3-128 hashes in memory at about 20 GiB/s on one core here, sha256 at about 1.6, and hashing a 27 GB
checkpoint twice (seal, then verify at --resume) should not rival writing it.

Both hashers release the GIL, so the files of a checkpoint are hashed by a pool of threads.
"""

import hashlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import xxhash

DEFAULT = "xxh3_128"
ALGORITHMS = {"xxh3_128": xxhash.xxh3_128, "sha256": hashlib.sha256}
READ_CHUNK = 16 * 2**20
MAX_THREADS = 8  # past a few threads the disk, not the hashing, sets the pace


def file_digest(path, algorithm=DEFAULT, on_bytes=None, fsync=False):
    """Hex digest of one file, read into one reused buffer (no new 16 MiB object per read)."""
    h = ALGORITHMS[algorithm]()
    buf = bytearray(READ_CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        if fsync:  # data of a file just written reaches the disk before the checkpoint is renamed into place
            os.fsync(f.fileno())
        while n := f.readinto(buf):
            h.update(view[:n])
            if on_bytes is not None:
                on_bytes(n)
    return h.hexdigest()


def digest_files(paths, algorithm=DEFAULT, on_bytes=None, fsync=False, threads=None):
    """{path: hex digest}, the files hashed in parallel threads, largest first (the last to finish is small)."""
    if not paths:
        return {}
    threads = threads or min(len(paths), MAX_THREADS, os.cpu_count() or 1)
    if on_bytes is not None:  # a progress bar is not thread-safe; its updates are serialized
        lock, report = threading.Lock(), on_bytes

        def on_bytes(n):
            with lock:
                report(n)

    largest_first = sorted(paths, key=lambda p: -os.path.getsize(p))
    with ThreadPoolExecutor(threads) as pool:
        digests = pool.map(lambda p: file_digest(p, algorithm, on_bytes, fsync), largest_first)
        return dict(zip(largest_first, digests))
