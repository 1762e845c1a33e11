from rest_framework import serializers

from crowdfund.campaigns.serializers import MONEY_IN
from crowdfund.pledges.models import Pledge

IDEMPOTENCY_KEY_MAX_LENGTH = 255


class PledgeCreateSerializer(serializers.Serializer):
    amount = serializers.DecimalField(**MONEY_IN, min_value=1, help_text="In the campaign's currency.")
    reward = serializers.UUIDField(required=False, allow_null=True, default=None, help_text="A reward tier's id.")


class PaymentSerializer(serializers.Serializer):
    provider = serializers.CharField(source="payment_provider")
    intent_id = serializers.CharField(source="payment_intent_id")
    client_secret = serializers.CharField(source="payment_client_secret")


class PledgeSerializer(serializers.ModelSerializer):
    payment = PaymentSerializer(source="*", read_only=True, help_text="What the app needs to confirm the payment.")

    class Meta:
        model = Pledge
        fields = ["id", "campaign", "reward", "amount", "currency", "status", "created_at", "paid_at", "payment"]
