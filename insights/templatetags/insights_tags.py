from django import template

from insights.charts import format_seconds

register = template.Library()


@register.filter
def cell(value, kind: str) -> str:
    """A table value as the page shows it (the CSV keeps the raw number)."""
    if value is None:
        return "—"
    if kind == "pct":
        return f"{100 * value:.1f}%"
    if kind == "rate":
        return f"{value:.3f}"
    if kind == "float":
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
