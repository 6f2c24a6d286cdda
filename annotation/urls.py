from django.urls import path

from annotation import views

app_name = "annotation"

urlpatterns = [
    path("", views.my_projects, name="my-projects"),
    path("projects/<int:project_id>/", views.project_detail, name="project-detail"),
]
