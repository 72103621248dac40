"""What every tool's ``main()`` shares: a user's mistake ends in one line, not a traceback.

    def main(argv=None):
        args = parse_args(argv)
        with exit_on_user_error('train.py'):  # set-up: wrong path, missing dataset, bad option
            cfg = build_train_config(args.config, ...)
        run_train(cfg)
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from .runner import USER_ERRORS


@contextlib.contextmanager
def exit_on_user_error(prog: str, errors: tuple[type[BaseException], ...] = USER_ERRORS
                       ) -> Iterator[None]:
    """Within the block, an error of one of the ``errors`` types exits the process with
    ``<prog>: error: <message>`` (status 1, as argparse reports a bad argument)."""
    try:
        yield
    except errors as error:
        # str(KeyError('x')) is "'x'"; a message spread over lines is joined into one
        text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
        sys.exit(f'{prog}: error: {" ".join(text.split())}')
