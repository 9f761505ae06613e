"""What every bird_jax command shares: user errors as one line, and quiet libraries.

A user error (a bad config value or key, a missing folder or file, an incompatible checkpoint, a
bad pipeline string) prints `bird_jax: error: <what to fix>` on stderr and exits 2, without a
traceback; `--debug` (or `-v 1`) shows the traceback instead. Library and absl INFO logs show
only with an explicit `--verbosity` (`-v 0` for INFO).
"""

import logging as std_logging
import re
import sys
from collections.abc import Callable

from absl import app, flags, logging

flags.DEFINE_bool("debug", False, "Show the full traceback of errors.", allow_override=True)

EXIT_USER_ERROR = 2


class UserError(Exception):
    """Something the user must fix; the message says what."""


# What a mistake in a command line, config or file gives; anything else is a bug (traceback).
USER_ERRORS = (UserError, ValueError, KeyError, FileNotFoundError, NotADirectoryError)


def one_line(error: BaseException) -> str:
    """The error's message on one line (KeyError's without its quotes)."""
    message = error.args[0] if isinstance(error, KeyError) and error.args else error
    return " ".join(str(message).split()) or type(error).__name__


class _QuietLibraries:
    """Drops the INFO chatter of Orbax and Grain (their warnings and errors still show)."""

    def filter(self, record) -> bool:
        noisy = any(part in record.pathname for part in ("/orbax/", "/grain/", "/jax/_src/"))
        return record.levelno >= std_logging.WARNING or not noisy


def quiet_libraries() -> None:
    """Keeps library INFO logs out of the terminal (they stay visible with -v 1)."""
    if logging.get_verbosity() < logging.DEBUG:
        logging.get_absl_handler().addFilter(_QuietLibraries())


def _fail(message: str) -> None:
    print(f"bird_jax: error: {message}", file=sys.stderr)
    sys.exit(EXIT_USER_ERROR)


def _config_key_error(error: AttributeError, argv: list[str]) -> str:
    """ml_collections' "'key'\nDid you mean ...?" for a misspelt --config.* override."""
    inner = error.args[0] if error.args else error
    lines = str(inner.args[0] if isinstance(inner, KeyError) else inner).splitlines()
    key = lines[0].strip("'\"") if lines else "?"
    flag = next((arg for arg in argv if arg.startswith("--config.") and f".{key}" in arg), key)
    hint = " ".join(lines[1:])
    return f"{flag}: the config has no key {key!r}." + (f" {hint}" if hint else "")


def _flag_error(error: flags.Error) -> str:
    """absl's flag error; a config file that raised is named with its exception's last line."""
    lines = str(error).strip().splitlines()
    if len(lines) > 1 and "Traceback" in str(error):
        flag = lines[0].split(": Error whilst")[0]
        reason = re.sub(r"^[\w.]*(Error|Exception): ", "", lines[-1].strip())
        return f"{flag}: {reason}"
    return one_line(error)


def parse_flags(argv: list[str]) -> list[str]:
    """absl flag parsing, with bad flags and misspelt --config.* keys as one-line errors."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as error:
        _fail(_flag_error(error))
    except AttributeError as error:  # ml_collections: an override names no config key
        _fail(_config_key_error(error, argv))
    except USER_ERRORS as error:  # a config file's get_config refused its argument
        _fail(one_line(error))
    return []


def run(main: Callable[[list[str]], int | None], define_flags: Callable[[], None]) -> None:
    """Defines the command's flags, then absl's app.run(main), with user errors reported as one
    line and exit code 2. Commands define their flags only here, never on import, so that one
    module can import another's functions although both have, say, --out or --split."""
    define_flags()

    def guarded(argv: list[str]) -> int | None:
        if not flags.FLAGS["verbosity"].present:  # the terminal shows bird_jax's own lines
            logging.set_verbosity(logging.WARNING)
        quiet_libraries()
        try:
            return main(argv)
        except USER_ERRORS as error:
            if flags.FLAGS.debug or logging.get_verbosity() >= logging.DEBUG:
                raise
            _fail(one_line(error))

    app.run(guarded, flags_parser=parse_flags)
