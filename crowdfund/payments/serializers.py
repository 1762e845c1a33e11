from rest_framework import serializers

from crowdfund.payments.providers.sandbox import OUTCOMES


class WebhookReceivedSerializer(serializers.Serializer):
    received = serializers.BooleanField()
    duplicate = serializers.BooleanField(help_text="True when this event was received before (not processed again).")


class SandboxConfirmSerializer(serializers.Serializer):
    outcome = serializers.ChoiceField(choices=sorted(OUTCOMES), help_text="How the backer's payment goes.")


class SandboxIntentSerializer(serializers.Serializer):
    intent_id = serializers.CharField()
    status = serializers.CharField()
