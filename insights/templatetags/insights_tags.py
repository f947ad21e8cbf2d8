from html import escape

from django import template
from django.urls import reverse
from django.utils.safestring import mark_safe

from insights.charts import Table, format_seconds

register = template.Library()

NUMERIC = frozenset({"int", "pct", "rate", "float", "float1", "seconds", "pvalue"})


@register.filter
def cell(value, kind: str) -> str:
    """A table value as the page shows it (the CSV keeps the raw number)."""
    if value is None:
        return "—"
    if kind == "pct":
        return f"{100 * value:.1f}%"
    if kind in ("rate", "float"):
        return f"{value:.3f}"
    if kind == "pvalue":
        return f"{value:.2g}" if value >= 0.0001 else "< 0.0001"
    if kind == "float1":
        return f"{value:.1f}"
    if kind == "seconds":
        return format_seconds(value)
    if kind == "int":
        return f"{value:,}"
    return str(value)


NUM_CLASS = ' class="num"'


def _cells(tag: str, items) -> str:
    """<td>s (or <th>s) of (kind, text) pairs; every text is HTML-escaped here."""
    return "".join(
        f"<{tag}{NUM_CLASS if kind in NUMERIC else ''}>{escape(text)}</{tag.split()[0]}>"
        for kind, text in items
    )


@register.simple_tag
def data_table(table: Table, query: str = ""):
    """A chart's table with its CSV link. A page holds thousands of cells and a template
    loop (or format_html) per cell costs ~100 ms, so the HTML is joined here, with every
    value (agent, reviewer and domain names included) passed through escape()."""
    href = reverse("insights:export", args=[table.key]) + (f"?{query}" if query else "")
    head = _cells('th scope="col"', ((c.kind, c.label) for c in table.columns))
    body = "\n".join(
        "<tr>"
        + _cells("td", ((c.kind, cell(v, c.kind)) for v, c in zip(row, table.columns, strict=True)))
        + "</tr>"
        for row in table.rows
    )
    return mark_safe(  # noqa: S308 - every value in it went through escape() above
        '<div class="table-wrap"><table class="queue insights-data">'
        f'<caption>{escape(table.caption)} <a class="small" href="{escape(href)}" download>'
        "Download CSV</a></caption>"
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
    )
