"""A real HTTP receiver on this machine for webhook deliveries, and a worker that retries quickly."""

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

# Ports this suite may open (docs/benchmarks.md lists which ranges belong to which checkout).
RECEIVER_PORTS = range(int(os.environ.get("DOCKET_TEST_PORT_FIRST", "8300")), 8350)


class Receiver:
    """Records every request; answers `failures` 500s before it starts answering 200."""

    def __init__(self):
        self.requests: list[dict] = []
        self.failures = 0
        self.lock = threading.Lock()

    def handle(self, handler: BaseHTTPRequestHandler) -> int:
        body = handler.rfile.read(int(handler.headers.get("Content-Length", 0)))
        with self.lock:
            self.requests.append({"path": handler.path, "headers": dict(handler.headers), "body": body})
            if self.failures:
                self.failures -= 1
                return 500
        return 200

    def bodies(self) -> list[dict]:
        with self.lock:
            return [json.loads(r["body"]) for r in self.requests]


@pytest.fixture
def receiver():
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            status = state.handle(self)
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"thanks" if status == 200 else b"try later")

        def log_message(self, *args):
            pass

    server = None
    for port in RECEIVER_PORTS:
        try:
            server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
            break
        except OSError:
            continue
    if server is None:
        pytest.fail(f"No free port for the webhook receiver in {RECEIVER_PORTS}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/docket"
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def quick_retries():
    """Set before the module's worker starts, which reads its settings from the environment."""
    saved = {
        key: os.environ.get(key) for key in ("DOCKET_WEBHOOK_RETRY_SECONDS", "DOCKET_WEBHOOK_LABELED_BATCH_SECONDS")
    }
    os.environ["DOCKET_WEBHOOK_RETRY_SECONDS"] = "0.5"
    os.environ["DOCKET_WEBHOOK_LABELED_BATCH_SECONDS"] = "1"
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def webhook_worker(quick_retries, celery_worker_process):
    return celery_worker_process


@pytest.fixture
def admin_project():
    """A project with its admin, who creates the hooks."""
    from tests.factories import MembershipFactory, UserFactory, project_with_labels

    project = project_with_labels(name="Hooked project")
    admin = UserFactory(username="hook-admin")
    MembershipFactory(project=project, user=admin, role="admin")
    return project, admin
