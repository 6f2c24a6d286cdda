"""Request ids and the access log; forwarded headers believed only from the proxies an operator trusts."""

from __future__ import annotations

import ipaddress
import logging
import re
import time
import uuid

from django.conf import settings

from operations.logs import request_id

access_log = logging.getLogger("docket.access")

# An id a proxy or client sends is kept (so one request can be followed across systems) if it looks sane.
ACCEPTED_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")
# Probes every few seconds would drown the access log; they are logged at DEBUG.
QUIET_PATHS = ("/healthz", "/readyz", "/metrics")


class RequestIdMiddleware:
    """Gives each request an id (X-Request-ID if sane, else a new one), echoes it, and writes one access line."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        offered = request.META.get("HTTP_X_REQUEST_ID", "")
        request.request_id = offered if ACCEPTED_REQUEST_ID.match(offered) else uuid.uuid4().hex
        token = request_id.set(request.request_id)
        started = time.perf_counter()
        status = 500
        try:
            response = self.get_response(request)
            status = response.status_code
            response["X-Request-ID"] = request.request_id
            if "Server-Timing" in response:
                # Beside the model's own time (predict), the whole application's: what a client's latency adds
                # on top of both is the network and the web server.
                app_ms = (time.perf_counter() - started) * 1000
                response["Server-Timing"] = f"{response['Server-Timing']}, app;dur={app_ms:.2f}"
            return response
        finally:
            duration_ms = round((time.perf_counter() - started) * 1000, 1)
            user = getattr(request, "user", None)
            username = user.get_username() if user is not None and user.is_authenticated else "-"
            level = logging.DEBUG if request.path in QUIET_PATHS and status < 500 else logging.INFO
            access_log.log(
                level,
                '%s "%s %s" %s %.1fms user=%s',
                request.META.get("REMOTE_ADDR", "-"),
                request.method,
                request.get_full_path(),
                status,
                duration_ms,
                username,
                extra={
                    "method": request.method,
                    "path": request.path,
                    "status": status,
                    "duration_ms": duration_ms,
                    "user": username,
                    "client": request.META.get("REMOTE_ADDR", "-"),
                },
            )
            request_id.reset(token)


class TrustedProxyMiddleware:
    """Drops X-Forwarded-Proto unless the request came from a trusted proxy (DOCKET_TRUSTED_PROXIES).

    With SECURE_PROXY_SSL_HEADER set, Django would otherwise take any client's word that it used HTTPS.
    Addresses may be single IPs or networks (10.0.0.0/8).
    """

    def __init__(self, get_response):
        self.get_response = get_response
        self.trusted = [ipaddress.ip_network(entry, strict=False) for entry in settings.DOCKET_TRUSTED_PROXIES]

    def __call__(self, request):
        if settings.SECURE_PROXY_SSL_HEADER and not self._trusted(request.META.get("REMOTE_ADDR", "")):
            request.META.pop(settings.SECURE_PROXY_SSL_HEADER[0], None)
        return self.get_response(request)

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.trusted)
