from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse

from escalations import selectors


def queue(request):
    rows, _ = selectors.page(selectors.open_queue(request.user), None, 50)
    return TemplateResponse(request, "reviews/queue.html", {"rows": rows})


def escalation_detail(request, escalation_id):
    escalation = get_object_or_404(selectors.escalations_for_reviewer(request.user), pk=escalation_id)
    return TemplateResponse(request, "reviews/detail.html", {"escalation": escalation})
