from rest_framework import serializers

from crowdfund.notifications.models import InAppNotification


class InAppNotificationSerializer(serializers.ModelSerializer):
    read = serializers.SerializerMethodField()

    class Meta:
        model = InAppNotification
        fields = ["id", "kind", "subject", "title", "body", "created_at", "read", "read_at"]

    def get_read(self, notification) -> bool:
        return notification.read_at is not None


class ReadAllSerializer(serializers.Serializer):
    marked_read = serializers.IntegerField()
