from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView

from crowdfund.accounts import selectors, services
from crowdfund.accounts.serializers import (
    DeviceInputSerializer,
    DeviceSerializer,
    EmailTokenObtainSerializer,
    NotificationPreferencesSerializer,
    ProfileSerializer,
    RegisterInputSerializer,
    UserSerializer,
)


# Registration and sign-in are throttled per client address (settings: REST_FRAMEWORK's "auth" rate)
# against password guessing and mass sign-ups.
class AuthThrottled:
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "auth"


class RegisterApi(AuthThrottled, APIView):
    permission_classes = [AllowAny]
    authentication_classes = []

    @extend_schema(request=RegisterInputSerializer, responses={201: UserSerializer}, tags=["accounts"])
    def post(self, request):
        serializer = RegisterInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = services.user_register(**serializer.validated_data)
        return Response(UserSerializer(user).data, status=status.HTTP_201_CREATED)


class TokenObtainApi(AuthThrottled, TokenObtainPairView):
    """Sign in with email and password: an access token and a refresh token."""

    serializer_class = EmailTokenObtainSerializer


class TokenRefreshApi(AuthThrottled, TokenRefreshView):
    """A new access token for a refresh token."""


class MeApi(APIView):
    @extend_schema(responses={200: ProfileSerializer}, tags=["accounts"])
    def get(self, request):
        return Response(ProfileSerializer(request.user).data)


class DeviceRegisterApi(APIView):
    @extend_schema(request=DeviceInputSerializer, responses={201: DeviceSerializer}, tags=["accounts"])
    def post(self, request):
        serializer = DeviceInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        device = services.device_register(user=request.user, **serializer.validated_data)
        return Response(DeviceSerializer(device).data, status=status.HTTP_201_CREATED)


class NotificationPreferencesApi(APIView):
    """Every (kind, channel) pair, on or off. PUT may list only the pairs to change."""

    @extend_schema(responses={200: NotificationPreferencesSerializer}, tags=["accounts"])
    def get(self, request):
        return self._current(request.user)

    @extend_schema(
        request=NotificationPreferencesSerializer, responses={200: NotificationPreferencesSerializer}, tags=["accounts"]
    )
    def put(self, request):
        serializer = NotificationPreferencesSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.notification_preferences_set(user=request.user, **serializer.validated_data)
        return self._current(request.user)

    def _current(self, user):
        preferences = selectors.notification_preferences_get(user=user)
        return Response(NotificationPreferencesSerializer({"preferences": preferences}).data)
