"""HTML building blocks of the report: the inline style, tables, embedded figures, numbers."""

from __future__ import annotations

import html

import pandas as pd

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1400px;
color:#222;padding:0 1rem}
h1{margin-bottom:.2rem}h2{border-bottom:2px solid #ddd;padding-bottom:.2rem;margin-top:2.2rem}
table{border-collapse:collapse;font-size:.85rem;margin:.6rem 0}
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
tr.baseline td{background:#eef6ff;font-weight:600}
.note{background:#fff7e0;border-left:4px solid #f0b400;padding:.5rem .8rem;margin:.8rem 0}
.muted{color:#666;font-size:.85rem}img{max-width:100%;margin:.5rem 0}
details{margin:.3rem 0}summary{cursor:pointer}pre{background:#f7f7f7;padding:.5rem;
overflow:auto;font-size:.75rem}
"""
# Marks the body once images have decoded: lets a headless browser confirm the page rendered.
CHECK_SCRIPT = """<script>window.addEventListener('load',function(){var i=document.images,ok=0;
for(var k=0;k<i.length;k++){if(i[k].complete&&i[k].naturalWidth>0)ok++;}
document.body.setAttribute('data-images-ok',ok);
document.body.setAttribute('data-images-total',i.length);
document.body.setAttribute('data-tables',document.getElementsByTagName('table').length);});
</script>"""


def fmt(value) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) >= 1000 or abs(value) < 0.01 else f"{value:.2f}"
    return html.escape(str(value))


def html_table(df: pd.DataFrame, columns: dict[str, str], highlight: str | None = None) -> str:
    if df.empty:
        return "<p class='muted'>no rows</p>"
    head = "".join(f"<th>{html.escape(label)}</th>" for label in columns.values())
    rows = []
    for _, row in df.iterrows():
        cls = " class='baseline'" if highlight and bool(row.get(highlight)) else ""
        cells = "".join(f"<td>{fmt(row.get(col))}</td>" for col in columns)
        rows.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def figure(png: str | None, alt: str) -> str:
    if png is None:
        return f"<p class='muted'>{html.escape(alt)}: no data</p>"
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{png}'>"


def with_interval(value, half, signed: bool = False) -> str:
    if value is None or pd.isna(value):
        return "—"
    text = f"{value:+.2f}" if signed else f"{value:.2f}"
    return (
        f"{text} ± {half:.2f}" if half is not None and pd.notna(half) else f"{text} (no interval)"
    )
