"""The managers' insights page and the CSV export of each of its tables."""

import csv
from typing import cast

from csp.constants import UNSAFE_INLINE
from csp.decorators import csp_update
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.template.response import TemplateResponse
from django.utils import timezone
from django.views.decorators.http import require_GET
from django_htmx.middleware import HtmxDetails

from people.roles import manager_required

from . import charts, links, selectors, stats
from .forms import DEFAULT_WEEKS, InsightsFilterForm, with_default_range

PAGE = "insights/page.html"


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def _form(request: HttpRequest) -> InsightsFilterForm:
    today = timezone.now().date()
    return InsightsFilterForm(with_default_range(request.GET, today), today=today)


# plotly.js writes its stylesheet into <style> elements at run time: on this page alone, the
# Content-Security-Policy lets styles be inline (scripts stay 'self' only, as everywhere).
@csp_update({"style-src": [UNSAFE_INLINE]})
@manager_required
@require_GET
def insights_page(request: HtmxHttpRequest) -> HttpResponse:
    form = _form(request)
    filters = form.filters()
    now = timezone.now()
    drift = selectors.drift_report(now=now)
    agent = form.cleaned_data.get("agent") if form.is_valid() else None
    context = {
        "form": form,
        "filters": filters,
        "charts": charts.all_charts(filters),
        "drift": drift,
        "drift_table": charts.drift_table(drift),
        "drift_links": links.drift_links(drift),
        "drift_queue": links.QueueLinks(
            selectors.Filters(drift.week_start, drift.today), drift.today
        ),
        "links": links.QueueLinks(filters, drift.today, agent.name if agent else ""),
        "default_weeks": DEFAULT_WEEKS,
        "rule": stats,
        "query": cast(QueryDict, form.data).urlencode() if form.is_valid() else "",
    }
    template = f"{PAGE}#insights-body" if request.htmx else PAGE
    return TemplateResponse(request, template, context)


@manager_required
@require_GET
def export_csv(request: HttpRequest, key: str) -> HttpResponse:
    filters = _form(request).filters()
    table: charts.Table | None
    if key == charts.DRIFT_TABLE:
        table = charts.drift_table(selectors.drift_report(now=timezone.now()))
    else:
        table = charts.table_by_key(filters, key)
    if table is None:
        raise Http404(f"No table named {key!r}.")
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    name = f"{key}_{filters.start.isoformat()}_{filters.end.isoformat()}.csv"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    writer = csv.writer(response)
    writer.writerow([column.key for column in table.columns])
    writer.writerows(["" if value is None else value for value in row] for row in table.rows)
    return response
