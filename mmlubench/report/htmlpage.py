"""Building blocks of a self-contained HTML page: inline CSS, escaped tables, embedded images.

Pages made from these fetch nothing: no external stylesheet, script, font or image.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from mmlubench.display import flatten

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       margin: 24px auto; max-width: 1150px; padding: 0 16px; color: #222; background: #fff; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; margin-top: 1.6em; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
p.sub { color: #555; margin-top: 0; }
table { border-collapse: collapse; margin: 8px 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
div.scroll { overflow-x: auto; max-width: 100%; }
table.kv th { font-weight: normal; color: #444; white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
img.chart { max-width: 100%; border: 1px solid #eee; }
.banner { background: #b00020; color: #fff; font-weight: bold; font-size: 1.25em;
          padding: 12px 16px; border-radius: 4px; margin: 12px 0; }
ul.warnings li { color: #8a4b00; margin: 4px 0; }
.note { background: #f6f6f6; border-left: 4px solid #999; padding: 8px 12px; }
body.wide { max-width: none; }
code, pre { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 0.9em; }
"""


def esc(value: Any) -> str:
    """Escape any value for HTML text; None shows as '-'."""
    return "-" if value is None else html.escape(str(value))


def page(title: str, body: str, wide: bool = False) -> str:
    """A whole HTML document with the inline stylesheet; `wide`: as wide as the window (a
    comparison's table is wider than the 1150 px text column)."""
    cls = ' class="wide"' if wide else ""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n"
        f"<body{cls}>\n{body}\n</body>\n</html>\n"
    )


def table(
    header: Sequence[str],
    rows: Sequence[Sequence[Any]],
    css_class: str = "",
    numeric_from: int | None = None,
) -> str:
    """A table with one header row, every cell escaped, in a horizontally scrolling box.
    Columns from index `numeric_from` on are right-aligned and never wrap."""

    def cell(i: int, c: Any) -> str:
        num = numeric_from is not None and i >= numeric_from
        return f'<td class="num">{esc(c)}</td>' if num else f"<td>{esc(c)}</td>"

    cls = f' class="{esc(css_class)}"' if css_class else ""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(cell(i, c) for i, c in enumerate(row)) + "</tr>\n" for row in rows
    )
    return (
        f'<div class="scroll"><table{cls}>\n<thead><tr>{head}</tr></thead>\n'
        f"<tbody>\n{body}</tbody>\n</table></div>\n"
    )


def _shown(value: Any) -> Any:
    return " ".join(str(v) for v in value) if isinstance(value, list | tuple) else value


def kv_table(mapping: Mapping[str, Any]) -> str:
    """Two columns, key and value, nested keys dotted, lists space-separated."""
    rows = "".join(
        f"<tr><th>{esc(k)}</th><td>{esc(_shown(v))}</td></tr>\n"
        for k, v in flatten(mapping).items()
    )
    return f'<table class="kv">\n<tbody>\n{rows}</tbody>\n</table>\n'


def image(png: bytes, alt: str) -> str:
    """A PNG embedded as a base64 data URI."""
    from mmlubench.report.charts import data_uri

    return f'<img class="chart" alt="{esc(alt)}" src="{data_uri(png)}">\n'
