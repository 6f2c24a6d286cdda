"""The production environment template passes Django's deployment checklist, and HTTPS settings are read from it."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
TEMPLATE = ROOT / "deploy" / "docket.env.example"


def production_environment(tmp_path: Path) -> dict[str, str]:
    """The template's variables as a service would get them; only the host's directories are swapped."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DOCKET_", "CELERY_"))}
    env.pop("DATABASE_URL", None)
    # Set by the browser tests for Playwright in this process; never part of a deployment.
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    for line in TEMPLATE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    env.update(
        DOCKET_VAR_DIR=str(tmp_path / "var"),
        DOCKET_ARTIFACT_DIR=str(tmp_path / "artifacts"),
        STATIC_ROOT=str(tmp_path / "static"),
        DJANGO_SETTINGS_MODULE="config.settings",
    )
    return env


def test_check_deploy_gives_no_warning_with_the_production_template(tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=production_environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_hsts_ssl_redirect_and_the_proxy_header_come_from_the_environment(tmp_path):
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.SECURE_HSTS_SECONDS, s.SECURE_SSL_REDIRECT, s.SECURE_PROXY_SSL_HEADER, s.SESSION_COOKIE_SECURE, "
        "s.DOCKET_TRUSTED_PROXIES)"
    )
    env = production_environment(tmp_path)
    env.update(SECURE_HSTS_SECONDS="600", DOCKET_TRUSTED_PROXIES="10.0.0.0/8")
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=True
    ).stdout.strip()
    assert out == "600 True ('HTTP_X_FORWARDED_PROTO', 'https') True ['10.0.0.0/8']"
