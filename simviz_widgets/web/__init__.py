"""The browser side: payloads, JavaScript assets, standalone pages.

Import the modules themselves (``simviz_widgets.web.assets``, ``simviz_widgets.web.payload``); this
package exports nothing, so importing it stays cheap. The JavaScript itself lives in the repository's
top-level js/ folder (js/README.md), shipped in the wheel as the package data of
``simviz_widgets.web.js``.
"""
