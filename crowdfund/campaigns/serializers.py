from rest_framework import serializers

from crowdfund.accounts.models import User
from crowdfund.campaigns.models import Campaign, CampaignUpdate, Currency, Reward

# Money in: decimal strings (or numbers) with at most two places, never floats; out: strings.
MONEY_IN = {"max_digits": 12, "decimal_places": 2}


class CreatorSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["id", "display_name"]


class CampaignSerializer(serializers.ModelSerializer):
    creator = CreatorSerializer(read_only=True)

    class Meta:
        model = Campaign
        fields = [
            "id",
            "title",
            "description",
            "creator",
            "goal_amount",
            "pledged_amount",
            "currency",
            "backer_count",
            "deadline",
            "status",
            "created_at",
            "updated_at",
            "published_at",
            "finished_at",
        ]


class CampaignCreateSerializer(serializers.Serializer):
    title = serializers.CharField(max_length=200)
    description = serializers.CharField(max_length=20_000, required=False, allow_blank=True, default="")
    goal_amount = serializers.DecimalField(**MONEY_IN, min_value=1)
    currency = serializers.ChoiceField(choices=Currency.choices)
    deadline = serializers.DateTimeField(help_text="In the future, at most 90 days away.")


class CampaignEditSerializer(CampaignCreateSerializer):
    """Any subset of the creation fields. Once live, only title and description may change."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, partial=True, **kwargs)


class RewardSerializer(serializers.ModelSerializer):
    slots_left = serializers.IntegerField(read_only=True, allow_null=True, help_text="null when unlimited.")

    class Meta:
        model = Reward
        fields = ["id", "title", "description", "minimum_amount", "quantity", "slots_left", "created_at"]


class RewardCreateSerializer(serializers.Serializer):
    title = serializers.CharField(max_length=200)
    description = serializers.CharField(max_length=20_000, required=False, allow_blank=True, default="")
    minimum_amount = serializers.DecimalField(**MONEY_IN, min_value=1)
    quantity = serializers.IntegerField(
        min_value=1, max_value=1_000_000, required=False, allow_null=True, default=None, help_text="null: unlimited."
    )


class CampaignUpdateSerializer(serializers.ModelSerializer):
    class Meta:
        model = CampaignUpdate
        fields = ["id", "title", "body", "created_at"]


class CampaignUpdateCreateSerializer(serializers.Serializer):
    title = serializers.CharField(max_length=200)
    body = serializers.CharField(max_length=50_000)
