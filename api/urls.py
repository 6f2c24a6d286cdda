"""/api/v1/: one view per operation. Where two operations share a path, the path's class just joins them."""

from django.http import HttpRequest, JsonResponse
from django.urls import path, re_path
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from api.auth import rate_limit_of
from api.errors import error_body
from api.views import (
    annotations,
    documents,
    flags,
    imports,
    keys,
    models,
    predict,
    projects,
    search,
    serving,
    taxonomy,
)

app_name = "api"


def joined(*operations: type) -> type:
    """One class answering each operation's HTTP method; every operation keeps its own class and schema."""
    return type("".join(op.__name__.removesuffix("Api") for op in operations) + "Api", operations, {})


@csrf_exempt  # keys, not cookies, authenticate the API; a stray POST must get the JSON 404 too
def not_found(request: HttpRequest) -> JsonResponse:
    """Anything under /api/ that matches no operation (a negative id, a typo) still answers in the error shape,
    with the rate-limit headers every API answer has (the address's budget: no key was looked at)."""
    response = JsonResponse(error_body("not_found", "No such API endpoint; see /api/docs/."), status=404)
    for name, value in rate_limit_of(request).headers().items():
        response[name] = value
    return response


P = "v1/projects/<int:project_id>"

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
    path("redoc/", SpectacularRedocView.as_view(url_name="api:schema"), name="redoc"),
    path("v1/projects", joined(projects.ProjectListApi, projects.ProjectCreateApi).as_view(), name="projects"),
    path(f"{P}", joined(projects.ProjectDetailApi, projects.ProjectUpdateApi).as_view(), name="project"),
    path(f"{P}/keys", joined(keys.KeyListApi, keys.KeyCreateApi).as_view(), name="keys"),
    path(f"{P}/keys/<int:key_id>/revoke", keys.KeyRevokeApi.as_view(), name="key-revoke"),
    path(f"{P}/taxonomy", taxonomy.TaxonomyDetailApi.as_view(), name="taxonomy"),
    path(f"{P}/labels", joined(taxonomy.LabelListApi, taxonomy.LabelCreateApi).as_view(), name="labels"),
    path(f"{P}/labels/<int:label_id>", taxonomy.LabelUpdateApi.as_view(), name="label"),
    path(
        f"{P}/documents", joined(documents.DocumentListApi, documents.DocumentBulkCreateApi).as_view(), name="documents"
    ),
    path(f"{P}/documents/<int:document_id>", documents.DocumentDetailApi.as_view(), name="document"),
    path(
        f"{P}/annotations",
        joined(annotations.AnnotationListApi, annotations.AnnotationCreateApi).as_view(),
        name="annotations",
    ),
    path(f"{P}/annotations/export", annotations.AnnotationExportApi.as_view(), name="annotations-export"),
    path(f"{P}/imports", imports.ImportCreateApi.as_view(), name="imports"),
    path(f"{P}/imports/<int:batch_id>", imports.ImportDetailApi.as_view(), name="import"),
    path(f"{P}/flags", flags.FlagListApi.as_view(), name="flags"),
    path(f"{P}/flags/<int:flag_id>/resolve", flags.FlagResolveApi.as_view(), name="flag-resolve"),
    path(f"{P}/predict", predict.PredictApi.as_view(), name="predict"),
    path(f"{P}/model", serving.ServingModelApi.as_view(), name="serving-model"),
    path(f"{P}/search", search.SearchApi.as_view(), name="search"),
    path(f"{P}/models", models.ModelVersionListApi.as_view(), name="models"),
    path(f"{P}/models/rollback", models.ModelVersionRollbackApi.as_view(), name="models-rollback"),
    path(f"{P}/models/<int:number>", models.ModelVersionDetailApi.as_view(), name="model"),
    path(f"{P}/models/<int:number>/bundle", models.ModelBundleApi.as_view(), name="model-bundle"),
    path(f"{P}/models/<int:number>/promote", models.ModelVersionPromoteApi.as_view(), name="model-promote"),
    path(
        f"{P}/training-runs",
        joined(models.TrainingRunListApi, models.TrainingRunStartApi).as_view(),
        name="training-runs",
    ),
    path(f"{P}/training-runs/<int:run_id>", models.TrainingRunDetailApi.as_view(), name="training-run"),
    re_path(r"^[\s\S]*$", not_found),  # also paths with a newline in them, which `.` would not match
]
