"""One error type for bad user input, and the CLI wrapper that turns it into exit code 2."""

import logging
import sys

# Libraries that log at import time about things our users cannot act on. bitsandbytes, for one, warns on
# CPUs with AVX512-BF16 that an optional hub kernel ("kernels-community") is missing, and peft and
# transformers import it: every run would start with that line, before anything of ours.
NOISY_LOGGERS = ("bitsandbytes",)


def quiet_third_party_logs():
    """Third-party import-time warnings off (errors still show); --verbose keeps them."""
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


class UserError(Exception):
    """Bad input or a bad artifact: reported as one line on stderr, exit code 2 (a subclass may set another)."""
    exit_code = 2


def add_verbose_flag(parser):
    parser.add_argument("--verbose", action="store_true", help="also show third-party libraries' warnings")


def run_cli(main, argv=None):
    """Run a stage's main(); a UserError becomes one stderr line and its exit code (2), never a traceback."""
    prog = sys.argv[0].rsplit("/", 1)[-1] if sys.argv else "stage"
    if "--verbose" not in (sys.argv[1:] if argv is None else argv):
        quiet_third_party_logs()
    try:
        code = main(argv)
    except UserError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; nothing is left half-written (what was complete stays)", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
