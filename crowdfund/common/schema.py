"""The OpenAPI description of what every view shares: its error responses."""

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework.permissions import AllowAny

from crowdfund.common.api import ErrorSerializer

ERROR_DESCRIPTIONS = {
    400: "Invalid input (`validation_error`, with `fields`) or a refused request.",
    401: "Not authenticated, or the token is invalid or expired.",
    403: "Authenticated, but not allowed to do this.",
    404: "No such resource (or not visible to the caller).",
    409: "Conflicts with the current state of the resource.",
    410: "Gone: the resource existed but has expired (e.g. `report_expired`).",
    415: "The body is not JSON.",
    422: "Contradicts an earlier request (e.g. an Idempotency-Key reused with another body).",
    429: "Too many requests; retry after the number of seconds in `Retry-After`.",
}


class AutoSchema(SpectacularAutoSchema):
    """Adds the error responses a view can answer with to every operation, so the schema (and
    schemathesis) knows every status the API may send. A view may list more in
    `extra_error_statuses`."""

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        for status in self._error_statuses():
            response = OpenApiResponse(ErrorSerializer, description=ERROR_DESCRIPTIONS[status])
            responses.setdefault(str(status), self._get_response_for_code(response, str(status), direction=direction))
        return responses

    def _error_statuses(self) -> list[int]:
        view = self.view
        statuses = {400, 401, *getattr(view, "extra_error_statuses", ())}
        if not all(isinstance(permission, AllowAny) for permission in view.get_permissions()):
            statuses.add(403)
        if "{" in self.path or self.method == "GET":
            statuses.add(404)
        if self.method in ("POST", "PUT", "PATCH"):
            statuses.add(415)
        if view.get_throttles():
            statuses.add(429)
        return sorted(statuses)
