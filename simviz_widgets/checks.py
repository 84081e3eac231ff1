"""Input checks, in one place: every public boundary validates what the user gave with these.

Each check takes the value and the name the user knows it by, returns the value in its canonical
form (a new object where a conversion happens, never the caller's object modified), and otherwise
raises :class:`InputError` (a ``ValueError``) or :class:`InputTypeError` (a ``TypeError``) whose
message names the input and says what was expected. Both derive from :class:`SimvizError`, so a
caller (the CLI, a property test) can tell the project's own refusals from a bug.

Options of methods and metrics declare their type with :class:`Option`; :func:`check_options`
validates them, so a string ``'false'`` can never be read as ``True`` through ``bool()``.

>>> check_int(np.int64(4), "masks")
4
>>> check_bool("false", "bias")
Traceback (most recent call last):
...
simviz_widgets.checks.InputTypeError: bias='false' must be True or False (got str)
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

__all__ = [
    "SimvizError",
    "InputError",
    "InputTypeError",
    "check_bool",
    "check_int",
    "check_float",
    "check_choice",
    "check_str",
    "check_callable",
    "check_instance",
    "check_pixel",
    "check_shape2",
    "Option",
    "check_options",
    "describe_options",
    "check_array",
    "check_mask",
    "check_colormap",
    "check_floats",
    "check_sequence",
    "check_names",
    "check_keys",
    "check_path",
]


class SimvizError(Exception):
    """Base of the errors this package raises on bad input."""


class InputError(SimvizError, ValueError):
    """A value of the right kind but outside what is accepted."""


class InputTypeError(SimvizError, TypeError):
    """A value of the wrong kind."""


def _kind(value: Any) -> str:
    return type(value).__name__


def _label(name: str, value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{name}={text}"


def check_bool(value: Any, name: str) -> bool:
    """``value`` if it is True or False (numpy bools too); anything else, including 'false', 0
    and None, is refused rather than coerced."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise InputTypeError(f"{_label(name, value)} must be True or False (got {_kind(value)})")


def check_int(value: Any, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """A Python int from an int or numpy integer within [minimum, maximum]; bools and floats
    (even 4.0) are refused."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise InputTypeError(f"{_label(name, value)} must be an integer (got {_kind(value)})")
    value = int(value)
    _check_range(value, name, minimum, maximum)
    return value


def check_float(value: Any, name: str, *, minimum: float | None = None, maximum: float | None = None,
                above: float | None = None, finite: bool = True) -> float:
    """A Python float from any real number (ints, numpy scalars) within the bounds: ``minimum`` /
    ``maximum`` inclusive, ``above`` exclusive; NaN and infinities refused unless ``finite=False``
    (NaN is refused always)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise InputTypeError(f"{_label(name, value)} must be a number (got {_kind(value)})")
    value = float(value)
    if math.isnan(value) or (finite and math.isinf(value)):
        raise InputError(f"{_label(name, value)} must be a finite number")
    _check_range(value, name, minimum, maximum, above)
    return value


def _check_range(value, name, minimum, maximum, above=None) -> None:
    low_ok = (minimum is None or value >= minimum) and (above is None or value > above)
    if low_ok and (maximum is None or value <= maximum):
        return
    low = f"({above}" if above is not None else (f"[{minimum}" if minimum is not None else None)
    if low is not None and maximum is not None:
        expected = f"in {low}, {maximum}]"
    elif low is not None:
        expected = f"> {above}" if above is not None else f">= {minimum}"
    else:
        expected = f"<= {maximum}"
    raise InputError(f"{_label(name, value)} must be {expected}")


def check_str(value: Any, name: str, *, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise InputTypeError(f"{_label(name, value)} must be a string (got {_kind(value)})")
    if not empty and not value.strip():
        raise InputError(f"{name} is empty; expected a non-empty string")
    return value


def check_choice(value: Any, name: str, choices) -> Any:
    """``value`` if it is exactly one of ``choices`` (no abbreviations, no case folding)."""
    choices = tuple(choices)
    # Arrays and other unhashable values never match (element-wise == would); bools never stand
    # for 0/1 choices. The matching choice itself is returned (np.str_('a') -> 'a').
    match = [c for c in choices if isinstance(value, Hashable) and not isinstance(value, (bool, np.bool_))
             and type(c) is not bool and c == value and (c is None) == (value is None)]
    known = bool(match)
    if not known:
        import difflib

        close = difflib.get_close_matches(value, [c for c in choices if isinstance(c, str)], n=1) \
            if isinstance(value, str) else []
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise InputError(f"{_label(name, value)} is not one of {list(choices)}{hint}")
    return match[0]


def check_callable(value: Any, name: str, *, optional: bool = False):
    if value is None and optional:
        return None
    if not callable(value):
        raise InputTypeError(f"{_label(name, value)} must be callable (got {_kind(value)})")
    return value


def check_instance(value: Any, name: str, types, expected: str | None = None):
    if not isinstance(value, types):
        names = expected or " or ".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
        article = "an" if names[:1].lower() in "aeiou" else "a"
        raise InputTypeError(f"{name} must be {article} {names} (got {_kind(value)})")
    return value


def check_pixel(row: Any, col: Any, size: tuple[int, int], name: str = "pixel") -> tuple[float, float]:
    """A display pixel (row, col) as floats inside an image of (rows, cols) ``size``, with the
    half-pixel margin that sub-pixel positions need: -0.5 <= row <= rows - 0.5."""
    values = []
    for axis, value, limit in (("row", row, size[0]), ("col", col, size[1])):
        label = f"{name} {axis}"
        value = check_float(value, label)
        if value < -0.5 or value > limit - 0.5:
            raise InputError(f"{label} {value:g} is outside the image (0 .. {limit - 1})")
        values.append(value)
    return values[0], values[1]


def check_shape2(value: Any, name: str, *, minimum: int = 1) -> tuple[int, int]:
    """A (rows, cols) pair of integers >= ``minimum``."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise InputTypeError(f"{_label(name, value)} must be a (rows, cols) pair of integers")
    return (check_int(value[0], f"{name}[0]", minimum=minimum), check_int(value[1], f"{name}[1]", minimum=minimum))


# ------------------------------------------------------------------------------------------
# Declared options


@dataclass(frozen=True)
class Option:
    """One option of a method or metric: its default, what it means, and how it is checked.

    ``check(value, name) -> value`` returns the canonical value or raises; use the constructors
    (:meth:`flag`, :meth:`integer`, :meth:`number`, :meth:`choice`, :meth:`custom`) so every option
    states its type.
    """

    default: Any
    description: str
    check: Callable[[Any, str], Any]
    kind: str = "any"

    @classmethod
    def flag(cls, default: bool, description: str) -> "Option":
        return cls(default, description, check_bool, "bool")

    @classmethod
    def integer(cls, default: int, description: str, *, minimum: int | None = None,
                maximum: int | None = None) -> "Option":
        return cls(default, description,
                   lambda v, n: check_int(v, n, minimum=minimum, maximum=maximum), "int")

    @classmethod
    def number(cls, default: float, description: str, *, minimum: float | None = None,
               maximum: float | None = None, above: float | None = None) -> "Option":
        return cls(default, description,
                   lambda v, n: check_float(v, n, minimum=minimum, maximum=maximum, above=above), "float")

    @classmethod
    def choice(cls, default: Any, description: str, choices) -> "Option":
        choices = tuple(choices)
        return cls(default, description, lambda v, n: check_choice(v, n, choices), "choice")

    @classmethod
    def custom(cls, default: Any, description: str, check: Callable[[Any, str], Any]) -> "Option":
        return cls(default, description, check, "custom")


def check_options(owner: str, declared: dict[str, Option], given: dict[str, Any]) -> dict[str, Any]:
    """Defaults updated with ``given``, every value checked by its declaration; an unknown name is
    refused with the accepted ones listed. ``owner`` names who takes the options ("method 'rise'")."""
    unknown = sorted(set(given) - set(declared))
    if unknown:
        import difflib

        hints = [difflib.get_close_matches(u, list(declared), n=1) for u in unknown]
        hint = "".join(f"; did you mean {h[0]!r}?" for h in hints if h)
        raise InputTypeError(
            f"{owner} got unknown option(s) {unknown}; it accepts {sorted(declared) or 'no options'}{hint}"
        )
    config = {}
    for name, option in declared.items():
        value = given.get(name, option.default)
        if name in given or value is not None:
            try:
                value = option.check(value, name)
            except SimvizError as err:
                raise type(err)(f"{owner}: option {err}") from None
        config[name] = value
    return config


def describe_options(declared: dict[str, Option]) -> dict[str, tuple[Any, str]]:
    """name -> (default, description), for listings (``simviz methods``)."""
    return {name: (option.default, option.description) for name, option in declared.items()}


# ------------------------------------------------------------------------------------------
# Arrays, sequences, mappings, names and paths


def check_array(value: Any, name: str, *, ndim=None, shape=None, dtype=None, kinds: str = "biuf",
                finite: bool = False, empty: bool = False, expected: str | None = None) -> np.ndarray:
    """``value`` as a numpy array (the caller's array itself, never copied or modified).

    ``ndim``: an int or a tuple of accepted ranks; ``shape``: a tuple with None for any length;
    ``dtype``: the one dtype accepted (else any of ``kinds``, numpy kind letters: b bool, i/u int,
    f float); ``finite``: NaN and infinities refused; ``empty``: whether no elements is fine.
    ``expected`` describes the accepted shape in messages ("an (H, W, 3) RGB image"). Something
    that is not an array at all is an :class:`InputTypeError`; an array of the wrong shape, dtype
    or content an :class:`InputError`.
    """
    if value is None or isinstance(value, (str, bytes, dict)):
        raise InputTypeError(f"{_label(name, value)} must be an array (got {_kind(value)})")
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as err:  # ragged nested lists, objects numpy cannot convert
        raise InputTypeError(f"{name} must be an array; numpy cannot convert it ({err})") from None
    if dtype is None and (arr.dtype == object or arr.dtype.kind not in kinds):
        kind_words = {"b": "bool", "i": "integer", "u": "integer", "f": "float"}
        words = list(dict.fromkeys(kind_words.get(k, k) for k in kinds))
        raise InputError(f"{name} has dtype {arr.dtype}; expected {' or '.join(words)} values")
    if dtype is not None and arr.dtype != np.dtype(dtype):
        raise InputError(f"{name} has dtype {arr.dtype}; expected {np.dtype(dtype)}")
    ranks = (ndim,) if isinstance(ndim, int) else ndim
    if shape is not None:
        ranks = (len(shape),)
    wrong_rank = ranks is not None and arr.ndim not in ranks
    if wrong_rank or (shape is not None and any(s is not None and s != a for s, a in zip(shape, arr.shape))):
        if expected is None:
            expected = (f"shape {tuple('*' if s is None else s for s in shape)}" if shape is not None
                        else f"a {'-D or '.join(str(r) for r in ranks)}-D array")
        raise InputError(f"{name} has shape {arr.shape}; expected {expected}")
    if not empty and arr.size == 0:
        raise InputError(f"{name} is empty (shape {arr.shape}); expected at least one element")
    if finite and arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
        raise InputError(f"{name} contains NaN or infinite values; expected finite numbers")
    return arr


def check_mask(value: Any, name: str, shape=None, *, nonempty: bool = False, note: str = "") -> np.ndarray:
    """A binary (rows, cols) mask as a new bool array: bool, or numbers that are all 0 or 1, of
    ``shape`` if given (``note`` is added to that message: where the shape comes from); with
    ``nonempty``, at least one True pixel."""
    arr = check_array(value, name, ndim=2, expected="a 2-D (rows, cols) mask")
    if shape is not None and tuple(arr.shape) != tuple(shape):
        raise InputError(f"{name} is {arr.shape[0]}x{arr.shape[1]} but expected {shape[0]}x{shape[1]}{note}")
    if arr.dtype != bool:
        if not np.all(np.isin(arr, (0, 1))):
            raise InputError(f"{name} has values other than 0 and 1; expected a binary mask")
        arr = arr.astype(bool)
    else:
        arr = arr.copy()
    if nonempty and not arr.any():
        raise InputError(f"{name} is empty (no True pixel); expected a non-empty region")
    return arr


def check_colormap(value: Any, name: str = "cmap", *, optional: bool = False) -> str | None:
    """A matplotlib colormap name (None too when ``optional``); a misspelt name gets a suggestion."""
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise InputTypeError(f"{_label(name, value)} must be a matplotlib colormap name (got {_kind(value)})")
    import matplotlib

    if value not in matplotlib.colormaps:
        import difflib

        close = difflib.get_close_matches(value, sorted(matplotlib.colormaps), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise InputError(
            f"{name} {value!r} is not a matplotlib colormap; expected a name from matplotlib.colormaps "
            f"such as 'inferno', 'viridis' or 'RdBu_r'.{hint}"
        )
    return value


def _items(value: Any, name: str, what: str) -> list:
    from collections.abc import Iterable, Mapping

    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise InputTypeError(f"{_label(name, value)} must be {what} (got {_kind(value)})")
    return list(value)


def check_floats(value: Any, name: str, *, length: int | None = None, minimum: float | None = None,
                 maximum: float | None = None, above: float | None = None) -> tuple[float, ...]:
    """A sequence of ``length`` finite numbers (each within the bounds, as :func:`check_float`),
    as a tuple of floats."""
    what = f"a sequence of {length} numbers" if length is not None else "a sequence of numbers"
    items = _items(value, name, what)
    if length is not None and len(items) != length:
        raise InputTypeError(f"{_label(name, value)} must be {what} (got {len(items)})")
    return tuple(check_float(v, f"{name}[{k}]", minimum=minimum, maximum=maximum, above=above)
                 for k, v in enumerate(items))


def check_sequence(value: Any, name: str, check_item: Callable[[Any, str], Any] | None = None, *,
                   empty: bool = False, unique: bool = False) -> list:
    """A new list of the items of ``value`` (a list, tuple, array...; a string or a dict is refused),
    each checked by ``check_item(item, "name[k]")``; ``empty``: whether no items is fine;
    ``unique``: whether an item may repeat."""
    items = _items(value, name, "a sequence (list or tuple)")
    if not empty and not items:
        raise InputError(f"{name} is empty; expected at least one item")
    if check_item is not None:
        items = [check_item(item, f"{name}[{k}]") for k, item in enumerate(items)]
    if unique:
        seen, repeated = set(), []
        for item in items:
            if item in seen and item not in repeated:
                repeated.append(item)
            seen.add(item)
        if repeated:
            raise InputError(f"{name} repeats {repeated}; give each once")
    return items


def check_names(value: Any, name: str, *, known=None, empty: bool = False) -> list[str]:
    """Distinct non-empty strings (a single string is refused: ``'ab'`` is not ``['a', 'b']``),
    each one of ``known`` if given (an unknown one gets a suggestion)."""
    def item(v, label):
        v = check_str(v, label)
        return v if known is None else check_choice(v, label, known)

    return check_sequence(value, name, item, empty=empty, unique=True)


def check_keys(value: Any, name: str, allowed, *, required=()) -> dict:
    """A new dict of ``value`` (a mapping) whose keys are among ``allowed`` and include ``required``."""
    from collections.abc import Mapping

    if not isinstance(value, Mapping):
        raise InputTypeError(f"{name} must be a dict (got {_kind(value)})")
    allowed = tuple(allowed)
    unknown = [k for k in value if k not in allowed]
    if unknown:
        import difflib

        hints = [difflib.get_close_matches(u, [a for a in allowed if isinstance(a, str)], n=1)
                 for u in unknown if isinstance(u, str)]
        hint = "".join(f"; did you mean {h[0]!r}?" for h in hints if h)
        raise InputError(f"{name} has unknown key(s) {unknown}; expected keys among {list(allowed)}{hint}")
    missing = [k for k in required if k not in value]
    if missing:
        raise InputError(f"{name} lacks key(s) {missing}; it needs {list(required)}")
    return dict(value)


def check_path(value: Any, name: str):
    """A :class:`pathlib.Path` from a str or path-like (an empty string is refused)."""
    import os
    from pathlib import Path

    if not isinstance(value, (str, os.PathLike)):
        raise InputTypeError(f"{_label(name, value)} must be a file path (str or pathlib.Path; got {_kind(value)})")
    if isinstance(value, str) and not value.strip():
        raise InputError(f"{name} is empty; expected a file path")
    return Path(value)
