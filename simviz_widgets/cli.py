"""``simviz`` command line: explain a pair of images to a PNG, and list models, methods and photos.

Examples::

    simviz explain                                  # chelsea vs its mirror, default model
    simviz explain chelsea chelsea:rotation:angle=30 --out rot.png
    simviz explain a.jpg b.jpg --method decomposition --points 4 --reading correspondence
    simviz explain a.jpg b.jpg --model timm:resnet50 --weights my_finetuned.pth
    simviz explain a.jpg b.jpg --model exported_model.pt   # a TorchScript file
    simviz models | simviz methods | simviz photos

An image is a file path or a bundled photo name (``simviz photos``), optionally followed by a view
of it: ``NAME:KIND`` or ``NAME:KIND:KEY=VALUE,...`` (kinds: mirror, crop_scale, rotation,
perspective, color). Method options ``-o KEY=VALUE`` are read by the type the method declares:
flags take true/false (1/0, yes/no), counts integers, numbers floats. Bad input prints one line on
stderr and exits with code 2, found before the computation wherever it can be.
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
import warnings
from pathlib import Path
from typing import Sequence

from .checks import SimvizError, check_colormap, check_float, check_int

__all__ = ["main", "build_parser", "resolve_image", "CliError"]

EXIT_USAGE = 2
DEFAULT_OUT = "simviz_explanation.png"
PAGE_SUFFIXES = ("html", "htm")
FIGURE_ALPHA, PAGE_ALPHA = 0.5, 0.8
DPI_RANGE = (10, 1200)
MAX_FIGURE_SIDE = 20000  # pixels; matplotlib's Agg cannot go beyond 2**16, memory long before
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


class CliError(Exception):
    """A user mistake: reported on stderr, exit code 2, no traceback."""


def _parse_value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # plain words stay strings (e.g. pooling=max)


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside brackets: ``"box=(0,0,9,9),size=(5,5)"`` -> two items."""
    parts, depth, current = [], 0, []
    for char in text:
        depth += char in "([{"
        depth -= char in ")]}"
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def _split_assignments(text: str, label: str) -> list[tuple[str, str]]:
    """``"a=1,b=(2,3)"`` -> [("a", "1"), ("b", "(2,3)")], values as written."""
    out = []
    for item in _split_top_level(text):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CliError(f"{label}: {item!r} is not KEY=VALUE")
        out.append((key.strip(), value.strip()))
    return out


def _parse_assignments(text: str, label: str) -> dict:
    return {key: _parse_value(value) for key, value in _split_assignments(text, label)}


def _option_value(method: str, name: str, option, text: str):
    """The text of ``-o name=text`` as the type ``option`` (a checks.Option) declares."""
    label = f"--option: method {method!r}: {name}={text!r}"
    if option.kind == "bool":
        word = text.lower()
        if word in _TRUE + _FALSE:
            return word in _TRUE
        raise CliError(f"{label} must be true or false (also 1/0, yes/no)")
    if option.kind in ("int", "float"):
        try:
            return int(text, 10) if option.kind == "int" else float(text)
        except ValueError:
            raise CliError(f"{label} must be {'an integer' if option.kind == 'int' else 'a number'}") from None
    if option.kind == "choice":
        return text
    return _parse_value(text)  # custom: a Python literal such as (0.1, 0.2, 0.3), else the text


def _method_options(method: str, declared: dict, texts: list[str]) -> dict:
    """``-o`` texts -> {name: value} parsed by the method's declared option types."""
    options = {}
    for text in texts:
        for name, value in _split_assignments(text, "--option"):
            if name not in declared:
                import difflib

                close = difflib.get_close_matches(name, list(declared), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise CliError(f"--option: method {method!r} has no option {name!r}; it accepts "
                               f"{sorted(declared) or 'no options'}{hint}")
            options[name] = _option_value(method, name, declared[name], value)
    return options


def resolve_image(spec: str, label: str):
    """A path or ``NAME[:KIND[:KEY=VALUE,...]]`` -> (H, W, 3) uint8 RGB array; CliError if neither."""
    from .datasets import VIEW_KINDS, list_photos, load_photo, views

    if os.path.exists(spec):
        from .images import ImageInputError, to_rgb_uint8

        try:
            return to_rgb_uint8(spec, name=label)
        except ImageInputError as err:
            raise CliError(str(err)) from None
    name, _, rest = spec.partition(":")
    if name not in list_photos():
        import difflib

        close = difflib.get_close_matches(name, list_photos(), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        looks_like_path = any(sep in spec for sep in ("/", "\\")) or Path(spec).suffix != ""
        what = f"file {spec!r} does not exist" if looks_like_path else (
            f"{spec!r} is neither an existing file nor a bundled photo"
        )
        raise CliError(f"{label}: {what}.{hint} Bundled photos: {', '.join(list_photos())}")
    image = load_photo(name)
    if not rest:
        return image
    kind, _, params_text = rest.partition(":")
    if kind not in VIEW_KINDS:
        raise CliError(f"{label}: view kind {kind!r} in {spec!r} is not known; expected one of {VIEW_KINDS}")
    params = _parse_assignments(params_text, label)
    try:
        return views(image, kind, **params).image
    except SimvizError as err:  # views checks its parameters with the checks module
        raise CliError(f"{label}: {err}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="simviz", description="Explain why a deep similarity model finds two images alike."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    ex = sub.add_parser("explain", help="explain one image pair and save a figure")
    ex.add_argument("query", nargs="?", metavar="QUERY",
                    help="file path or bundled photo (NAME[:VIEW[:K=V,...]]); default: chelsea")
    ex.add_argument("reference", nargs="?", metavar="REFERENCE",
                    help="file path or bundled photo; default: the query's mirror view")
    ex.add_argument("--model", default="efficientnet_lite0",
                    help="registered model name (see `simviz models`), timm:NAME or torchvision:NAME (an "
                         "architecture; give its weights with --weights), or a TorchScript file")
    ex.add_argument("--weights", default=None, metavar="FILE",
                    help="state dict for --model timm:NAME / torchvision:NAME (torch.save(net.state_dict())); "
                         "without it the architecture has random weights")
    ex.add_argument("--head", default=None, choices=("identity",),
                    help="identity: the pooled features are the embedding (default: the model's own output)")
    ex.add_argument("--method", default="decomposition", help="method name (see `simviz methods`)")
    ex.add_argument("--layer", default=None, help="layer to explain (module name); default: the model's")
    ex.add_argument("--metric", default=None, choices=("cosine", "dot", "euclidean"),
                    help="similarity metric; default: the model's")
    ex.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE",
                    help="method option, repeatable, as the method declares it: flags true/false "
                         "(1/0, yes/no), integers, numbers (e.g. -o bias=false, -o masks=500)")
    ex.add_argument("--out", default=DEFAULT_OUT,
                    help=f"figure file (default: {DEFAULT_OUT}), or a .html page: the interactive viewer, "
                         "self-contained (hover, readings, pins work offline)")
    ex.add_argument("--points", type=int, default=3, help="query points shown in row 2 (default 3)")
    ex.add_argument("--reading", default="contribution", choices=("contribution", "correspondence"),
                    help="point-specific map reading")
    ex.add_argument("--cmap", default=None, help="matplotlib colormap name for the maps")
    ex.add_argument("--alpha", type=float, default=None,
                    help="map opacity over the photos (default 0.5 in a figure, 0.8 peak in a page)")
    ex.add_argument("--dpi", type=int, default=100, help="figure resolution, 10 .. 1200 dots per inch")

    sub.add_parser("models", help="list ready-made models")
    sub.add_parser("methods", help="list explanation methods")
    sub.add_parser("photos", help="list bundled photos")
    return parser


def _check_out(out: str) -> Path:
    """The figure's path, known writable: refused before any computation otherwise."""
    from matplotlib.figure import Figure

    if not out.strip():
        raise CliError(f"--out is empty; expected a .png file name such as {DEFAULT_OUT}")
    path = Path(out)
    if path.is_dir():
        raise CliError(f"--out: {out!r} is a folder; expected a file name such as {DEFAULT_OUT}")
    if not path.parent.exists():
        raise CliError(f"--out: folder {str(path.parent)!r} does not exist")
    if not path.parent.is_dir():
        raise CliError(f"--out: {str(path.parent)!r} is a file, not a folder")
    formats = {*Figure().canvas.get_supported_filetypes(), *PAGE_SUFFIXES}
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in formats:
        raise CliError(f"--out: {out!r} has no known suffix; expected one of "
                       f"{', '.join('.' + f for f in sorted(formats))}")
    existed = path.exists()
    try:  # append mode: an existing file is left as it is; a new one is removed again
        with open(path, "ab"):
            pass
    except OSError as err:
        reason = "permission denied" if isinstance(err, PermissionError) else (err.strerror or str(err))
        raise CliError(f"--out: cannot write {out!r}: {reason}") from None
    if not existed:
        path.unlink(missing_ok=True)
    return path


def _check_figure_args(args) -> None:
    check_int(args.points, "--points", minimum=0)
    if args.alpha is not None:
        check_float(args.alpha, "--alpha", minimum=0.0, maximum=1.0)
    check_int(args.dpi, "--dpi", minimum=DPI_RANGE[0], maximum=DPI_RANGE[1])
    # render.figure: panels of 3.3 x 3.15 inches, 4 wide, or 1 + points wide with the points row.
    width = round(3.3 * max(4, 1 + args.points) * args.dpi)
    height = round(3.15 * (2 if args.points else 1) * args.dpi)
    if max(width, height) > MAX_FIGURE_SIDE:
        raise CliError(f"--dpi {args.dpi} with --points {args.points} gives a figure of up to {width}x{height} "
                       f"px; at most {MAX_FIGURE_SIDE} px a side: lower --dpi or --points")
    if args.cmap is not None:
        check_colormap(args.cmap, "--cmap")


def _methods_module():
    # Importing the package registers its methods; the registry itself lives in explain.base.
    import simviz_widgets.explain  # noqa: F401

    from .explain import base

    return base


def _refuse_missing_model_files(args) -> None:
    """--weights and a --model path must be files: refused before any computation otherwise."""
    if args.weights is not None and not Path(args.weights).is_file():
        raise CliError(f"--weights: file {args.weights!r} does not exist")
    from .models.external import ARCHITECTURE_SOURCES, is_external

    if is_external(args.model) and args.model.partition(":")[0] not in ARCHITECTURE_SOURCES \
            and not Path(args.model).is_file():
        raise CliError(f"--model: file {args.model!r} does not exist; a model is a name from `simviz models`, "
                       "timm:NAME, torchvision:NAME or a TorchScript file")


def _cmd_explain(args) -> int:
    out = _check_out(args.out)
    _check_figure_args(args)
    _refuse_missing_model_files(args)
    base = _methods_module()
    try:
        method = base.get_method(args.method)
    except ValueError as err:
        raise CliError(f"--method: {err}") from None
    options = _method_options(args.method, method.options, args.option)
    try:
        explainer = method(**options)
    except SimvizError as err:
        raise CliError(f"--option: {err}") from None

    if args.query is None:
        from .datasets import default_pair

        query, reference = default_pair()
    elif args.reference is None:
        from .datasets import views

        query = resolve_image(args.query, "query")
        reference = views(query, "mirror").image
    else:
        query = resolve_image(args.query, "query")
        reference = resolve_image(args.reference, "reference")

    from . import models

    load_options = {k: v for k, v in (("layer", args.layer), ("metric", args.metric), ("weights", args.weights),
                                      ("head", args.head)) if v is not None}
    try:
        model = models.load(args.model, **load_options)
    except (ValueError, KeyError, OSError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        flag = "--weights" if str(message).startswith("weights file") else "--model"
        raise CliError(f"{flag}: {message}") from None
    except TypeError as err:  # e.g. --layer for a model whose builder takes no layer
        if "keyword" not in str(err):
            raise
        given = ", ".join(f"--{k}" for k in load_options)
        raise CliError(f"--model: model {args.model!r} does not accept {given} ({err})") from None
    try:
        prepared = {side: model.prepare(image, name=side)
                    for side, image in (("query", query), ("reference", reference))}
    except SimvizError as err:
        raise CliError(str(err)) from None
    # Options that only the image size makes wrong (window=9999) are refused by the method before
    # its first forward pass, as an InputError.
    try:
        explanation = explainer(model, prepared["query"], prepared["reference"])
    except SimvizError as err:
        raise CliError(f"--method {args.method}: {err}") from None

    if out.suffix.lower().lstrip(".") in PAGE_SUFFIXES:
        alpha = PAGE_ALPHA if args.alpha is None else args.alpha
        explanation.to_html(out, cmap=args.cmap, alpha=alpha, reading=args.reading)
        kind = "page"
    else:
        alpha = FIGURE_ALPHA if args.alpha is None else args.alpha
        figure = explanation.to_figure(points=args.points, cmap=args.cmap, alpha=alpha, reading=args.reading)
        figure.savefig(out, dpi=args.dpi, bbox_inches="tight")
        kind = "figure"
    print(f"score: {explanation.score:.6f} ({explanation.metric}, model {args.model}, method {explanation.method})")
    error = explanation.completeness_error
    print("completeness error: " + ("n/a (not a decomposition)" if error is None else f"{error:.3e}"))
    print(f"{kind}: {out.resolve()}")
    return 0


def _cmd_models(args) -> int:
    from . import models
    from .models.external import MODEL_FORMS

    descriptions = models.model_info()
    for name in models.list_models():
        print(f"{name:<24}{descriptions.get(name, '')}".rstrip())
    # Forms, not names: on stderr, so stdout stays one registered name per line.
    print("also accepted by --model:", file=sys.stderr)
    for form, description in MODEL_FORMS.items():
        print(f"  {form:<22}{description}", file=sys.stderr)
    return 0


def _cmd_methods(args) -> int:
    base = _methods_module()
    for name in base.list_methods():
        paper = getattr(base.get_method(name), "paper", "") or ""
        print(f"{name:<24}{paper}".rstrip())
    return 0


def _cmd_photos(args) -> int:
    from .datasets import VIEW_KINDS, list_photos

    for name in list_photos():
        print(name)
    print(f"(views: NAME:KIND with KIND in {', '.join(VIEW_KINDS)}, e.g. chelsea:mirror)", file=sys.stderr)
    return 0


_COMMANDS = {"explain": _cmd_explain, "models": _cmd_models, "methods": _cmd_methods, "photos": _cmd_photos}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``simviz`` console script; returns the exit code."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the network
    parser = build_parser()
    try:
        args = parser.parse_args(None if argv is None else [str(a) for a in argv])
    except SystemExit as stop:  # argparse already printed usage and the error
        return int(stop.code or 0)
    def one_line(message, category, filename, lineno, file=None, line=None):
        print(f"simviz {args.command}: warning: {message}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = one_line
        try:
            return _COMMANDS[args.command](args)
        except (CliError, SimvizError) as err:  # SimvizError: a boundary's refusal of bad input
            print(f"simviz {args.command}: error: {err}", file=sys.stderr)
            return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
