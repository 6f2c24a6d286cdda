"""What every API operation does around its own work: replays a POST's stored answer for a repeated
`Idempotency-Key`, and says the caller's rate limit on every answer."""

from django.http import HttpResponseBase
from rest_framework.request import Request
from rest_framework.views import APIView

from api import idempotency
from api.auth import rate_limit_of
from api.exceptions import Conflict


class ApiView(APIView):
    claimed = None  # the StoredResponse row this POST will keep its answer in
    # Fields of the answer that are secrets shown once (a new key's token): never stored, so a retry under the
    # same Idempotency-Key is told the secret went out already instead of getting it again.
    secret_fields: tuple[str, ...] = ()

    def initial(self, request: Request, *args, **kwargs) -> None:
        super().initial(request, *args, **kwargs)  # authentication, permissions, the rate limit
        if request.method == "POST":
            self.claimed = idempotency.claim(request)

    def handle_exception(self, exc: Exception) -> HttpResponseBase:
        if isinstance(exc, idempotency.Replay):
            if not self.secret_fields:
                return exc.response()
            exc = Conflict(
                "A request with this Idempotency-Key was answered already, with a secret that is shown only once "
                "and not kept. If it was lost, revoke that key and issue another."
            )
        return super().handle_exception(exc)

    def finalize_response(self, request: Request, response: HttpResponseBase, *args, **kwargs) -> HttpResponseBase:
        response = super().finalize_response(request, response, *args, **kwargs)
        for name, value in rate_limit_of(request).headers().items():
            response[name] = value
        if self.claimed is not None:
            idempotency.store(self.claimed, response, withhold=self.secret_fields)
            self.claimed = None
        return response

    def dispatch(self, request, *args, **kwargs) -> HttpResponseBase:
        try:
            return super().dispatch(request, *args, **kwargs)
        except BaseException:
            # A bug answered 500 outside DRF: the retry must run again, not wait for an answer never stored.
            if self.claimed is not None:
                idempotency.release(self.claimed)
            raise
