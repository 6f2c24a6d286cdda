from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import FileResponse, HttpRequest
from django.urls import include, path
from django.views.decorators.cache import cache_control

from api import pages as api_pages


@cache_control(public=True, max_age=7 * 24 * 3600)
def favicon(request: HttpRequest) -> FileResponse:
    """Browsers and link previews ask for /favicon.ico whatever the page says; answer it, not with a 404."""
    return FileResponse(
        open(settings.BASE_DIR / "static" / "docket" / "favicon.ico", "rb"), content_type="image/x-icon"
    )


urlpatterns = [
    path("favicon.ico", favicon, name="favicon"),
    path("", include("operations.urls")),
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    # A person resets their own password by email; project admins cannot (docs/security.md).
    path("accounts/password-reset/", auth_views.PasswordResetView.as_view(), name="password_reset"),
    path("accounts/password-reset/sent/", auth_views.PasswordResetDoneView.as_view(), name="password_reset_done"),
    path(
        "accounts/reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path("accounts/reset/done/", auth_views.PasswordResetCompleteView.as_view(), name="password_reset_complete"),
    path("accounts/tokens/", api_pages.my_tokens, name="my-tokens"),
    path("accounts/tokens/<int:key_id>/revoke/", api_pages.my_token_revoke, name="my-token-revoke"),
    path("api/", include("api.urls")),
    path("projects/<int:project_id>/keys/", include("api.page_urls")),
    path("projects/<int:project_id>/models/", include("learning.urls")),
    path("projects/<int:project_id>/quality/", include("quality.urls")),
    path("projects/<int:project_id>/explore/", include("explore.urls")),
    path("projects/<int:project_id>/manage/webhooks/", include("webhooks.urls")),
    path("", include("annotation.manage.urls")),
    path("", include("annotation.urls")),
]
