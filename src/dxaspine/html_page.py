"""Building blocks of dxaspine's HTML pages: escaping, number formats,
tables, embedded PNG images and the page around them.

Everything returns strings; every text goes through `html.escape`. Images
are embedded as base64 PNG, so a page needs no other file and no network. A
small inline script marks <body> with `data-images="loaded/total"` and any
script or image errors once the page has loaded (the headless browser test
reads them); the page does not need it to display.
"""

from __future__ import annotations

import base64
import html
import math
import re
from typing import Any

from dxaspine import __version__
from dxaspine.report_figures import number

SIMULATED_CAPTION = "simulated cohort"
NUMERIC = re.compile(r"^([-+\[(]?\d|–)")
STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px;
  color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.8em 0 1.2em; }
caption { text-align: left; font-weight: 600; padding: 0.3em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
td.num { text-align: right; }
thead th { background: #f2f2f2; }
.simulated { background: #fff4d6; border: 1px solid #e0b040; padding: 0.6em 0.9em; }
.sim { color: #9a6a00; font-weight: 600; }
.note { color: #555; font-size: 0.92em; }
.cases, .row { display: flex; flex-wrap: wrap; gap: 1em 2em; align-items: flex-start; }
figure { margin: 0; } figcaption { font-size: 0.85em; max-width: 320px; }
img { max-width: 100%; }
""".strip()
LOAD_CHECK = """
(function () {
  var errors = [];
  function mark() {
    var images = Array.prototype.slice.call(document.images);
    var ok = images.filter(function (i) { return i.complete && i.naturalWidth > 0; });
    document.body.setAttribute("data-images", ok.length + "/" + images.length);
    document.body.setAttribute("data-errors", errors.join(" | "));
  }
  window.addEventListener("error", function (event) {
    var target = event.target || {};
    errors.push(event.message || ("failed to load " + (target.tagName || "resource")));
    if (document.body) { mark(); }
  }, true);
  window.addEventListener("load", mark);
})();
""".strip()


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: Any, digits: int = 3) -> str:
    """A number to `digits` decimals; '–' for None, '' and non-finite values."""
    value = number(value)
    return f"{value:.{digits}f}" if math.isfinite(value) else "–"


def mean_sd_text(stats: dict[str, Any] | None, digits: int = 3) -> str:
    """'mean (SD)' of a `mean_sd` dict."""
    if not stats or not math.isfinite(number(stats.get("mean"))):
        return "–"
    return f"{fmt(stats['mean'], digits)} ({fmt(stats['sd'], digits)})"


def ci_text(ci: list | tuple | None, digits: int = 3) -> str:
    if not ci or not all(math.isfinite(number(v)) for v in ci):
        return "–"
    return f"[{fmt(ci[0], digits)}, {fmt(ci[1], digits)}]"


def image(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{esc(alt)}">'


def table(
    caption: str,
    header: list[str],
    rows: list[list[Any]],
    simulated: bool,
    note: str | None = None,
) -> str:
    """An HTML table of plain-text cells (all escaped); the caption says
    'simulated cohort' when `simulated`."""
    mark = f' <span class="sim">[{SIMULATED_CAPTION}]</span>' if simulated else ""
    head = "".join(f"<th>{esc(cell)}</th>" for cell in header)
    body = "".join("<tr>" + "".join(_cell(cell) for cell in row) + "</tr>\n" for row in rows)
    after = f'<p class="note">{esc(note)}</p>' if note else ""
    return (
        f"<table>\n<caption>{esc(caption)}{mark}</caption>\n<thead><tr>{head}</tr></thead>\n"
        f"<tbody>\n{body}</tbody>\n</table>\n{after}"
    )


def _cell(value: Any) -> str:
    """A table cell; numbers (and '–', CIs, 'a to b') right-aligned."""
    text = str(value)
    numeric = NUMERIC.match(text) is not None
    return f'<td class="num">{esc(text)}</td>' if numeric else f"<td>{esc(text)}</td>"


def render_page(title: str, body: str, simulated: str | None, subtitle: str = "") -> str:
    """A whole HTML document around `body` (HTML), with the simulated-cohort
    banner on top when `simulated` (its text) is given."""
    banner = (
        f'<p class="simulated" role="note"><strong>Simulated cohort.</strong> {esc(simulated)}</p>'
        if simulated
        else ""
    )
    sub = f'<p class="note">{esc(subtitle)}</p>' if subtitle else ""
    flag = "true" if simulated else "false"
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{esc(title)}</title>\n<style>\n{STYLE}\n</style>\n</head>\n"
        f'<body data-simulated="{flag}">\n<h1>{esc(title)}</h1>\n{sub}{banner}\n{body}\n'
        f'<p class="note">Written by dxaspine {esc(__version__)}.</p>\n'
        f"<script>\n{LOAD_CHECK}\n</script>\n</body>\n</html>\n"
    )
