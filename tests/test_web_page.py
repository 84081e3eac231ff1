"""The standalone page and its notebook display (simviz_widgets/web/page.py): self-contained, the
payload intact, nothing able to break out of its <script> or of the iframe's srcdoc."""

from __future__ import annotations

import base64
import html
import io
import json
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from simviz_widgets.checks import InputError, InputTypeError
from simviz_widgets.explain.base import PairExplanation, PointToPoint
from simviz_widgets.web.page import PAYLOAD_ELEMENT_ID, ROOT_ELEMENT_ID, iframe_html, page_size, standalone_html
from simviz_widgets.web.payload import explanation_payload

HOSTILE = '</script><script>alert("x")</script><!-- & </SCRIPT >'


def tiny_explanation(**changes) -> PairExplanation:
    """The hand-set explanation of simviz_widgets/widgets/hover.py's doctest."""
    g = np.eye(4, dtype=np.float32)
    photo = np.zeros((20, 20, 3), np.uint8)
    fields = dict(method="decomposition", score=4.0, query=photo, reference=photo, query_map=np.ones((2, 2)),
                  reference_map=np.ones((2, 2)), signed=True, point_to_point=PointToPoint(g, g, 1.0, (2, 2), (2, 2)),
                  completeness_error=0.0)
    fields.update(changes)
    return PairExplanation(**fields)


@pytest.fixture(scope="module")
def payload():
    return explanation_payload(tiny_explanation(), size=40, binary="base64")


class Elements(HTMLParser):
    """Every start tag with its attributes, and the text inside each <script>."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.scripts: list[tuple[dict, str]] = []
        self._script: dict | None = None

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if tag == "script":
            self._script = attributes
            self.scripts.append((attributes, ""))

    def handle_endtag(self, tag):
        if tag == "script":
            self._script = None

    def handle_data(self, data):
        if self._script is not None:
            attributes, text = self.scripts[-1]
            self.scripts[-1] = (attributes, text + data)


def parse(text: str) -> Elements:
    parser = Elements()
    parser.feed(text)
    parser.close()
    return parser


def embedded_payload(page: str):
    scripts = [text for attributes, text in parse(page).scripts if attributes.get("id") == PAYLOAD_ELEMENT_ID]
    assert len(scripts) == 1
    return json.loads(scripts[0])


def test_page_is_one_self_contained_html5_document(payload):
    page = standalone_html(payload, title="tiny pair")
    assert page.startswith("<!DOCTYPE html>")
    elements = parse(page)
    tags = [tag for tag, _ in elements.tags]
    assert ("meta", {"charset": "utf-8"}) in elements.tags
    assert "link" not in tags and "iframe" not in tags
    for tag, attributes in elements.tags:
        for name in ("src", "href", "srcset", "action", "data", "poster"):
            value = attributes.get(name) or ""
            assert "http" not in value and "//" not in value, (tag, name, value)
    scripts = elements.scripts
    assert [a.get("type") for a, _ in scripts] == ["application/json", "module"]
    assert not any("src" in a for a, _ in scripts)
    module = scripts[1][1]
    assert "mountPairView(" in module and "function renderHoverLayer" in module
    assert not any(line.lstrip().startswith("import ") for line in module.splitlines())  # one bundled module
    # nothing may be fetched: the policy allows no network source at all
    policy = next(a["content"] for t, a in elements.tags if t == "meta" and a.get("http-equiv"))
    assert "default-src 'none'" in policy and "http" not in policy
    assert "background: #fff" in page  # an opaque page: no notebook theme shows through the iframe
    assert f'id="{ROOT_ELEMENT_ID}"' in page


def test_payload_round_trips_through_the_page(payload):
    assert embedded_payload(standalone_html(payload, title="t")) == payload


def test_strings_cannot_close_the_script(payload):
    hostile = dict(payload, method=HOSTILE, overall=dict(payload["overall"], meaning=HOSTILE))
    page = standalone_html(hostile, title=HOSTILE)
    assert page.lower().count("</script") == 2  # the JSON's own end and the module's, nothing else
    assert "<!--" not in page
    assert embedded_payload(page) == hostile
    assert f"<title>{html.escape(HOSTILE)}</title>" in page


def test_page_refuses_what_json_cannot_carry(payload):
    with pytest.raises(InputTypeError, match="binary='base64'"):
        standalone_html(explanation_payload(tiny_explanation(), size=40, binary="bytes"), title="t")
    with pytest.raises(InputError, match="finite"):
        standalone_html(dict(payload, score=float("nan")), title="t")
    with pytest.raises(InputTypeError, match="payload must be a dict"):
        standalone_html([payload], title="t")
    with pytest.raises(InputTypeError, match="title"):
        standalone_html(payload, title=None)


def test_page_size_fits_the_canvases_and_is_deterministic(payload):
    small = page_size(payload)
    assert small == page_size(payload) and all(isinstance(v, int) for v in small)
    big = page_size(explanation_payload(tiny_explanation(), size=320))
    wide = page_size(explanation_payload(tiny_explanation(), size=480))
    assert big[0] >= 2 * 320 and big[1] > 320 + 200
    assert wide[0] > big[0] and wide[1] - big[1] == 480 - 320  # one row of images grows with them
    assert small[0] == big[0]  # small canvases: the controls set the width
    tall = explanation_payload(tiny_explanation(query=np.zeros((40, 20, 3), np.uint8)), size=100)
    assert page_size(tall)[1] - small[1] == 100 - 40  # the taller image sets the height
    with pytest.raises(InputError, match="sides"):
        page_size({"sides": {}})
    with pytest.raises(InputTypeError, match="canvas"):
        page_size({"sides": {"query": {"canvas": None}, "reference": {"canvas": [1, 1]}}})


def png_bytes(size=(4, 6)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((*size, 3), 200, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_iframe_shows_the_page_and_the_png_only_without_it(payload):
    page = standalone_html(dict(payload, method=HOSTILE), title=HOSTILE)
    png = png_bytes()
    text = iframe_html(page, fallback_png=png, size=(700, 650))
    elements = parse(text)
    assert [tag for tag, _ in elements.tags] == ["div", "style", "iframe", "img"]
    (_, box), _, (_, frame), (_, image) = elements.tags
    # the PNG is hidden while the iframe exists (a sanitiser that drops the iframe leaves the PNG)
    assert ".simviz-page:has(> iframe) > img { display: none !important; }" in text and box["class"] == "simviz-page"
    assert base64.b64decode(image["src"].removeprefix("data:image/png;base64,")) == png
    assert frame["sandbox"] == "allow-scripts"
    assert frame["srcdoc"] == page  # html.escape(quote=True) undone by the parser: the page intact
    for part in ("width:700px", "height:650px", "border:0", "background:#fff"):
        assert part in frame["style"]
    raw = text[text.index("srcdoc=") + len('srcdoc="'):text.index('" sandbox=')]
    assert '"' not in raw and "<" not in raw and ">" not in raw  # nothing in the attribute ends it
    assert embedded_payload(frame["srcdoc"])["method"] == HOSTILE


def test_iframe_refuses_bad_input(payload):
    page = standalone_html(payload, title="t")
    with pytest.raises(InputTypeError, match="PNG"):
        iframe_html(page, fallback_png=b"GIF89a", size=(10, 10))
    with pytest.raises(InputError, match=r"size\[0\]"):
        iframe_html(page, fallback_png=png_bytes(), size=(0, 10))
    with pytest.raises(InputTypeError, match="size"):
        iframe_html(page, fallback_png=png_bytes(), size=700)
    with pytest.raises(InputError, match="page is empty"):
        iframe_html("", fallback_png=png_bytes(), size=(10, 10))
