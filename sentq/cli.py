"""The ``sentq`` entry point: a command line the plain reader understands (sentq.plain, from a table generated from
the Typer declarations) runs its body at once; every other one goes to the Typer app (sentq.commands)."""

from __future__ import annotations

import errno
import sys

from sentq import errors, plain
from sentq.terminal import EXIT_INTERRUPTED, Quiet, err, exit_code_for, print_error


def main() -> None:
    """Console-script entry point."""
    try:
        found = plain.read(sys.argv[1:])
        if found is None:
            from sentq.commands import app

            app()
            return
        body, options = found
        try:
            plain.resolve(body)(**options)
        except errors.SentqError as exc:
            print_error(exc)
            raise SystemExit(exit_code_for(exc)) from None
        except KeyboardInterrupt:  # as Typer ends a command interrupted: no message
            raise SystemExit(EXIT_INTERRUPTED) from None
        except OSError as exc:  # as Typer does: a closed pipe (`sentq status | head -1`) is exit 1, quietly
            if exc.errno != errno.EPIPE:
                raise
            sys.stdout = Quiet(sys.stdout)
            sys.stderr = Quiet(sys.stderr)
            raise SystemExit(1) from None
    except KeyboardInterrupt:
        err.print("interrupted")
        raise SystemExit(EXIT_INTERRUPTED) from None
    except errors.SentqError as exc:  # raised outside a command, e.g. by settings at import
        print_error(exc)
        raise SystemExit(exit_code_for(exc)) from None


if __name__ == "__main__":
    main()
