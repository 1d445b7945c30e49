"""The tiny pipeline that demo.py, the benchmarks and the tests' fixtures all build: one definition of
each data stage's command line, and the repository's scripts as modules.

The stage scripts sit at the root of the checkout this package is installed from (requirements.txt
installs it editable): REPO is that root. A command line starts with its script's path relative to
REPO, so `[sys.executable, *argv]` run in REPO is what a user types, and `load_script(argv[0]).main(argv[1:])`
is the same run in this process.

    tokenizer_argv(model, out)                            stage 1: prepare_llamatokenizer.py
    filter_argv(records, tokenizer, out, max_len)         stage 2: filter_data.py
    encode_argv(filtered, tokenizer, out, max_len)        stage 3: encode_dataset.py
    data_stages(model, records, work, max_len)            stages 1-3 in this process; returns their paths
    load_script("training/train_full.py")                 a script as a module: its main(argv), its Mode
"""

import importlib.util
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def tokenizer_argv(model, out_dir):
    return ["prepare_llamatokenizer.py", "--model", str(model), "--out_dir", str(out_dir), "--overwrite"]


def filter_argv(records, tokenizer_dir, out_dir, max_len, plot=True):
    return ["filter_data.py", "--json", str(records), "--tokenizer", str(tokenizer_dir), "--out_dir", str(out_dir),
            "--max_len", str(max_len), *([] if plot else ["--no_plot"]), "--overwrite"]


def encode_argv(filtered_dir, tokenizer_dir, out_dir, max_len, num_proc=1):
    return ["encode_dataset.py", "--json", os.path.join(str(filtered_dir), "data.json"), "--tokenizer",
            str(tokenizer_dir), "--encode_dir", str(out_dir), "--max_len", str(max_len), "--num_proc", str(num_proc),
            "--overwrite"]


def load_script(relpath):
    """The repository script REPO/relpath as a module (not run as __main__): call its main(argv).

    Loaded from its path, so nothing is added to sys.path; loaded once per process, under its own name.
    """
    name = os.path.splitext(os.path.basename(relpath))[0]
    if name in sys.modules:
        return sys.modules[name]
    path = os.path.join(REPO, relpath)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: the repository's scripts are not beside this package (install it "
                                "editable from a checkout: pip install -e .)")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def run_stage(argv):
    """One stage in this process; its main() returns 0 or raises (UserError on bad input)."""
    code = load_script(argv[0]).main(argv[1:])
    if code != 0:
        raise RuntimeError(f"{' '.join(argv)} exited with {code}")


def data_stages(model, records, work, max_len, plot=False, num_proc=1):
    """Stages 1-3 on RECORDS (a JSON/JSONL file) with MODEL's tokenizer, under WORK; returns their paths."""
    paths = {name: os.path.join(str(work), name) for name in ("tokenizer", "filtered", "encoded")}
    run_stage(tokenizer_argv(model, paths["tokenizer"]))
    run_stage(filter_argv(records, paths["tokenizer"], paths["filtered"], max_len, plot=plot))
    run_stage(encode_argv(paths["filtered"], paths["tokenizer"], paths["encoded"], max_len, num_proc=num_proc))
    paths["train_dir"] = os.path.join(paths["encoded"], "arrow_dataset")
    return paths
