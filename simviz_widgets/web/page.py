"""The standalone page of an explanation, and its notebook display.

:func:`standalone_html` writes one self-contained HTML5 page: the payload (js/README.md, binary fields
as base64) as JSON in a ``<script type="application/json">`` element and the js/ bundle inlined in a
``<script type="module">`` that mounts the pair viewer (``mountPairView`` of js/pair_view.js) on it.
Nothing is fetched: no external URL, and a Content-Security-Policy that allows no network access.

:func:`iframe_html` is the rich display in a notebook: the page in an ``<iframe srcdoc>``, and a
PNG of the resting view that shows only where the iframe does not. A running notebook and nbconvert
HTML show the live viewer; JupyterLab's sanitiser drops iframes from untrusted outputs (a reopened
notebook) but keeps ``data:`` images, so there the PNG shows. :func:`page_size` is the page's size in
CSS pixels, for that iframe.

>>> page = standalone_html({"format": 1, "sides": {}}, title="a </script> title")
>>> "</script> title" in page, page.count("</script>")
(False, 2)
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Mapping

from ..checks import InputError, InputTypeError, SimvizError, check_instance, check_shape2, check_str
from .assets import bundle

__all__ = ["standalone_html", "page_size", "iframe_html", "PAYLOAD_ELEMENT_ID", "ROOT_ELEMENT_ID"]

PAYLOAD_ELEMENT_ID = "simviz-payload"
ROOT_ELEMENT_ID = "simviz-root"

# The layout of js/pair_view.js (VIEW_CSS), in CSS px: what page_size adds around the two canvases.
_PADDING = 12  # around everything
_GAP = 16  # between the two images
_MIN_WIDTH = 720  # the controls row and the status line need this much
_ABOVE_CANVASES = 26 + 36 + 20  # title, controls, image captions
_BELOW_CANVASES = 46 + 38 + 36 + 32 + 20 * 6  # status, colour-bar caption, colour bar, pins heading, 6 pins
_SLACK = 8

# Inline scripts and styles only; no request of any kind leaves the page.
_CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data: blob:; "
        "base-uri 'none'; form-action 'none'")

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>html, body {{ margin: 0; background: #fff; color: #1d1d1d; }}
#{root}:empty::before {{ content: "loading the viewer\\2026"; display: block; padding: 12px;
  font: 13px system-ui, sans-serif; color: #666; }}</style>
</head>
<body>
<div id="{root}"></div>
<noscript><p style="font: 13px system-ui, sans-serif; padding: 12px">This viewer needs JavaScript.</p></noscript>
<script type="application/json" id="{payload_id}">{payload}</script>
<script type="module">
{bundle}

// ---- page ----
{{
  const root = document.getElementById("{root}");
  try {{
    mountPairView(root, JSON.parse(document.getElementById("{payload_id}").textContent));
  }} catch (error) {{
    root.textContent = `The viewer could not start: ${{error.message}}`;
    throw error;
  }}
}}
</script>
</body>
</html>
"""

# Inside <script> only "</script" and "<!--" mean anything to the HTML parser.
_SCRIPT_HAZARD = re.compile(r"</script|<!--", re.IGNORECASE)


def _payload_json(payload: Mapping) -> str:
    """The payload as JSON that cannot end (or confuse) its <script> element: ``<``, ``>`` and ``&``
    are written as \\u escapes, which JSON.parse reads back as the same characters."""
    try:
        text = json.dumps(payload, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    except TypeError as err:
        raise InputTypeError(f"payload is not JSON data ({err}); build it with explanation_payload(..., "
                             "binary='base64'), which writes binary fields as base64 text") from None
    except ValueError as err:
        raise InputError(f"payload holds a value JSON cannot carry ({err}); expected finite numbers") from None
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def standalone_html(payload: Mapping, *, title: str) -> str:
    """One self-contained HTML5 page (UTF-8) showing ``payload`` (the ``binary="base64"`` form of
    :func:`simviz_widgets.web.payload.explanation_payload`) in the pair viewer, with live hover.

    The payload goes in as JSON inside ``<script type="application/json" id="simviz-payload">``
    (``<`` escaped, so no string in it can close the element), the js/ bundle inline as a module
    script. Nothing is fetched, so the file works offline, from disk or inside ``srcdoc``.
    """
    check_instance(payload, "payload", Mapping, "dict")
    title = check_str(title, "title", empty=True)
    data = _payload_json(payload)
    script = bundle("pair_view.js")
    if _SCRIPT_HAZARD.search(script):
        raise SimvizError("the js/ bundle contains '</script' or '<!--', which would break the page's inline "
                          "<script>; write it differently in js/ (e.g. '<\\/script')")
    return _PAGE.format(csp=_CSP, title=html.escape(title, quote=True), root=ROOT_ELEMENT_ID,
                        payload_id=PAYLOAD_ELEMENT_ID, payload=data, bundle=script.strip())


def page_size(payload: Mapping) -> tuple[int, int]:
    """(width, height) in CSS pixels that the page of ``payload`` fits in: the two canvases side by
    side plus the fixed-height rows of js/pair_view.js around them (title, controls, status line,
    colour bar, room for every pin). Depends only on the canvas sizes, so it is known before any
    browser lays the page out."""
    check_instance(payload, "payload", Mapping, "dict")
    sides = payload.get("sides")
    if not isinstance(sides, Mapping) or not all(isinstance(sides.get(s), Mapping) for s in ("query", "reference")):
        raise InputError("payload has no sides.query and sides.reference; expected a payload from "
                         "explanation_payload()")
    query = check_shape2(sides["query"].get("canvas"), "payload sides.query.canvas")
    reference = check_shape2(sides["reference"].get("canvas"), "payload sides.reference.canvas")
    width = max(_MIN_WIDTH, 2 * _PADDING + query[1] + _GAP + reference[1])
    height = 2 * _PADDING + _ABOVE_CANVASES + max(query[0], reference[0]) + _BELOW_CANVASES + _SLACK
    return width, height


def iframe_html(page: str, *, fallback_png: bytes, size) -> str:
    """The notebook display of ``page`` (from :func:`standalone_html`): the page in an
    ``<iframe srcdoc sandbox="allow-scripts">`` of ``size`` (width, height), then the PNG
    ``fallback_png`` as a ``data:`` image, hidden by a CSS rule while the iframe is there.
    JupyterLab's sanitiser drops the iframe from untrusted outputs (a reopened notebook) but keeps
    the image, which then shows at its own size (no empty box the size of the page)."""
    page = check_str(page, "page")
    if not isinstance(fallback_png, (bytes, bytearray)) or not bytes(fallback_png[:8]) == b"\x89PNG\r\n\x1a\n":
        raise InputTypeError(f"fallback_png must be the bytes of a PNG image (got {type(fallback_png).__name__})")
    width, height = check_shape2(size, "size")
    image = base64.b64encode(bytes(fallback_png)).decode("ascii")
    return ('<div class="simviz-page">'
            "<style>.simviz-page:has(> iframe) > img { display: none !important; }</style>"
            f'<iframe srcdoc="{html.escape(page, quote=True)}" sandbox="allow-scripts" title="simviz pair viewer" '
            f'style="display:block;width:{width}px;height:{height}px;max-width:100%;border:0;background:#fff">'
            "</iframe>"
            f'<img src="data:image/png;base64,{image}" alt="the explanation at rest (static image)" '
            'style="display:block;max-width:100%">'
            "</div>")
