from django.urls import path

from api import pages

app_name = "api-pages"

urlpatterns = [
    path("", pages.project_keys, name="keys"),
    path("<int:key_id>/revoke/", pages.project_key_revoke, name="key-revoke"),
]
