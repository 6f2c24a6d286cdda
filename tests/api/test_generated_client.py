"""A typed client generated from /api/schema/ in this run (openapi-python-client, as integrators do) classifies
text, pages documents and handles a 429: the schema is complete enough to automate against."""

import hashlib
import importlib
import shutil
import subprocess
import sys
import venv
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from tests.api.conftest import add_model_versions, client_with, personal_key

pytestmark = pytest.mark.django_db

REQUIREMENTS = Path(__file__).with_name("client-generator-requirements.txt")
TOOLS = Path(__file__).resolve().parents[2] / "var" / "tools"


@pytest.fixture(scope="session")
def generator() -> Path:
    """openapi-python-client in a venv of its own (its pins conflict with Docket's), made once per requirements."""
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:12]
    home = TOOLS / f"openapi-python-client-{digest}"
    command, complete = home / "bin" / "openapi-python-client", home / ".complete"
    if not complete.exists():
        shutil.rmtree(home, ignore_errors=True)  # a build that stopped half-way
        venv.create(home, with_pip=True)
        subprocess.run(
            [home / "bin" / "python", "-m", "pip", "install", "--quiet", "-r", REQUIREMENTS], check=True, timeout=600
        )
        complete.touch()
    return command


@pytest.fixture
def docket_client(generator, tmp_path, home, settings):
    """The package generated from the schema this server serves, imported as `docket_client`."""
    schema = client_with(None).get("/api/schema/", {"format": "json"})
    assert schema.status_code == 200
    (tmp_path / "schema.json").write_bytes(schema.content)
    (tmp_path / "config.yaml").write_text(
        "project_name_override: docket-client\npackage_name_override: docket_client\npost_hooks: []\n"
        # Binary downloads (a model bundle) arrive as bytes: the generator's own name for them is octet-stream.
        "content_type_overrides:\n  application/zip: application/octet-stream\n"
    )
    generated = subprocess.run(
        [generator, "generate", "--path", "schema.json", "--config", "config.yaml", "--output-path", "docket_client"]
        + ["--meta", "none"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert generated.returncode == 0, generated.stdout + generated.stderr
    assert "warning" not in (generated.stdout + generated.stderr).lower(), generated.stdout + generated.stderr
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module("docket_client")
    finally:
        sys.path.remove(str(tmp_path))
        for name in [name for name in sys.modules if name == "docket_client" or name.startswith("docket_client.")]:
            del sys.modules[name]


def _typed(docket_client, wsgi_app, token: str):
    client = docket_client.AuthenticatedClient(base_url="http://testserver", token=token)
    client.set_httpx_client(
        httpx.Client(
            base_url="http://testserver",
            transport=httpx.WSGITransport(app=wsgi_app),
            headers={"Authorization": f"Bearer {token}"},
        )
    )
    return client


def test_a_generated_client_predicts_pages_and_waits_out_a_429(
    home, docket_client, wsgi_app_in_test_transaction, trained_models, serving_cache, settings
):
    from docket_client.api.documents import documents_list
    from docket_client.api.predict import predict
    from docket_client.models import DocumentPage, Error429, PredictInputTextsRequest, PredictOutput

    add_model_versions(home, trained_models)
    client = _typed(docket_client, wsgi_app_in_test_transaction, personal_key(home.admin, [home.project]))

    answer = predict.sync_detailed(
        project_id=home.project.pk,
        client=client,
        body=PredictInputTextsRequest(texts=["We share your identifiers with advertising partners."]),
    )
    assert answer.status_code == 200, answer.content
    assert isinstance(answer.parsed, PredictOutput)
    assert answer.parsed.model_version == 2 and answer.parsed.results[0].labels == ["third_party"]
    assert answer.headers["Server-Timing"].startswith("model;dur=")

    ids, cursor = [], None
    while True:
        page = documents_list.sync(project_id=home.project.pk, client=client, page_size=1, **_cursor(cursor))
        assert isinstance(page, DocumentPage)
        ids += [document.id for document in page.results]
        if not page.next_:
            break
        cursor = parse_qs(urlparse(page.next_).query)["cursor"][0]
    assert ids == sorted([home.labeled.pk, home.queued.pk])

    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"api_key": "2/min"}}
    outcomes = [documents_list.sync_detailed(project_id=home.project.pk, client=client) for _ in range(3)]
    throttled = outcomes[-1]
    assert throttled.status_code == 429
    assert isinstance(throttled.parsed, Error429)
    assert throttled.parsed.error.code.value == "throttled"
    wait = throttled.parsed.error.details.retry_after_seconds
    assert wait >= 1 and int(throttled.headers["Retry-After"]) == wait
    assert throttled.headers["RateLimit-Remaining"] == "0"


def _cursor(cursor: str | None) -> dict:
    return {"cursor": cursor} if cursor else {}
