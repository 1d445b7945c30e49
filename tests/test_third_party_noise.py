"""Third-party warnings at import time must not break our one-line contract on any CPU.

On CPUs with AVX512-BF16, importing bitsandbytes (peft and transformers do) logs a warning that an
optional hub kernel is missing. Machines without that CPU feature never show it, so the tests put
it there: a sitecustomize module makes every `import bitsandbytes` log that exact warning, through
bitsandbytes' own logger, as the real import does.
"""

import os
import textwrap

import pytest
from conftest import our_error_line, run_script

WARNING = "Failed to load CPU gemm_4bit_forward from kernels-community: No module named 'kernels'"

SITECUSTOMIZE = textwrap.dedent(f'''
    import importlib.abc, importlib.machinery, logging, sys

    class NoisyBitsandbytes(importlib.abc.MetaPathFinder):
        """Find bitsandbytes as usual, then log what its CPU backend logs on AVX512-BF16 machines."""

        def find_spec(self, name, path=None, target=None):
            if name != "bitsandbytes":
                return None
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            if spec is not None:
                real_exec = spec.loader.exec_module

                def exec_module(module):
                    real_exec(module)
                    logging.getLogger("bitsandbytes.backends.cpu.ops").warning({WARNING!r})

                spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, NoisyBitsandbytes())
''')


@pytest.fixture
def noisy_env(tmp_path):
    site = tmp_path / "noisy_site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}


def test_the_simulated_warning_is_real(noisy_env, tmp_path):
    """Without our entry point the warning reaches stderr: the simulation works."""
    script = tmp_path / "plain.py"
    script.write_text("import bitsandbytes\n")
    proc = run_script(str(script), env=noisy_env)
    assert proc.returncode == 0, proc.stderr
    assert WARNING in proc.stderr


@pytest.mark.slow
def test_trainer_run_and_its_bad_input_stay_clean_despite_the_warning(noisy_env, tmp_path, tiny_model_dir,
                                                                      tokenizer_dir, encoded_dir):
    common = ["--model_name", tiny_model_dir, "--tokenizer_dir", tokenizer_dir, "--batch_tokens", "512"]
    ok = run_script("training/train_peft.py", *common, "--train_dir", encoded_dir / "arrow_dataset",
                    "--output_dir", tmp_path / "o", "--max_steps", "1", env=noisy_env)
    assert ok.returncode == 0, ok.stderr
    assert WARNING not in ok.stderr, ok.stderr
    # found after the model (and so bitsandbytes) is loaded: nothing to resume from
    bad = run_script("training/train_peft.py", *common, "--train_dir", encoded_dir / "arrow_dataset",
                     "--output_dir", tmp_path / "o2", "--resume", env=noisy_env)
    assert "no checkpoint" in our_error_line(bad, "train_peft.py")
    assert WARNING not in bad.stderr, bad.stderr


@pytest.mark.slow
def test_verbose_shows_third_party_warnings(noisy_env, tmp_path):
    script = tmp_path / "entry.py"
    script.write_text("import sys\nfrom reasoning_sft.errors import run_cli\n"
                      "def main(argv):\n    import bitsandbytes\n    return 0\n"
                      "run_cli(main)\n")
    quiet = run_script(str(script), env=noisy_env)
    verbose = run_script(str(script), "--verbose", env=noisy_env)
    assert quiet.returncode == 0 and verbose.returncode == 0, quiet.stderr + verbose.stderr
    assert WARNING not in quiet.stderr
    assert WARNING in verbose.stderr
