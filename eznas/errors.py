"""One exception type for every user-facing error: the CLI prints its message on one line."""
from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn


class EznasError(Exception):
    """A problem with the user's input, data or environment, explained in one line."""


def run_main(main: Callable[[], object], prog: str) -> NoReturn:
    """Run a script's ``main()`` and exit with its status (an int it returns, else 0). An
    :class:`EznasError` becomes the one line ``<prog>: error: <message>`` (status 1) and Ctrl-C the
    line ``<prog>: interrupted`` (status 130), never a traceback. The ``if __name__ == "__main__"``
    of every script under ``experiments/``."""
    import sys

    try:
        code = main()
    except EznasError as err:
        raise SystemExit(f"{prog}: error: {err}") from None
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    raise SystemExit(code if isinstance(code, int) and not isinstance(code, bool) else 0)
