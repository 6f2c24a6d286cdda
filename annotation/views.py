"""Server-rendered pages for reviewers and project admins."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from annotation import permissions, selectors


@login_required
def my_projects(request: HttpRequest) -> HttpResponse:
    projects = permissions.projects_for(request.user).order_by("name")
    rows = [{"project": p, "progress": selectors.project_progress(p)} for p in projects]
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
            "role": permissions.role_in(request.user, project),
        },
    )
