"""Reading weight files: ``torch.load(weights_only=True)`` (no pickled code runs) with errors that
name the file and say what it should hold."""

from __future__ import annotations

from typing import Any

import torch

from ..checks import InputError, check_path

__all__ = ["load_weights_file"]


def load_weights_file(path, what: str, expected: str, *, name: str = "path") -> tuple[Any, str]:
    """The object saved in the torch file ``path`` (the argument ``name``) and a label for messages
    (``what`` 'path').

    A missing file is a FileNotFoundError; an empty, truncated or foreign file (or one that would
    run pickled code) is an InputError saying it ``expected`` something else."""
    path = check_path(path, name)
    where = f"{what} {str(path)!r}"
    if not path.is_file():
        raise FileNotFoundError(f"{where} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True), where
    except Exception as err:  # noqa: BLE001 - empty (EOFError), truncated, not a torch file, pickled code
        reason = (str(err).strip().splitlines() or [""])[0][:200]
        raise InputError(f"{where} could not be read ({type(err).__name__}: {reason}); expected {expected}") from None
