"""The one exception type of the domain. Services raise it; the API turns it into its error format
in one place (crowdfund.common.api.exception_handler)."""


class DomainError(Exception):
    """A refusal the client can act on.

    `code` is stable and machine-readable (clients branch on it; never change one), `detail` is for
    humans, `fields` maps a field name to its messages, and `status` is the HTTP status the API
    answers with (400 invalid, 403 not allowed, 404 unknown, 409 conflicts with the current state,
    422 a request that contradicts an earlier one).
    """

    def __init__(self, code: str, detail: str, *, status: int = 400, fields: dict[str, list[str]] | None = None):
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.status = status
        self.fields = fields or {}

    def __repr__(self):
        return f"DomainError({self.code!r}, {self.detail!r}, status={self.status})"
