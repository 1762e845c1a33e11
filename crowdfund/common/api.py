"""The API's error format, produced in this one place for every error.

Every error the API answers with has one shape (ErrorSerializer):

    {"code": "reward_sold_out", "detail": "This reward has no slots left.", "fields": {}}

`fields` maps a field name to a list of messages; nested fields are joined with dots
("payment.amount"), items of a list by their index ("items.0.amount"), and errors about the body
as a whole go under "non_field_errors".
"""

import logging

from django.http import JsonResponse
from rest_framework import exceptions, serializers
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

from crowdfund.common.errors import DomainError

log = logging.getLogger(__name__)

NON_FIELD_ERRORS = "non_field_errors"


class ErrorSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable, machine-readable; branch on this.")
    detail = serializers.CharField(help_text="For humans; may change.")
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text='Messages by field name ("a.b" for nested fields, "non_field_errors" for the whole body).',
    )


def error_body(code: str, detail: str, fields: dict | None = None) -> dict:
    return {"code": code, "detail": detail, "fields": fields or {}}


def exception_handler(exc, context):
    """Every error raised while serving an API request becomes an ErrorSerializer body."""
    if isinstance(exc, DomainError):
        set_rollback()
        return Response(error_body(exc.code, exc.detail, exc.fields), status=exc.status)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # a bug: Django's 500 handler (json_server_error) answers and it is logged
    if isinstance(exc, exceptions.ValidationError):
        fields = flatten_field_errors(exc.detail)
        detail = "Invalid input: " + ", ".join(fields) + "." if fields else "Invalid input."
        response.data = error_body("validation_error", detail, fields)
    else:
        response.data = error_body(*_code_and_detail(exc))
    return response


def _code_and_detail(exc: exceptions.APIException) -> tuple[str, str]:
    detail = exc.detail
    if isinstance(detail, dict):  # simplejwt's errors: {"detail": ..., "code": ..., "messages": [...]}
        return str(detail.get("code", exc.default_code)), str(detail.get("detail", exc.default_detail))
    if isinstance(detail, list):
        detail = detail[0] if detail else exc.default_detail
    return str(getattr(detail, "code", None) or exc.default_code), str(detail)


def flatten_field_errors(detail, prefix: str = "") -> dict[str, list[str]]:
    if isinstance(detail, dict):
        flat = {}
        for key, value in detail.items():
            flat.update(flatten_field_errors(value, f"{prefix}{key}."))
        return flat
    if isinstance(detail, list) and any(isinstance(item, (dict, list)) for item in detail):
        flat = {}
        for index, item in enumerate(detail):
            if item:
                flat.update(flatten_field_errors(item, f"{prefix}{index}."))
        return flat
    messages = [str(item) for item in detail] if isinstance(detail, list) else [str(detail)]
    return {prefix.rstrip(".") or NON_FIELD_ERRORS: messages}


def json_not_found(request, exception=None):
    """handler404: a URL nothing answers (or an id that is not a UUID) still gets the error format."""
    return JsonResponse(error_body("not_found", "Not found."), status=404)


def json_server_error(request):
    return JsonResponse(error_body("server_error", "Something went wrong on our side."), status=500)
