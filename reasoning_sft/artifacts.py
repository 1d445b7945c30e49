"""Artifacts on disk: atomic output directories, metadata files, fingerprints, checks.

Every stage writes into a temporary sibling directory and renames it into place only when
complete, so a killed stage never leaves something the next stage would accept. Every
stage writes a small JSON metadata file that the next stage checks.
"""

import contextlib
import hashlib
import json
import os
import shutil
import tempfile

from reasoning_sft.data.template import TAGS, TEMPLATE_VERSION
from reasoning_sft.errors import UserError

TOKENIZER_META = "sft_tokenizer.json"   # written by prepare_llamatokenizer.py
FILTER_REPORT = "filter_report.json"    # written by filter_data.py
MANIFEST = "manifest.json"              # written by encode_dataset.py
DATASET_DIRNAME = "arrow_dataset"


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")


def read_json(path, what):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise UserError(f"{path}: missing {what}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: unreadable {what} ({err})") from None


def read_jsonl(path, what, torn_last_line_ok=False):
    """The rows (JSON objects) of a JSON Lines file that a stage wrote; UserError naming path:line otherwise.

    torn_last_line_ok: skip a last line that has no newline and does not parse, which is what a
    kill in the middle of a write leaves at the end of an append-only log (metrics.jsonl).
    """
    if os.path.isdir(path):
        raise UserError(f"{path}: is a directory, expected the {what} file")
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")  # the last piece is "" when the file ends with a newline
    except FileNotFoundError:
        raise UserError(f"{path}: missing {what}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: unreadable {what} ({err})") from None
    rows = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (ValueError, RecursionError) as err:
            if torn_last_line_ok and lineno == len(lines):
                continue
            raise UserError(f"{path}:{lineno}: unreadable {what} ({err})") from None
        if not isinstance(row, dict):
            raise UserError(f"{path}:{lineno}: unreadable {what} (not a JSON object)")
        rows.append(row)
    return rows


def check_output_dir(path, overwrite):
    """Fail early (before any work) when the output exists and --overwrite was not given."""
    if os.path.exists(path) and not overwrite:
        raise UserError(f"{path} already exists; pass --overwrite to replace it")
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)


@contextlib.contextmanager
def atomic_output_dir(path, overwrite=False):
    """Yield a temporary sibling directory; on success it replaces `path` in one rename."""
    check_output_dir(path, overwrite)
    path = os.path.abspath(path)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.tmp-", dir=os.path.dirname(path))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; the artifact should not be
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_dir(tmp, path)


def replace_dir(src, dst):
    """Move the finished directory `src` to `dst`, replacing an old `dst` with no window where neither is whole."""
    if os.path.exists(dst):
        old = dst + f".old-{os.getpid()}"
        os.rename(dst, old)
        os.rename(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(src, dst)


def vocab_fingerprint(tokenizer):
    """sha256 of everything that decides which id a piece of text gets."""
    h = hashlib.sha256()
    h.update(json.dumps(sorted(tokenizer.get_vocab().items()), ensure_ascii=False).encode())
    specials = {name: getattr(tokenizer, f"{name}_token_id") for name in ("bos", "eos", "pad", "unk")}
    h.update(json.dumps(specials, sort_keys=True).encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:  # normalizer / pre-tokenizer decide the stray-"▁" behaviour
        # each part as tokenizer.json has it, without serialising the vocabulary (10 MB for Qwen's)
        parts = [getattr(backend, part) for part in ("normalizer", "pre_tokenizer")]
        pipeline = [None if part is None else json.loads(part.__getstate__()) for part in parts]
        h.update(json.dumps(pipeline, sort_keys=True).encode())
    return h.hexdigest()[:16]


def prepared_tokenizer_meta(tokenizer_dir):
    """The checked sft_tokenizer.json of a stage 1 directory, without loading the tokenizer.

    Cheap (no transformers import), so a stage can refuse a wrong directory before it
    reads a large input; load_prepared_tokenizer() then checks the files against it.
    """
    meta_path = os.path.join(tokenizer_dir, TOKENIZER_META)
    if not os.path.isdir(tokenizer_dir):
        raise UserError(f"{tokenizer_dir}: no such tokenizer directory; create it with prepare_llamatokenizer.py")
    if not os.path.exists(meta_path):
        raise UserError(f"{tokenizer_dir}: not written by prepare_llamatokenizer.py (no {TOKENIZER_META}); "
                        "run prepare_llamatokenizer.py --model M --out_dir DIR first")
    meta = read_json(meta_path, "tokenizer metadata")
    if meta.get("template_version") != TEMPLATE_VERSION:
        raise UserError(f"{tokenizer_dir}: prepared for template v{meta.get('template_version')}, "
                        f"this code uses v{TEMPLATE_VERSION}; re-run prepare_llamatokenizer.py, "
                        "then filter_data.py and encode_dataset.py with the new directory")
    missing = [t for t in TAGS if t not in meta.get("added_tokens", {})]
    if missing:
        raise UserError(f"{tokenizer_dir}: tags {missing} missing from {TOKENIZER_META}; "
                        "re-run prepare_llamatokenizer.py")
    return meta


def tokenizer_class(tokenizer_dir):
    """The class that tokenizer_config.json names, imported on its own.

    What AutoTokenizer resolves too, but AutoTokenizer imports torch through the model configs:
    4 of the 6 seconds that the data stages spent starting up. Unknown names fall back to it.
    """
    import transformers

    try:
        with open(os.path.join(tokenizer_dir, "tokenizer_config.json"), encoding="utf-8") as f:
            name = json.load(f).get("tokenizer_class")
        cls = getattr(transformers, name, None) if isinstance(name, str) else None
    except Exception:  # missing/corrupt config, or a class whose backend is absent: let AutoTokenizer judge
        cls = None
    return cls if hasattr(cls, "from_pretrained") else transformers.AutoTokenizer


def load_tokenizer_files(tokenizer_dir):
    """Load a saved tokenizer the one way every stage does (stage 1 verifies exactly this)."""
    return tokenizer_class(tokenizer_dir).from_pretrained(tokenizer_dir)


def load_prepared_tokenizer(tokenizer_dir):
    """Load a tokenizer written by prepare_llamatokenizer.py, refusing anything else."""
    meta = prepared_tokenizer_meta(tokenizer_dir)  # cheap checks before the slow import
    try:
        tokenizer = load_tokenizer_files(tokenizer_dir)
    except Exception as err:  # a corrupt dir: say so in one line
        raise UserError(f"{tokenizer_dir}: cannot load the tokenizer ({type(err).__name__}: {err})") from None
    if vocab_fingerprint(tokenizer) != meta.get("fingerprint"):
        raise UserError(f"{tokenizer_dir}: the tokenizer files do not match {TOKENIZER_META} "
                        "(edited after stage 1?); re-run prepare_llamatokenizer.py")
    return tokenizer, meta


def load_manifest(dataset_dir):
    """The manifest that encode_dataset.py wrote beside `E/arrow_dataset`."""
    dataset_dir = os.path.normpath(dataset_dir)
    if not os.path.isdir(dataset_dir):
        raise UserError(f"{dataset_dir}: no such dataset directory; create it with encode_dataset.py")
    manifest_path = os.path.join(os.path.dirname(dataset_dir), MANIFEST)
    if not os.path.exists(manifest_path):
        raise UserError(f"{dataset_dir}: not written by encode_dataset.py (no {manifest_path})")
    return read_json(manifest_path, "dataset manifest")


def check_dataset_matches(manifest, tokenizer_meta, dataset_dir, tokenizer_dir):
    """Never silently train on ids produced by another tokenizer or template."""
    if manifest.get("tokenizer_fingerprint") != tokenizer_meta.get("fingerprint"):
        raise UserError(f"{dataset_dir} was encoded with tokenizer {manifest.get('tokenizer_fingerprint')}, "
                        f"but {tokenizer_dir} is {tokenizer_meta.get('fingerprint')}; re-encode with this tokenizer")
    if manifest.get("template_version") != TEMPLATE_VERSION:
        raise UserError(f"{dataset_dir} uses template v{manifest.get('template_version')}, "
                        f"this code uses v{TEMPLATE_VERSION}; re-run prepare_llamatokenizer.py, filter_data.py and "
                        "encode_dataset.py")


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_dir(path):
    """A rename or removal in `path` reaches the disk (after a node crash the directory shows it); best effort."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_file_atomic(path, write):
    """Call write(file) on a temporary sibling of `path`, then rename it into place (never half a file)."""
    path = os.path.abspath(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.tmp-", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            write(f)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; an artifact should not be
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_jsonl_atomic(path, rows):
    def write(f):
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    write_file_atomic(path, write)


def write_json_atomic(path, obj):
    def write(f):
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")
    write_file_atomic(path, write)
