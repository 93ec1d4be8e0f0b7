"""What both widgets share: embedding an SVG in HTML, and a display bundle with a headless fallback."""

from __future__ import annotations

import html

from meshlab.diagrams.render import inline_svg


def svg_html(svg: str) -> str:
    """An SVG document as an HTML fragment that scrolls rather than overflows."""
    return f'<div style="max-width:100%;overflow-x:auto">{inline_svg(svg)}</div>'


def error_html(message: str) -> str:
    """A one-line error in red."""
    return f'<span style="color:#cc0000">{html.escape(message)}</span>'


def mimebundle(widget_bundle: dict, text: str, svg: str | None) -> dict:
    """The widget's own bundle plus SVG and text, for static notebooks, nbval and no widget manager."""
    bundle = dict(widget_bundle or {})
    bundle["text/plain"] = text
    if svg:
        bundle["image/svg+xml"] = svg
    return bundle
