"""What every avatarpose command shares: third-party warnings filtered, bad input as one line.

Imported first by every entry point (avatarpose-train, -fit, -export, -eval, -synth, -prepare) and by
the method registration (``method_configs``, which ``ns-train`` loads as a plugin), so the filters are
the same everywhere and live only here.

* Warnings: torch and nerfstudio 1.1.5 warn about their own deprecations (``torch.cuda.amp.custom_fwd``,
  ``torch.jit.script``, ...) at import and during training; nothing the project can change. They are
  ignored when they come from those libraries' modules; the project's own warnings still show.
  ``AVATARPOSE_VERBOSE=1`` keeps every warning.
* Errors: a bad input (an `InputError`: a missing file, a malformed calibration, frames that do not
  match) is printed alone on stderr, one line, and the command exits with code 2 (argparse's code for
  a bad command line). ``AVATARPOSE_VERBOSE=1`` shows the traceback instead. Any other exception is
  a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

EXIT_BAD_INPUT = 2

# modules whose warnings are the libraries' own business (regexes on the warning's module)
THIRD_PARTY = r"(torch|nerfstudio|tyro|torchmetrics|torchvision|pytorch_msssim|gsplat|viser|lpips|numba|jaxtyping|" \
              r"tensorboard|torch_utils|websockets|pkg_resources|setuptools)(\.|$)"


class InputError(ValueError):
    """Bad input the user can fix; its message names the file and the problem (printed alone)."""


def verbose() -> bool:
    """AVATARPOSE_VERBOSE=1 (or any value but 0 / empty): every warning and full tracebacks."""
    return os.environ.get("AVATARPOSE_VERBOSE", "") not in ("", "0")


def quiet_third_party_warnings() -> None:
    """Ignore the deprecation and usage warnings that torch and nerfstudio raise in their own code."""
    if verbose():
        return
    for category in (FutureWarning, DeprecationWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category, module=THIRD_PARTY)


def _error_hook(kind, value, traceback) -> None:
    """sys.excepthook for processes the project does not start itself (ns-train with the plugin)."""
    if issubclass(kind, InputError) and not verbose():
        print(one_line(value), file=sys.stderr)
        return
    _previous_hook(kind, value, traceback)


def one_line(err: BaseException) -> str:
    """``<program>: <message>``, the message's lines joined."""
    message = " ".join(str(err).split("\n"))
    return f"{Path(sys.argv[0]).name or 'avatarpose'}: {message}"


def run_command(main: Callable[[], object]) -> None:
    """Run an entry point's body: an `InputError` becomes one line on stderr and exit code 2."""
    try:
        main()
    except InputError as err:
        if verbose():
            raise
        sys.stdout.flush()
        print(one_line(err), file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)


_previous_hook = sys.excepthook
quiet_third_party_warnings()
if sys.excepthook is sys.__excepthook__:
    sys.excepthook = _error_hook
