"""With DEBUG off, gunicorn alone serves a working Docket: the labeling page, its CSS and JS, and /readyz."""

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.test import Client

from tests.factories import MembershipFactory, UserFactory, project_with_labels

ROOT = Path(__file__).resolve().parent.parent.parent
ONE_YEAR = 365 * 24 * 3600


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def production_env(tmp_path: Path) -> dict[str, str]:
    db = settings.DATABASES["default"]
    env = {key: value for key, value in os.environ.items() if key not in ("DOCKET_DEVELOPMENT", "DEBUG")}
    env.update(
        DEBUG="0",
        DOCKET_DEVELOPMENT="0",
        SECRET_KEY=settings.SECRET_KEY,  # the test's session must be valid for the server
        DATABASE_URL=(
            f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
        ),
        STATIC_ROOT=str(tmp_path / "static"),
        DOCKET_VAR_DIR=str(tmp_path / "var"),
        DOCKET_ARTIFACT_DIR=str(tmp_path / "artifacts"),
        DJANGO_SETTINGS_MODULE="config.settings",
    )
    return env


@pytest.mark.django_db(transaction=True)
def test_with_debug_off_the_labeling_page_its_css_and_js_and_readyz_answer_200(tmp_path):
    project = project_with_labels()
    reviewer = UserFactory()
    MembershipFactory(project=project, user=reviewer, role="reviewer")
    browser = Client()
    browser.force_login(reviewer)
    cookie = {"Cookie": f"{settings.SESSION_COOKIE_NAME}={browser.cookies[settings.SESSION_COOKIE_NAME].value}"}

    env = production_env(tmp_path)
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=300,
        capture_output=True,
    )
    port = free_port()
    log = tmp_path / "gunicorn.log"
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "1"],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, log.read_text()
            try:
                if requests.get(f"{base}/healthz", timeout=10).status_code == 200:
                    break
            except requests.RequestException:  # still starting
                pass
            assert time.monotonic() < deadline, f"gunicorn did not answer in 120 s:\n{log.read_text()}"
            time.sleep(0.5)

        page = requests.get(f"{base}/projects/{project.pk}/label/", headers=cookie, timeout=30, allow_redirects=False)
        assert page.status_code == 200, page.text[:500]
        assets = re.findall(r'(?:href|src)="(/static/[^"]+\.(?:css|js))"', page.text)
        assert any(a.endswith(".css") for a in assets) and any(a.endswith(".js") for a in assets), assets
        for asset in assets:
            response = requests.get(base + asset, headers={"Accept-Encoding": "gzip"}, timeout=30)
            assert response.status_code == 200, asset
            # Hashed names, cached for a year, compressed.
            assert re.search(r"\.[0-9a-f]{12}\.(css|js)$", asset), asset
            assert (
                f"max-age={ONE_YEAR}" in response.headers["Cache-Control"]
                or "immutable" in response.headers["Cache-Control"]
            ), response.headers
            assert response.headers.get("Content-Encoding") == "gzip", asset

        ready = requests.get(f"{base}/readyz", timeout=30)
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["models"]["ok"] is True
    finally:
        server.terminate()
        server.wait(timeout=30)
