"""Server-rendered pages for reviewers and project admins, and the JSON calls the labeling page makes."""

from collections.abc import Callable
from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from annotation import permissions, selectors
from annotation.exceptions import DocketError, LabelsChanged, NotAllowed, NotServed, ProjectNotFound
from annotation.forms import (
    FlagForm,
    FlagResolveForm,
    MyWorkSearchForm,
    NextDocumentForm,
    SubmissionForm,
    first_error,
)
from annotation.services import legal_review
from annotation.services.labeling import annotation_submit, serve_ticket_issue, serve_ticket_read
from annotation.services.queue import document_flag, document_skip, next_document_for
from annotation.untrusted import json_read

# --- Pages ---------------------------------------------------------------------------------------------------


@login_required
def my_projects(request: HttpRequest) -> HttpResponse:
    projects = list(permissions.projects_for(request.user).order_by("name"))
    progress = selectors.projects_progress(projects)
    rows = [{"project": p, "progress": progress[p.pk]} for p in projects]
    return render(request, "annotation/my_projects.html", {"rows": rows})


@login_required
def project_detail(request: HttpRequest, project_id: int) -> HttpResponse:
    project = permissions.access_project_by_id(request.user, project_id)
    return render(
        request,
        "annotation/project_detail.html",
        {
            "project": project,
            "progress": selectors.project_progress(project),
            "mine": selectors.reviewer_counts(project, request.user),
            "model": selectors.current_model(project),
            "role": permissions.role_in(request.user, project),
        },
    )


@login_required
def labeling_page(request: HttpRequest, project_id: int) -> HttpResponse:
    """The keyboard-first labeling screen. It fetches documents itself through the JSON calls below.

    `?document=<id>` opens one of the reviewer's earlier documents to change its labels (from "My work").
    """
    project = permissions.access_project_by_id(request.user, project_id, action="label")
    edit_document = None
    if request.GET.get("document", "").isdigit():
        edit_document = permissions.access_document_by_id(
            request.user, project.pk, int(request.GET["document"]), action="label"
        )
    labels = selectors.review_labels(project)
    progress = selectors.project_progress(project)
    bootstrap = {
        "project": {"id": project.pk, "name": project.name, "multiLabel": project.multi_label},
        "labels": labels,
        "recent": selectors.recent_annotated_document_ids(project, request.user),
        "editDocument": edit_document.pk if edit_document else None,
        "returnUrl": reverse("annotation:my-work", args=[project.pk]) if edit_document else "",
        "savedUrl": (
            f"{reverse('annotation:my-work', args=[project.pk])}?saved={edit_document.pk}" if edit_document else ""
        ),
        "urls": {
            "next": reverse("annotation:queue-next", args=[project.pk]),
            "model": reverse("annotation:labeling-model", args=[project.pk]),
            "document": reverse("annotation:document", args=[project.pk, 0]),
            "annotate": reverse("annotation:document-annotate", args=[project.pk, 0]),
            "skip": reverse("annotation:document-skip", args=[project.pk, 0]),
            "flag": reverse("annotation:document-flag", args=[project.pk, 0]),
        },
        "model": selectors.current_model(project),
    }
    return render(
        request,
        "annotation/label.html",
        {
            "project": project,
            "progress": progress,
            "mine": selectors.reviewer_counts(project, request.user),
            "groups": selectors.label_groups(labels),
            "labels": labels,
            "conflicts": [label for label in labels if label["shortcut_conflict"]],
            "bootstrap": bootstrap,
            "edit_document": edit_document,
            "role": permissions.role_in(request.user, project),
        },
    )


@login_required
def my_work(request: HttpRequest, project_id: int) -> HttpResponse:
    """The reviewer's own annotations in the project, searchable, each one a link to change it."""
    project = permissions.access_project_by_id(request.user, project_id, action="label")
    form = MyWorkSearchForm(request.GET or None)
    query = form.cleaned_data["q"] if form.is_valid() else ""
    page = Paginator(selectors.my_annotations(project, request.user, query=query), 25).get_page(request.GET.get("page"))
    keys = selectors.annotation_label_keys(a.pk for a in page.object_list)
    names = {label["key"]: label["name"] for label in selectors.review_labels(project)}
    saved = None
    if request.GET.get("saved", "").isdigit():
        # Back from changing an answer: say so, for the reviewer's own document only.
        saved = selectors.my_annotations(project, request.user).filter(document_id=int(request.GET["saved"])).first()
    rows = [
        {
            "annotation": a,
            "labels": [{"key": k, "name": names.get(k, k), "retired": k not in names} for k in keys.get(a.pk, [])],
        }
        for a in page.object_list
    ]
    return render(
        request,
        "annotation/my_work.html",
        {
            "project": project,
            "form": form,
            "query": query,
            "page": page,
            "rows": rows,
            "role": permissions.role_in(request.user, project),
            "saved": saved,
            "saved_changed": request.GET.get("changed") != "0",
        },
    )


@login_required
def legal_review_page(request: HttpRequest, project_id: int) -> HttpResponse:
    """Flagged documents with who flagged them, when and why; a lead or an admin resolves each with a note."""
    project = permissions.access_project_by_id(request.user, project_id, action="resolve_flags")
    return _legal_review(request, project)


def _legal_review(request: HttpRequest, project, bound: tuple[int, FlagResolveForm] | None = None) -> HttpResponse:
    state = "resolved" if request.GET.get("state") == "resolved" else "open"
    flags = list(legal_review.flags_for(project, state=state)[:200])
    earlier = legal_review.earlier_flags(flags)
    rows = [
        {
            "flag": flag,
            "earlier": earlier.get(flag.pk, []),
            "form": bound[1] if bound and bound[0] == flag.pk else FlagResolveForm(auto_id=f"flag-{flag.pk}-%s"),
        }
        for flag in flags
    ]
    context = {
        "project": project,
        "role": permissions.role_in(request.user, project),
        "state": state,
        "rows": rows,
        "open_count": legal_review.flags_for(project, state="open").count(),
    }
    return render(request, "annotation/legal_review.html", context, status=400 if bound else 200)


@login_required
@require_POST
def flag_resolve_view(request: HttpRequest, project_id: int, flag_id: int) -> HttpResponse:
    project = permissions.access_project_by_id(request.user, project_id, action="resolve_flags")
    flag = legal_review.flag_for(project, flag_id)
    form = FlagResolveForm(request.POST, auto_id=f"flag-{flag.pk}-%s")
    if not form.is_valid():
        return _legal_review(request, project, bound=(flag.pk, form))
    try:
        flag = legal_review.flag_resolve(
            actor=request.user, flag=flag, decision=form.cleaned_data["decision"], note=form.cleaned_data["note"]
        )
    except (legal_review.ResolutionInvalid, DocketError) as error:
        form.add_error(None, str(error))
        return _legal_review(request, project, bound=(flag.pk, form))
    title = str(flag.document)
    if flag.decision == flag.Decision.REQUEUE:
        messages.success(request, f"Resolved: {title} is back in the review queue.")
    else:
        messages.success(request, f"Resolved: {title} is closed and stays out of labeling.")
    return redirect("annotation:legal-review", project.pk)


# --- JSON calls of the labeling page -------------------------------------------------------------------------


class BadRequest(Exception):
    """The body of a JSON call could not be read."""


def json_call(view: Callable[..., dict]) -> Callable[..., JsonResponse]:
    """A session-authenticated, CSRF-protected JSON call: the view returns a dict, errors become messages.

    Access errors keep their page statuses (404 for another project's document, 403 for a role that may not);
    an answer for a document the page was never handed is 409; a refused submission is 400 with a message the
    page shows as it is.
    """

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> JsonResponse:
        if not request.user.is_authenticated:
            return JsonResponse({"error": "Your session has ended. Log in again to continue."}, status=401)
        try:
            return JsonResponse(view(request, *args, **kwargs))
        except ProjectNotFound as error:
            return JsonResponse({"error": str(error)}, status=404)
        except NotAllowed as error:
            return JsonResponse({"error": str(error)}, status=403)
        except NotServed as error:
            return JsonResponse({"error": str(error)}, status=409)
        except LabelsChanged as error:
            # The page keeps the answer and offers a reload; the code tells it apart from other conflicts.
            return JsonResponse({"error": str(error), "code": "labels_changed"}, status=409)
        except DocketError as error:
            return JsonResponse({"error": str(error)}, status=400)
        except ValidationError as error:
            return JsonResponse({"error": " ".join(error.messages)}, status=400)
        except BadRequest as error:
            return JsonResponse({"error": str(error)}, status=400)

    return wrapper


def _json_body(request: HttpRequest) -> dict:
    if not request.body:
        return {}
    try:
        body = json_read(request.body)  # InputRejected (too deep, a NUL) is a DocketError: a 400 below
    except (ValueError, UnicodeDecodeError) as error:
        raise BadRequest("The request body is not JSON.") from error
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    return body


def _valid(form_class, request: HttpRequest):
    form = form_class(_json_body(request))
    if not form.is_valid():
        raise BadRequest(first_error(form))
    return form.cleaned_data


def _served(document, *, project, reviewer) -> dict:
    """A document as the page shows it, with the ticket its answer must carry back."""
    shown = selectors.document_for_review(document, project=project, reviewer=reviewer)
    shown["ticket"] = serve_ticket_issue(reviewer=reviewer, document=document)
    return shown


@require_POST
@json_call
def queue_next(request: HttpRequest, project_id: int) -> dict:
    """The reviewer's next document, leased to them. `after`: the document on screen now (kept, not returned)."""
    project = permissions.access_project_by_id(request.user, project_id, action="label")
    data = _valid(NextDocumentForm, request)
    offer = next_document_for(reviewer=request.user, project=project, after_document_id=data["after"])
    if offer is None:
        return {"document": None, "state": selectors.queue_state(project, request.user)}
    return {
        "document": _served(offer.document, project=project, reviewer=request.user),
        "leaseExpiresAt": offer.expires_at.isoformat(),
        "resumed": offer.resumed,
    }


@require_GET
@json_call
def document_detail(request: HttpRequest, project_id: int, document_id: int) -> dict:
    """One document of the project with the reviewer's own labels: where "go back" and "My work" lead."""
    document = permissions.access_document_by_id(request.user, project_id, document_id, action="label")
    return {"document": _served(document, project=document.project, reviewer=request.user)}


@require_GET
@json_call
def labeling_model(request: HttpRequest, project_id: int) -> dict:
    """The model serving the project now; the labeling page asks every second, so a promotion shows at once."""
    project = permissions.access_project_by_id(request.user, project_id, action="label")
    return {"model": selectors.current_model(project)}


@require_POST
@json_call
def document_annotate(request: HttpRequest, project_id: int, document_id: int) -> dict:
    document = permissions.access_document_by_id(request.user, project_id, document_id, action="label")
    data = _valid(SubmissionForm, request)
    served_at = serve_ticket_read(ticket=data["ticket"], reviewer=request.user, document=document)
    result = annotation_submit(
        reviewer=request.user,
        document=document,
        label_keys=data["labels"],
        submission_id=data["submission_id"],
        seconds_spent=data["seconds_spent"],
        served_at=served_at,
        model_version_shown=data["model_version_shown"],
        suggested_labels=data["suggested_labels"],
    )
    return {
        "annotation": result.annotation.pk,
        "labels": result.label_keys,
        "created": result.created,
        "changed": result.changed,
        "replayed": result.replayed,
        "leaseLost": result.lease_lost,
    }


@require_POST
@json_call
def document_skip_view(request: HttpRequest, project_id: int, document_id: int) -> dict:
    document = permissions.access_document_by_id(request.user, project_id, document_id, action="label")
    document_skip(reviewer=request.user, document=document)
    return {"skipped": document.pk}


@require_POST
@json_call
def document_flag_view(request: HttpRequest, project_id: int, document_id: int) -> dict:
    document = permissions.access_document_by_id(request.user, project_id, document_id, action="label")
    data = _valid(FlagForm, request)
    flag = document_flag(reviewer=request.user, document=document, comment=data["comment"])
    return {"flag": flag.pk, "document": document.pk}
