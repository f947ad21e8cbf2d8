"""Managers' policy pages: the list, a page per domain policy (edit, backtest, history), new.

Saving goes through services.policy_update / policy_create (a new version each time);
the backtest only reads. An htmx backtest gets the `backtest` partial of the page. The
suggestions from history (a read of the domain's judged history, the page's slowest part)
load after the page, from policy_suggestions: its `suggestions` partial, or without htmx
a page of their own.
"""

import dataclasses
from typing import cast

from django.contrib import messages
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django.views.decorators.vary import vary_on_headers

from escalations import selectors, services
from escalations.backtest import PER_GROUP, WINDOW_DAYS, backtest, suggestions
from escalations.errors import DomainError
from escalations.models import Policy
from escalations.policy import rules_changes, rules_snapshot
from escalations.suggestions import MIN_JUDGED, Suggestion
from insights.links import backtest_url
from people.roles import manager_required

from .forms_policies import FLOOR_FIELDS, FLOOR_PREFIX, PolicyCreateForm, PolicyEditForm
from .views import HtmxHttpRequest

PAGE = "reviews/policies/detail.html"


def _manager(request: HttpRequest) -> User:
    """The signed-in manager (manager_required lets no one else through)."""
    return cast(User, request.user)


def _describe(change) -> str:
    return f"{change.field.replace('_', ' ')}: {_value(change.old)} → {_value(change.new)}"


def _value(value) -> str:
    if value is None or value == [] or value == {}:
        return "none"
    if isinstance(value, dict):
        return ", ".join(f"{key} ≥ tier {tier}" for key, tier in sorted(value.items()))
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def _prefill(suggestion: Suggestion) -> dict[str, str]:
    """The form fields a suggestion changes, as a backtest link prefills them (a floor
    removed: empty)."""
    settings = {}
    for change in rules_changes(rules_snapshot(suggestion.saved), rules_snapshot(suggestion.rules)):
        if change.field == "reason_floors":
            for reason in sorted(change.old.keys() | change.new.keys()):
                if change.old.get(reason) != change.new.get(reason):
                    settings[FLOOR_PREFIX + reason] = str(change.new.get(reason) or "")
        else:
            settings[change.field] = _value(change.new)
    return settings


def _suggestions(policy: Policy) -> dict:
    found = suggestions(services.rules_of(policy), now=timezone.now())
    return {
        "items": [(one, backtest_url(policy, _prefill(one))) for one in found.items],
        "largest": found.largest,
        "min_judged": MIN_JUDGED,
        "per_group": PER_GROUP,
    }


def _page(
    request, policy: Policy, form, *, status: int = 200, results=None, prefilled=()
) -> TemplateResponse:
    context = {
        "prefilled": prefilled,
        "policy": policy,
        "form": form,
        "results": results,
        "backtested": results is not None or request.resolver_match.url_name == "policy_backtest",
        "window_days": WINDOW_DAYS,
        "versions": [
            (version, [_describe(change) for change in changes])
            for version, changes in selectors.policy_versions(policy)
        ],
    }
    return TemplateResponse(request, PAGE, context, status=status)


@manager_required
@require_GET
def policy_list(request: HttpRequest) -> HttpResponse:
    context = {"policies": selectors.policies_list()}
    return TemplateResponse(request, "reviews/policies/list.html", context)


@manager_required
@require_http_methods(["GET", "POST"])
def policy_detail(request: HttpRequest, domain: str) -> HttpResponse:
    policy = get_object_or_404(Policy, domain=domain)
    if request.method == "GET":
        prefilled = [name for name in request.GET if name in PREFILLABLE]
        if prefilled:
            return _prefilled_page(request, policy, prefilled)
        return _page(request, policy, PolicyEditForm(initial=PolicyEditForm.initial_for(policy)))
    form = PolicyEditForm(request.POST)
    if form.is_valid():
        try:
            policy, changes = services.policy_update(
                policy_id=policy.pk,
                changes=form.settings(),
                user=_manager(request),
                note=form.cleaned_data["note"],
            )
        except DomainError as refusal:
            form.add_refusal(refusal)
        else:
            if changes:
                summary = "; ".join(_describe(change) for change in changes)
                messages.success(request, f"Saved as version {policy.version}: {summary}.")
                return redirect("reviews:policy", domain=policy.domain)
            form.add_error(None, "Nothing changed: edit a setting to save a new version.")
    return _page(request, policy, form, status=422)


@manager_required
@require_GET
@vary_on_headers("HX-Request")
def policy_suggestions(request: HtmxHttpRequest, domain: str) -> HttpResponse:
    """The page's suggestions section, loaded after it (htmx), or a page of its own."""
    policy = get_object_or_404(Policy, domain=domain)
    context = {"policy": policy, "suggestions": _suggestions(policy), "window_days": WINDOW_DAYS}
    template = f"{PAGE}#suggestions" if request.htmx else "reviews/policies/suggestions.html"
    return TemplateResponse(request, template, context)


# Settings a link may prefill (?flag_threshold=0.7&backtest=1): the rules (the reasons'
# floors too), not the managers.
PREFILLABLE = (frozenset(PolicyEditForm.base_fields) | frozenset(FLOOR_FIELDS)) - {"managers", "note"}


def _backtest(policy: Policy, form: PolicyEditForm) -> list:
    """The saved rules, the typed ones, and the typed ones with the calibration switch the
    other way (the page's three columns), in one query."""
    typed = form.rules(domain=policy.domain)
    flipped = dataclasses.replace(typed, tier_by_calibrated=not typed.tier_by_calibrated)
    return backtest(domain=policy.domain, rules=[services.rules_of(policy), typed, flipped], now=timezone.now())


def _prefilled_page(request, policy: Policy, prefilled: list[str]) -> TemplateResponse:
    """The page with the form holding the saved settings, those named in the query
    replaced by the query's values (a drift alert's proposal), and with ?backtest=1 the
    backtest of them run (a backtest only reads). Nothing is saved."""
    data = QueryDict(mutable=True)
    for name, value in PolicyEditForm.initial_for(policy).items():
        if name == "managers":
            data.setlist(name, [str(user.pk) for user in value])
        elif isinstance(value, bool):
            if value:
                data[name] = "on"
        elif isinstance(value, list):  # machine_tiers
            data.setlist(name, [str(item) for item in value])
        elif isinstance(value, dict):  # reason_floors: the form's floor_<reason> fields carry it
            continue
        elif value is not None:
            data[name] = str(value)
    for name in prefilled:
        data[name] = request.GET[name]
    form = PolicyEditForm(data)
    results = None
    if request.GET.get("backtest") and form.is_valid():
        results = _backtest(policy, form)
    return _page(request, policy, form, results=results, prefilled=prefilled)


@manager_required
@require_POST
def policy_backtest(request, domain: str) -> HttpResponse:
    """The typed thresholds against the last days' escalations, beside the saved policy."""
    policy = get_object_or_404(Policy, domain=domain)
    form = PolicyEditForm(request.POST)
    results = None
    if form.is_valid():
        results = _backtest(policy, form)
    if request.htmx:
        context = {
            "policy": policy,
            "form": form,
            "results": results,
            "backtested": True,
            "window_days": WINDOW_DAYS,
        }
        return TemplateResponse(request, f"{PAGE}#backtest", context)
    return _page(request, policy, form, results=results, status=200 if form.is_valid() else 422)


@manager_required
@require_http_methods(["GET", "POST"])
def policy_create(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        form = PolicyCreateForm(initial=PolicyCreateForm.initial_for(Policy()))
        return TemplateResponse(request, "reviews/policies/new.html", {"form": form})
    form = PolicyCreateForm(request.POST)
    if form.is_valid():
        try:
            policy = services.policy_create(
                domain=form.cleaned_data["domain"], user=_manager(request), **form.settings()
            )
        except DomainError as refusal:
            form.add_refusal(refusal)
        else:
            messages.success(request, f"Created the “{policy.domain}” policy (version 1).")
            return redirect("reviews:policy", domain=policy.domain)
    return TemplateResponse(request, "reviews/policies/new.html", {"form": form}, status=422)
