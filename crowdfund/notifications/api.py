from django.http import HttpResponse
from django.template.loader import render_to_string
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import extend_schema
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response

from crowdfund.common.errors import DomainError
from crowdfund.notifications import services
from crowdfund.notifications.serializers import InAppNotificationSerializer, ReadAllSerializer


class InAppNotificationListApi(GenericAPIView):
    """The caller's in-app notifications, newest first; `?unread=true` for unread ones only."""

    serializer_class = InAppNotificationSerializer
    filter_backends = []

    @extend_schema(responses=InAppNotificationSerializer(many=True), tags=["notifications"])
    def get(self, request):
        notifications = request.user.in_app_notifications.all()
        if request.query_params.get("unread") in ("1", "true"):
            notifications = notifications.filter(read_at__isnull=True)
        page = self.paginate_queryset(notifications)
        return self.get_paginated_response(InAppNotificationSerializer(page, many=True).data)


class InAppNotificationReadApi(GenericAPIView):
    """Mark one of the caller's notifications read; anyone else's is 404."""

    serializer_class = InAppNotificationSerializer

    @extend_schema(request=None, responses={200: InAppNotificationSerializer}, tags=["notifications"])
    def post(self, request, notification_id):
        notification = services.in_app_notification_read(user=request.user, notification_id=notification_id)
        return Response(InAppNotificationSerializer(notification).data)


class InAppNotificationReadAllApi(GenericAPIView):
    serializer_class = ReadAllSerializer

    @extend_schema(request=None, responses={200: ReadAllSerializer}, tags=["notifications"])
    def post(self, request):
        return Response({"marked_read": services.in_app_notifications_read_all(user=request.user)})


@method_decorator(csrf_exempt, name="dispatch")
class UnsubscribeView(View):
    """The link in every non-transactional email, for people not signed in: GET shows a button,
    POST unsubscribes (mail clients' one-click POST per RFC 8058 lands here too). GET never
    unsubscribes, as link scanners and previews fetch links unasked."""

    def get(self, request, token):
        return self._page(token, done=False)

    def post(self, request, token):
        return self._page(token, done=True)

    def _page(self, token, *, done: bool) -> HttpResponse:
        try:
            if done:
                user, kind = services.notification_unsubscribe(token=token)
            else:
                user, kind = services.unsubscribe_token_read(token=token)
        except DomainError as exc:
            return HttpResponse(exc.detail, status=exc.status, content_type="text/plain; charset=utf-8")
        context = {"email": user.email, "kind": kind, "kind_label": kind.label, "done": done}
        return HttpResponse(render_to_string("notifications/unsubscribe.html", context, request=self.request))
