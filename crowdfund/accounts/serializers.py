from rest_framework import serializers
from rest_framework_simplejwt.serializers import TokenObtainPairSerializer

from crowdfund.accounts.models import Device, DevicePlatform, NotificationChannel, NotificationKind, User


class RegisterInputSerializer(serializers.Serializer):
    email = serializers.EmailField(max_length=254)
    password = serializers.CharField(max_length=128, write_only=True, trim_whitespace=False)
    display_name = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")


class UserSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["id", "email", "display_name"]


class ProfileSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["id", "email", "display_name", "date_joined"]


class EmailTokenObtainSerializer(TokenObtainPairSerializer):
    def validate(self, attrs):
        # Emails are stored lower-cased; a backer typing "Ann@Example.com" must still sign in.
        attrs[self.username_field] = attrs[self.username_field].strip().lower()
        return super().validate(attrs)


class DeviceInputSerializer(serializers.Serializer):
    platform = serializers.ChoiceField(choices=DevicePlatform.choices)
    token = serializers.CharField(max_length=255)


class DeviceSerializer(serializers.ModelSerializer):
    class Meta:
        model = Device
        fields = ["id", "platform", "token", "created_at", "last_seen_at"]


class NotificationPreferenceSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=NotificationKind.choices)
    channel = serializers.ChoiceField(choices=NotificationChannel.choices)
    enabled = serializers.BooleanField()


class NotificationPreferencesSerializer(serializers.Serializer):
    preferences = NotificationPreferenceSerializer(many=True, max_length=100)
