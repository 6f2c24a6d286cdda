from django.urls import path

from annotation import views

app_name = "annotation"

urlpatterns = [
    path("", views.my_projects, name="my-projects"),
    path("projects/<int:project_id>/", views.project_detail, name="project-detail"),
    path("projects/<int:project_id>/label/", views.labeling_page, name="label"),
    path("projects/<int:project_id>/my-work/", views.my_work, name="my-work"),
    path("projects/<int:project_id>/legal-review/", views.legal_review_page, name="legal-review"),
    path(
        "projects/<int:project_id>/legal-review/<int:flag_id>/resolve/",
        views.flag_resolve_view,
        name="flag-resolve",
    ),
    # JSON calls of the labeling page (session cookie + CSRF header).
    path("projects/<int:project_id>/queue/next", views.queue_next, name="queue-next"),
    path("projects/<int:project_id>/label/model", views.labeling_model, name="labeling-model"),
    path("projects/<int:project_id>/documents/<int:document_id>", views.document_detail, name="document"),
    path(
        "projects/<int:project_id>/documents/<int:document_id>/annotate",
        views.document_annotate,
        name="document-annotate",
    ),
    path("projects/<int:project_id>/documents/<int:document_id>/skip", views.document_skip_view, name="document-skip"),
    path("projects/<int:project_id>/documents/<int:document_id>/flag", views.document_flag_view, name="document-flag"),
]
