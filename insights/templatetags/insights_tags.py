from html import escape

from django import template
from django.urls import reverse
from django.utils.safestring import mark_safe

from insights.charts import Table, format_seconds
from insights.links import QueueLinks

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


def _linked(text: str, href: str | None) -> str:
    """The HTML of a cell's text (escaped), as a link when it leads somewhere."""
    return f'<a href="{escape(href)}">{escape(text)}</a>' if href else escape(text)


def _row(table: Table, row: list, links: QueueLinks | None) -> str:
    hrefs = links.row([c.key for c in table.columns], row) if links else {}
    return "".join(
        f"<td{NUM_CLASS if c.kind in NUMERIC else ''}>{_linked(cell(v, c.kind), hrefs.get(c.key))}</td>"
        for v, c in zip(row, table.columns, strict=True)
    )


@register.simple_tag
def data_table(table: Table, query: str = "", links: QueueLinks | None = None):
    """A chart's table with its CSV link. A page holds thousands of cells and a template
    loop (or format_html) per cell costs ~100 ms, so the HTML is joined here, with every
    value (agent, reviewer and domain names included) passed through escape(). With
    `links`, agents, domains and reasons lead to the queue filtered to them (the CSV
    keeps the plain values)."""
    href = reverse("insights:export", args=[table.key]) + (f"?{query}" if query else "")
    head = "".join(
        f'<th scope="col"{NUM_CLASS if c.kind in NUMERIC else ""}>'
        f"{_linked(c.label, links.header(c.key) if links else None)}</th>"
        for c in table.columns
    )
    body = "\n".join(f"<tr>{_row(table, row, links)}</tr>" for row in table.rows)
    return mark_safe(  # noqa: S308 - every value in it went through escape() above
        '<div class="table-wrap"><table class="queue insights-data">'
        f'<caption>{escape(table.caption)} <a class="small" href="{escape(href)}" download>'
        "Download CSV</a></caption>"
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
    )
