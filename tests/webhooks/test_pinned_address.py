"""A delivery connects to the address its check approved and never resolves the host again (DNS rebinding),
while TLS still names and verifies the webhook's own host."""

import socket
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import urllib3.util.connection

from tests.factories import UserFactory, project_with_labels
from tests.webhooks.conftest import RECEIVER_PORTS
from webhooks.encryption import secret_encrypt
from webhooks.models import Delivery, Event, Webhook
from webhooks.services import delivery_attempt

pytestmark = pytest.mark.django_db

HOST = "hooks.example.org"
PUBLIC = "93.184.216.34"


def _delivery(url: str) -> Delivery:
    project = project_with_labels(name="Pinned")
    hook = Webhook.objects.create(
        project=project,
        url=url,
        events=[Event.TAXONOMY_CHANGED],
        secret_token=secret_encrypt("s" * 64),
        created_by=UserFactory(),
    )
    return Delivery.objects.create(webhook=hook, event=Event.PING, payload={"event": "ping"})


def _resolver(monkeypatch, answers: dict[str, list[str]]) -> list[str]:
    """Answers `answers[host]` in turn (the last one again once used up); other hosts resolve as usual."""
    real, asked = socket.getaddrinfo, []

    def getaddrinfo(host, port, *args, **kwargs):
        if host not in answers:
            return real(host, port, *args, **kwargs)
        asked.append(host)
        address = answers[host][min(len(asked), len(answers[host])) - 1]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked


def test_a_host_that_turns_private_after_the_check_is_not_reached(settings, monkeypatch):
    settings.DOCKET_WEBHOOK_ALLOW_PRIVATE_NETWORKS = False
    settings.DOCKET_WEBHOOK_ALLOW_HTTP_LOCAL = False
    # The first answer passes the check; every later one points at this machine.
    _resolver(monkeypatch, {HOST: [PUBLIC, "127.0.0.1"]})
    connected = []

    def create_connection(address, *args, **kwargs):
        connected.append(address)
        raise ConnectionRefusedError("no network in this test")

    monkeypatch.setattr(urllib3.util.connection, "create_connection", create_connection)
    delivery = _delivery(f"https://{HOST}/in")

    assert delivery_attempt(delivery.pk) == Delivery.Status.RETRYING
    assert connected == [(PUBLIC, 443)]


def test_a_host_that_cannot_be_resolved_now_is_retried(settings, monkeypatch):
    settings.DOCKET_WEBHOOK_ALLOW_PRIVATE_NETWORKS = False

    def getaddrinfo(*args, **kwargs):
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    delivery = _delivery(f"https://{HOST}/in")

    assert delivery_attempt(delivery.pk) == Delivery.Status.RETRYING
    delivery.refresh_from_db()
    assert "cannot be found now" in delivery.error


@pytest.fixture
def tls_receiver(tmp_path):
    """An HTTPS receiver on this machine with a certificate for `certificate_host`, trusted by requests."""

    def start(certificate_host: str):
        key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-keyout", str(key)]
            + [
                "-out",
                str(cert),
                "-subj",
                f"/CN={certificate_host}",
                "-addext",
                f"subjectAltName=DNS:{certificate_host}",
            ],
            check=True,
            capture_output=True,
        )
        seen = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                seen.append(dict(self.headers))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        for port in reversed(RECEIVER_PORTS):
            try:
                server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
                break
            except OSError:
                continue
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server.server_address[1], cert, seen

    servers = []
    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_tls_to_the_pinned_address_still_names_and_verifies_the_host(settings, monkeypatch, tls_receiver):
    settings.DOCKET_WEBHOOK_ALLOW_PRIVATE_NETWORKS = True  # the receiver is on this machine
    port, cert, seen = tls_receiver(HOST)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    asked = _resolver(monkeypatch, {HOST: ["127.0.0.1"]})
    delivery = _delivery(f"https://{HOST}:{port}/in")

    assert delivery_attempt(delivery.pk) == Delivery.Status.DELIVERED, Delivery.objects.get().error
    assert [headers["Host"] for headers in seen] == [f"{HOST}:{port}"]
    assert asked == [HOST]  # resolved once, by the check


def test_a_certificate_for_another_host_is_refused(settings, monkeypatch, tls_receiver):
    settings.DOCKET_WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    port, cert, seen = tls_receiver("other.example.org")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    _resolver(monkeypatch, {HOST: ["127.0.0.1"]})
    delivery = _delivery(f"https://{HOST}:{port}/in")

    assert delivery_attempt(delivery.pk) == Delivery.Status.RETRYING
    delivery.refresh_from_db()
    assert "certificate" in delivery.error.lower() and seen == []
