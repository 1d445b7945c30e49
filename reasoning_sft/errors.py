"""One error type for bad user input, and the CLI wrapper that turns it into exit code 2."""

import sys


class UserError(Exception):
    """Bad input or a bad artifact: reported as one line on stderr, exit code 2."""


def run_cli(main, argv=None):
    """Run a stage's main(); a UserError becomes one stderr line and exit 2, never a traceback."""
    prog = sys.argv[0].rsplit("/", 1)[-1] if sys.argv else "stage"
    try:
        code = main(argv)
    except UserError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; no output was written", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
