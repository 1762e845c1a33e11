from decimal import Decimal

from django.db.models import Count, F, OuterRef, Q, Subquery, Sum
from django.db.models.functions import Coalesce

from crowdfund.campaigns.models import Campaign
from crowdfund.pledges.models import Pledge, PledgeStatus


def campaign_totals_mismatches(*, campaigns=None) -> list[dict]:
    """Campaigns whose kept totals differ from their paid pledges: the sum of paid amounts and the
    number of distinct backers with a paid pledge. Empty when every total is right."""
    paid = Pledge.objects.filter(campaign=OuterRef("pk"), status=PledgeStatus.PAID).order_by().values("campaign")
    campaigns = (campaigns if campaigns is not None else Campaign.objects.all()).annotate(
        paid_amount=Coalesce(Subquery(paid.annotate(total=Sum("amount")).values("total")), Decimal("0")),
        paid_backers=Coalesce(Subquery(paid.annotate(n=Count("backer", distinct=True)).values("n")), 0),
    )
    wrong = campaigns.filter(~Q(pledged_amount=F("paid_amount")) | ~Q(backer_count=F("paid_backers")))
    return list(wrong.values("id", "title", "pledged_amount", "paid_amount", "backer_count", "paid_backers"))
