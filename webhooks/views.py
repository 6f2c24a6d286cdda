"""Manage → Webhooks: register endpoints (the signing secret is shown once), see every delivery, replay one."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from annotation import permissions
from annotation.services.taxonomy import taxonomy_for
from webhooks import selectors, services
from webhooks.forms import WebhookForm
from webhooks.models import Webhook

ACTION = "manage_webhooks"


def _page(request: HttpRequest, project, form: WebhookForm, created: services.Created | None = None) -> HttpResponse:
    context = {
        "project": project,
        "role": permissions.role_in(request.user, project),
        "tab": "webhooks",
        "taxonomy_version": taxonomy_for(project).version,
        "form": form,
        "webhooks": Webhook.objects.filter(project=project),
        "deliveries": selectors.recent_deliveries(project),
        "created": created,
    }
    return render(request, "webhooks/webhooks.html", context, status=400 if form.errors else 200)


@login_required
@require_http_methods(["GET", "POST"])
def webhooks_page(request: HttpRequest, project_id: int) -> HttpResponse:
    project = permissions.access_project_by_id(request.user, project_id, action=ACTION)
    if request.method == "GET":
        return _page(request, project, WebhookForm())
    form = WebhookForm(request.POST)
    if form.is_valid():
        try:
            created = services.webhook_create(project=project, actor=request.user, **form.cleaned_data)
        except services.WebhookRejected as error:
            form.add_error("url", str(error))
        else:
            # The secret is on this response only: it is not shown again.
            return _page(request, project, WebhookForm(), created=created)
    return _page(request, project, form)


@login_required
@require_POST
def webhook_delete(request: HttpRequest, project_id: int, webhook_id: int) -> HttpResponse:
    project = permissions.access_project_by_id(request.user, project_id, action=ACTION)
    webhook = selectors.webhook_in(project, webhook_id)
    services.webhook_delete(webhook=webhook, actor=request.user)
    messages.success(request, f"Webhook to {webhook.url} deleted; its delivery log went with it.")
    return redirect("webhooks:page", project.pk)


@login_required
@require_POST
def webhook_ping(request: HttpRequest, project_id: int, webhook_id: int) -> HttpResponse:
    project = permissions.access_project_by_id(request.user, project_id, action=ACTION)
    webhook = selectors.webhook_in(project, webhook_id)
    services.webhook_ping(webhook=webhook, actor=request.user)
    messages.success(request, f"A test delivery to {webhook.url} is on its way; it appears in the log below.")
    return redirect("webhooks:page", project.pk)


@login_required
@require_POST
def delivery_replay(request: HttpRequest, project_id: int, delivery_id: int) -> HttpResponse:
    project = permissions.access_project_by_id(request.user, project_id, action=ACTION)
    delivery = selectors.delivery_in(project, delivery_id)
    services.delivery_replay(delivery=delivery, actor=request.user)
    messages.success(request, f"{delivery.event} is sent again to {delivery.webhook.url}.")
    return redirect("webhooks:page", project.pk)
