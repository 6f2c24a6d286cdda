"""Review quality pages for project admins: insights dashboard, adjudication, gold checks, likely label errors.

Every view reaches its project through `permissions.access_project_by_id` with the action it needs, so a
reviewer gets 403, a non-member 404 and an anonymous visitor the login page.
"""

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from annotation import permissions
from annotation.exceptions import DocketError, NotAllowed, ProjectNotFound
from annotation.models import Document, Label, Project
from annotation.selectors import review_labels
from annotation.spreadsheet_cells import csv_writer
from quality import selectors as quality_selectors
from quality import services as quality
from quality.dashboard import dashboard_data

LETTERS = "abcdefgh"


def quality_page(action: str) -> Callable:
    """Login required; the project for `action` is passed to the view; access errors become 404 and 403."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @login_required
        @wraps(view)
        def wrapper(request: HttpRequest, project_id: int, *args, **kwargs) -> HttpResponse:
            try:
                project = permissions.access_project_by_id(request.user, project_id, action=action)
            except ProjectNotFound as error:
                raise Http404(str(error)) from error
            except NotAllowed as error:
                raise PermissionDenied(str(error)) from error
            return view(request, project, *args, **kwargs)

        return wrapper

    return decorate


def _context(request: HttpRequest, project: Project, tab: str, **extra: Any) -> dict[str, Any]:
    return {
        "project": project,
        "role": permissions.role_in(request.user, project),
        "tab": tab,
        "adjudication_count": len(quality_selectors.adjudication_queue(project))
        if tab not in ("adjudication", "dashboard")
        else None,
        **extra,
    }


def _document(project: Project, document_id: int) -> Document:
    document = Document.objects.filter(project=project, pk=document_id).select_related("project").first()
    if document is None:
        raise Http404("No such document in this project.")
    return document


# --- Dashboard ------------------------------------------------------------------------------------------------


@quality_page("view_quality")
def dashboard(request: HttpRequest, project: Project) -> HttpResponse:
    field = request.GET.get("field", "")
    data = dashboard_data(project, metadata_field=field)
    table = request.GET.get("csv")
    if table and data["state"] == "computing":
        messages.info(request, "The figures are still being computed; download the table once the page shows it.")
        return redirect(reverse("quality:dashboard", args=[project.pk]) + (f"?field={field}" if field else ""))
    if table:
        chart = next((c for c in data["charts"] if c["id"] == table), None)
        if chart is None:
            raise Http404("No such table.")
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{project.pk}-{chart["id"]}.csv"'
        writer = csv_writer(response)
        writer.writerow(chart["columns"])
        writer.writerows(chart["rows"])
        return response
    context = _context(request, project, "dashboard", **data)
    context["adjudication_count"] = data["disputed"]
    return render(request, "quality/dashboard.html", context)


@require_POST
@quality_page("manage_gold")
def settings_view(request: HttpRequest, project: Project) -> HttpResponse:
    try:
        quality.quality_settings_update(
            actor=request.user,
            project=project,
            overlap_rate=float(request.POST["overlap_percent"]) / 100,
            overlap_reviewers=int(request.POST["overlap_reviewers"]),
            gold_rate=float(request.POST["gold_percent"]) / 100,
        )
        messages.success(request, "Review quality settings saved.")
    except (KeyError, ValueError) as error:
        messages.error(request, f"Not saved: {error}")
    except ValidationError as error:
        messages.error(request, "Not saved: " + "; ".join(error.messages))
    return redirect("quality:gold", project.pk)


# --- Adjudication ---------------------------------------------------------------------------------------------


@quality_page("adjudicate")
def adjudication_page(request: HttpRequest, project: Project) -> HttpResponse:
    """One disputed document at a time, the reviewers' answers side by side; the keyboard decides."""
    waiting = quality_selectors.adjudication_queue(project)
    wanted = request.GET.get("document")
    unit = None
    if wanted and wanted.isdigit():
        unit = next((u for u in quality_selectors.overlapped_units(project) if u.document_id == int(wanted)), None)
    elif waiting:
        unit = waiting[0]
    labels = review_labels(project)
    context: dict[str, Any] = {"waiting": waiting[:50], "waiting_count": len(waiting), "labels": labels}
    if unit is not None:
        document = _document(project, unit.document_id)
        history = quality_selectors.adjudication_history(document)
        names = {label["key"]: label["name"] for label in labels}
        answers = [
            {
                "letter": LETTERS[i] if i < len(LETTERS) else "",
                "reviewer": reviewer,
                "labels": [{"key": k, "name": names.get(k, k)} for k in keys],
                "keys": " ".join(keys),
            }
            for i, (reviewer, keys) in enumerate(sorted(unit.answers.items()))
        ]
        context.update(document=document, answers=answers, history=history, current=set(history["final"].labels))
    return render(request, "quality/adjudication.html", _context(request, project, "adjudication", **context))


@require_POST
@quality_page("adjudicate")
def adjudication_decide_view(request: HttpRequest, project: Project, document_id: int) -> HttpResponse:
    document = _document(project, document_id)
    try:
        quality.adjudication_decide(
            actor=request.user,
            document=document,
            label_keys=request.POST.getlist("labels"),
            note=request.POST.get("note", ""),
        )
        messages.success(request, f"Decided {document}.")
    except DocketError as error:
        messages.error(request, str(error))
        return redirect(reverse("quality:adjudication", args=[project.pk]) + f"?document={document.pk}")
    return redirect("quality:adjudication", project.pk)


# --- Gold -----------------------------------------------------------------------------------------------------


@quality_page("manage_gold")
def gold_page(request: HttpRequest, project: Project) -> HttpResponse:
    if request.method == "POST":
        ref = request.POST.get("document", "").strip()
        document = Document.objects.filter(project=project, external_id=ref).first()
        if document is None and ref.isdigit():
            document = Document.objects.filter(project=project, pk=int(ref)).first()
        if document is None:
            messages.error(request, f"No document “{ref}” in this project (give its external id or number).")
        else:
            try:
                quality.gold_answer_set(
                    actor=request.user, document=document, label_keys=request.POST.getlist("labels")
                )
                messages.success(request, f"{document} is now a gold document.")
            except DocketError as error:
                messages.error(request, str(error))
        return redirect("quality:gold", project.pk)
    context = {
        "accuracy": quality_selectors.gold_accuracy(project),
        "gold": quality_selectors.gold_documents(project)[:200],
        "labels": review_labels(project),
        "overlap_percent": round(project.overlap_rate * 100, 1),
        "gold_percent": round(project.gold_rate * 100, 1),
    }
    return render(request, "quality/gold.html", _context(request, project, "gold", **context))


@require_POST
@quality_page("manage_gold")
def gold_remove_view(request: HttpRequest, project: Project, document_id: int) -> HttpResponse:
    quality.gold_answer_remove(actor=request.user, document=_document(project, document_id))
    messages.success(request, "Gold answer removed.")
    return redirect("quality:gold", project.pk)


# --- Likely label errors --------------------------------------------------------------------------------------


@quality_page("manage_gold")
def label_errors_page(request: HttpRequest, project: Project) -> HttpResponse:
    from quality.label_errors import likely_label_errors_cached  # the model side, asked only by this page

    report = likely_label_errors_cached(project)
    # Reviewers know labels by name; keys (third_party) are for files and the API. A key no longer in the
    # taxonomy keeps its key, so nothing is hidden.
    names = dict(Label.objects.filter(taxonomy__project=project).values_list("key", "name"))
    rows = [
        {
            **issue,
            "given_names": [names.get(key, key) for key in issue["given"]],
            "suggested_names": [names.get(key, key) for key in issue["suggested"]],
        }
        for issue in report.issues
    ]
    context = _context(request, project, "label-errors", report=report, rows=rows)
    return render(request, "quality/label_errors.html", context)


@require_POST
@quality_page("manage_gold")
def send_back_view(request: HttpRequest, project: Project, document_id: int) -> HttpResponse:
    document = _document(project, document_id)
    try:
        quality.document_send_back(
            actor=request.user, document=document, reason=request.POST.get("reason") or "likely label error"
        )
        messages.success(request, f"{document} went back to the queue for another look.")
    except DocketError as error:
        messages.error(request, str(error))
    return redirect("quality:label-errors", project.pk)
