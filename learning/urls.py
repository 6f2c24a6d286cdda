"""The models page of a project, mounted at /projects/<project_id>/models/."""

from django.urls import path

from learning import views

app_name = "learning"

urlpatterns = [
    path("", views.models_page, name="models"),
    path("status/", views.training_status, name="status"),
    path("curve.svg", views.learning_curve_svg, name="curve"),
    path("train/", views.train_now, name="train"),
    path("rescore/", views.rescore_now, name="rescore"),
    path("rollback/", views.version_rollback, name="rollback"),
    path("<int:number>/", views.version_detail, name="version"),
    path("<int:number>/promote/", views.version_promote, name="promote"),
]
