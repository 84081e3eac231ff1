"""The adapters' error: a model that cannot be seen as feature map -> pooling -> head as configured.

:class:`ModelAdapterError` is an :class:`~simviz_widgets.checks.InputError` (so a ``ValueError`` and a
``SimvizError``); a value of the wrong kind given to :meth:`SimilarityModel.wrap` raises
:class:`ModelAdapterTypeError`, which is both a ModelAdapterError and an ``InputTypeError``
(a ``TypeError``): callers catching either keep working.
"""

from __future__ import annotations

from typing import Any, Callable

from ..checks import InputError, InputTypeError

__all__ = ["ModelAdapterError", "ModelAdapterTypeError", "OutputMismatchError", "adapter_check"]


class ModelAdapterError(InputError):
    """The model cannot be seen as feature map -> pooling -> head as configured."""


class OutputMismatchError(ModelAdapterError):
    """Feature map -> pooling -> head does not reproduce the network's own output."""


class ModelAdapterTypeError(ModelAdapterError, InputTypeError):
    """A value of the wrong kind given to the adapter (a TypeError too)."""


def adapter_check(check: Callable[..., Any], value: Any, name: str, *args, **kwargs) -> Any:
    """``check(value, name, ...)`` from :mod:`simviz_widgets.checks`, its refusal raised as the
    adapters' error of the same kind (the message unchanged)."""
    try:
        return check(value, name, *args, **kwargs)
    except InputTypeError as err:
        raise ModelAdapterTypeError(str(err)) from None
    except InputError as err:
        raise ModelAdapterError(str(err)) from None
