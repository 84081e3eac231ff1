"""Reading weight files: ``torch.load(weights_only=True)`` (no pickled code runs) with errors that
name the file and say what it should hold."""

from __future__ import annotations

from typing import Any

import torch

from ..checks import InputError, check_path

__all__ = ["load_weights_file", "is_torchscript_file", "unwrap_state_dict", "strip_prefixes", "state_dict_mismatch",
           "load_state_dict_checked"]


def load_weights_file(path, what: str, expected: str, *, name: str = "path") -> tuple[Any, str]:
    """The object saved in the torch file ``path`` (the argument ``name``) and a label for messages
    (``what`` 'path').

    A missing file is a FileNotFoundError; an empty, truncated or foreign file (or one that would
    run pickled code) is an InputError saying it ``expected`` something else."""
    path = check_path(path, name)
    where = f"{what} {str(path)!r}"
    if not path.is_file():
        raise FileNotFoundError(f"{where} does not exist")
    if is_torchscript_file(path):
        raise InputError(f"{where} is a TorchScript model (torch.jit.save), not {expected}; give it as the "
                         "model itself (models.load(path), simviz explain --model PATH)")
    if path.suffix.lower() == ".safetensors":  # Hugging Face's format (timm's hub weights): tensors only
        return _load_safetensors(path, where, expected), where
    try:
        return torch.load(path, map_location="cpu", weights_only=True), where
    except Exception as err:  # noqa: BLE001 - empty (EOFError), truncated, not a torch file, pickled code
        text = str(err)
        if "Unsupported global" in text or "GLOBAL" in text:
            raise InputError(f"{where} holds pickled Python objects (such as a whole model saved with "
                             "torch.save(net)), which would run code when loaded; expected "
                             f"{expected}: save net.state_dict() instead") from None
        reason = (text.strip().splitlines() or [""])[0][:200]
        raise InputError(f"{where} could not be read ({type(err).__name__}: {reason}); expected {expected}") from None


def _load_safetensors(path, where: str, expected: str) -> dict:
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise InputError(f"{where} is a .safetensors file: install the safetensors package to read it") from None
    try:
        return load_file(str(path), device="cpu")
    except Exception as err:  # noqa: BLE001 - a damaged or foreign file
        reason = (str(err).strip().splitlines() or [""])[0][:200]
        raise InputError(f"{where} could not be read ({type(err).__name__}: {reason}); expected {expected}") from None


def is_torchscript_file(path) -> bool:
    """Whether ``path`` is a TorchScript archive (torch.jit.save: a zip with ``constants.pkl`` and
    ``code/``); a torch.save file is a zip with ``data.pkl`` instead."""
    import zipfile

    try:
        if not zipfile.is_zipfile(path):
            return False
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return False
    return any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)


# -- state dicts: checkpoint wrappers, prefixes, and mismatches named with their nearest keys ------

CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model", "net", "state_dict_ema", "model_ema")
MAX_LISTED = 5  # names shown per kind of mismatch; the rest are counted


def _is_state_dict(obj) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def unwrap_state_dict(obj, where: str) -> tuple[dict, list[str]]:
    """The state dict inside ``obj`` (name -> tensor): ``obj`` itself, or the entry of a training
    checkpoint (``{'state_dict': ..., 'epoch': ...}``; keys tried: CHECKPOINT_KEYS). Returns a new
    dict (``obj`` is left as it is) and notes saying what was done."""
    if _is_state_dict(obj):
        return dict(obj), []
    if isinstance(obj, dict):
        for key in CHECKPOINT_KEYS:
            if _is_state_dict(obj.get(key)):
                return dict(obj[key]), [f"took the checkpoint's {key!r} entry"]
        keys = [repr(k) for k in list(obj)[:8]]
        raise InputError(f"{where} holds a dict with keys {', '.join(keys)}{' ...' if len(obj) > 8 else ''}, "
                         f"not a state dict (name -> tensor) nor a checkpoint with one of {list(CHECKPOINT_KEYS)}")
    raise InputError(f"{where} holds a {type(obj).__name__}; expected a state dict saved with "
                     "torch.save(net.state_dict(), path)")


def strip_prefixes(state: dict, expected: set[str]) -> tuple[dict, list[str]]:
    """Remove a first name component every key shares (``module.`` from DataParallel /
    DistributedDataParallel, ``_orig_mod.`` from torch.compile, ``model.`` from training wrappers)
    while that makes more keys match ``expected``."""
    notes = []
    while True:
        heads = {k.split(".", 1)[0] for k in state}
        if len(heads) != 1 or not all("." in k for k in state):
            return state, notes
        head = heads.pop()
        stripped = {k.split(".", 1)[1]: v for k, v in state.items()}
        if len(expected & set(stripped)) <= len(expected & set(state)):
            return state, notes
        notes.append(f"removed the prefix {head + '.'!r} from every key")
        state = stripped


def _nearest(name: str, unmatched: list[str], everything: list[str]) -> str:
    """The closest name on the other side: an unmatched one (a rename) if one is close, else the
    name sharing the most leading components (the same module), then the most similar text."""
    import difflib

    def score(other: str) -> tuple[int, float]:
        shared = 0
        for a, b in zip(name.split("."), other.split(".")):
            if a != b:
                break
            shared += 1
        return shared, difflib.SequenceMatcher(None, name, other).ratio()

    renamed = difflib.get_close_matches(name, unmatched, n=1, cutoff=0.75)
    if renamed:
        return repr(renamed[0])
    best = max(everything, key=score, default=None)
    return repr(best) if best is not None and score(best)[1] >= 0.5 else "none close"


def _listed(items: list[str], describe=repr) -> str:
    """The first MAX_LISTED items described (only those: nearest names cost a comparison each),
    and a count of the rest."""
    more = len(items) - MAX_LISTED
    return ", ".join(describe(k) for k in items[:MAX_LISTED]) + (f", and {more} more" if more > 0 else "")


def state_dict_mismatch(module: torch.nn.Module, state: dict) -> str | None:
    """One line naming what keeps ``state`` from loading into ``module``: missing keys (each with
    the nearest key of the file), unexpected keys (each with the nearest key of the model), and
    shapes that disagree (both shapes); None when it fits. BatchNorm's ``num_batches_tracked``
    may be missing (older checkpoints): torch fills it in."""
    own = module.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if not (missing or unexpected or shapes):
        return None
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s): " + _listed(
            missing, lambda k: f"{k!r} (nearest in the file: {_nearest(k, unexpected, list(state))})"))
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s): " + _listed(
            unexpected, lambda k: f"{k!r} (nearest in the model: {_nearest(k, missing, list(own))})"))
    if shapes:
        parts.append(f"{len(shapes)} shape mismatch(es): " + _listed(
            shapes, lambda k: f"{k!r} file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"))
    return "; ".join(parts)


def load_state_dict_checked(module: torch.nn.Module, state: dict, where: str, target: str) -> None:
    """Load ``state`` into ``module`` (strict), or raise an InputError that names every kind of
    mismatch (see :func:`state_dict_mismatch`) and values that are NaN or infinite."""
    problem = state_dict_mismatch(module, state)
    if problem is not None:
        raise InputError(f"{where} does not fit {target}: {problem}")
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise InputError(f"{where}: {_listed(bad)} hold NaN or infinite values")
    module.load_state_dict(state, strict=True)
