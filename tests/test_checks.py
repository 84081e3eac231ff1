"""The one module of input checks and the one registry design: known answers for each check,
refusals that name the input, no coercion, no silent overwrite."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import numpy as np
import pytest

from simviz_widgets import checks
from simviz_widgets.checks import (
    InputError,
    InputTypeError,
    Option,
    SimvizError,
    check_bool,
    check_choice,
    check_float,
    check_int,
    check_options,
    check_pixel,
    check_shape2,
    check_str,
)
from simviz_widgets.registry import REGISTRIES, Registry, registry


@pytest.mark.parametrize("value", [True, False, np.bool_(True)])
def test_bool_accepts_true_and_false_only(value):
    assert check_bool(value, "flag") is bool(value)


@pytest.mark.parametrize("value", ["false", "yes", 0, 1, None, 1.0, np.array(True)])
def test_bool_never_coerces(value):
    with pytest.raises(InputTypeError, match=r"flag=.* must be True or False"):
        check_bool(value, "flag")


def test_int_accepts_numpy_integers_and_refuses_bool_and_float():
    assert check_int(np.int64(4), "masks") == 4 and type(check_int(np.int64(4), "masks")) is int
    assert check_int(np.uint8(7), "masks", minimum=1, maximum=7) == 7
    for bad in (True, 4.0, "4", None, np.float32(4)):
        with pytest.raises(InputTypeError, match="masks=.* must be an integer"):
            check_int(bad, "masks")
    with pytest.raises(InputError, match=r"masks=0 must be >= 1"):
        check_int(0, "masks", minimum=1)
    with pytest.raises(InputError, match=r"dpi=5 must be in \[10, 1200\]"):
        check_int(5, "dpi", minimum=10, maximum=1200)


def test_float_bounds_and_non_finite_values():
    assert check_float(np.float32(0.5), "keep", above=0.0, maximum=1.0) == 0.5
    assert check_float(3, "scale") == 3.0
    with pytest.raises(InputError, match=r"keep=0.0 must be in \(0.0, 1.0\]"):
        check_float(0.0, "keep", above=0.0, maximum=1.0)
    for bad in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(InputError, match="must be a finite number"):
            check_float(bad, "mean")
    assert check_float(float("inf"), "limit", finite=False) == float("inf")
    with pytest.raises(InputError, match="finite"):
        check_float(float("nan"), "limit", finite=False)
    with pytest.raises(InputTypeError, match="must be a number"):
        check_float(True, "mean")


def test_choice_is_exact_and_suggests():
    assert check_choice("cosine", "metric", ("cosine", "dot")) == "cosine"
    with pytest.raises(InputError, match=r"metric='cosin' is not one of \['cosine', 'dot'\]; did you mean 'cosine'"):
        check_choice("cosin", "metric", ("cosine", "dot"))
    for bad in ("Cosine", True, np.array(["cosine"]), None):
        with pytest.raises(InputError):
            check_choice(bad, "metric", ("cosine", "dot"))
    assert check_choice(None, "cis", (None, "auto")) is None


def test_pixel_and_shape_checks():
    assert check_pixel(np.int64(3), 2.5, (4, 4)) == (3.0, 2.5)
    assert check_pixel(-0.5, 3.5, (4, 4)) == (-0.5, 3.5)
    with pytest.raises(InputError, match=r"query pixel row 4 is outside the image \(0 .. 3\)"):
        check_pixel(4, 0, (4, 4), "query pixel")
    for bad in ("3", None, True, np.array([1.0])):
        with pytest.raises(SimvizError):
            check_pixel(bad, 0, (4, 4))
    assert check_shape2((np.int32(2), 3), "size") == (2, 3)
    with pytest.raises(InputTypeError):
        check_shape2("ab", "size")
    with pytest.raises(InputError, match=r"size\[1\]=0 must be >= 1"):
        check_shape2((2, 0), "size")
    with pytest.raises(InputError, match="out is empty"):
        check_str("  ", "out")


def test_options_declare_their_types_and_never_modify_the_input():
    declared = {"bias": Option.flag(True, "spread the bias"), "masks": Option.integer(10, "count", minimum=1),
                "fill": Option.custom((0.0,), "fill", lambda v, n: tuple(v))}
    given = {"masks": np.int64(5), "fill": [1.0]}
    config = check_options("rise", declared, given)
    assert config == {"bias": True, "masks": 5, "fill": (1.0,)}
    assert given == {"masks": np.int64(5), "fill": [1.0]} and isinstance(given["fill"], list)
    with pytest.raises(InputTypeError, match=r"rise: option bias='false' must be True or False"):
        check_options("rise", declared, {"bias": "false"})
    with pytest.raises(InputTypeError, match=r"rise got unknown option\(s\) \['biass'\].*did you mean 'bias'"):
        check_options("rise", declared, {"biass": False})


def test_errors_are_the_projects_own_and_the_standard_kinds():
    assert issubclass(InputError, ValueError) and issubclass(InputError, SimvizError)
    assert issubclass(InputTypeError, TypeError) and issubclass(InputTypeError, SimvizError)


# ------------------------------------------------------------------------------------------------
# Registry


class _A:
    pass


class _B:
    pass


def test_registering_a_name_twice_is_an_error_never_an_overwrite():
    reg = Registry("thing")
    reg.register("a", _A, "first")
    reg.register("a", _A, "again")  # the same entry again: a module imported twice
    with pytest.raises(InputError, match=r"thing name 'a' is already registered \(by .*_A\)"):
        reg.register("a", _B)
    assert reg.get("a") is _A and reg.describe() == {"a": "again"}


def test_a_reloaded_module_may_register_its_class_again():
    reg = Registry("thing")
    reg.register("a", _A)
    redefined = type("_A", (), {"__module__": _A.__module__, "__qualname__": _A.__qualname__})
    assert reg.register("a", redefined) is redefined


def test_unknown_and_non_string_names():
    reg = Registry("model")
    reg.register("efficientnet_lite0", _A)
    with pytest.raises(InputError, match=r"model 'efficientnet_lite' is not registered; known models: "
                                         r"\['efficientnet_lite0'\]. Did you mean 'efficientnet_lite0'\?"):
        reg.get("efficientnet_lite")
    with pytest.raises(InputError, match="model name must be a string"):
        reg.get(3)
    with pytest.raises(InputTypeError):
        reg.register(3, _A)
    assert reg.get("nope", None) is None and "nope" not in reg and 3 not in reg


def test_explicit_replacement_and_monkeypatch(monkeypatch):
    reg = Registry("method")
    reg.register("a", _A)
    monkeypatch.setitem(reg, "a", _B)
    monkeypatch.setitem(reg, "b", _B)
    assert reg.get("a") is _B and reg.names() == ["a", "b"]
    monkeypatch.undo()
    assert reg.get("a") is _A and reg.names() == ["a"]
    assert reg.pop("a") is _A and len(reg) == 0 and reg.pop("a", None) is None


def test_the_three_registries_share_the_design_and_are_filled_on_request():
    assert set(REGISTRIES) == {"method", "metric", "model"}
    assert "decomposition" in registry("method") and "deletion" in registry("metric")
    assert "efficientnet_lite0" in registry("model")
    import simviz_widgets as sv
    from simviz_widgets.evaluate import metrics

    assert sv.list_methods() == REGISTRIES["method"].names()
    assert metrics.list_metrics() == REGISTRIES["metric"].names()
    assert sv.list_models() == REGISTRIES["model"].names()
    with pytest.raises(InputError, match="kind='methods' is not one of"):
        registry("methods")


def test_registering_an_existing_model_name_is_refused():
    from simviz_widgets.models.registry import register_model

    with pytest.raises(InputError, match="model name 'tiny_test' is already registered"):
        register_model("tiny_test", "another builder")(lambda: None)


def test_checks_and_registry_sit_at_the_bottom_of_the_package():
    """checks.py imports nothing of the package; registry.py only checks.py (any layer may use them)."""
    root = Path(checks.__file__).parent
    for name, allowed in (("checks", set()), ("registry", {"checks"})):
        tree = ast.parse((root / f"{name}.py").read_text())
        used = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level}
        assert used <= allowed, (name, used)
    importlib.import_module("simviz_widgets.checks")
