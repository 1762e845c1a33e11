from django.core.management import call_command

from crowdfund.accounts.models import User
from crowdfund.campaigns.models import Campaign, CampaignStatus
from crowdfund.payments import services as payments
from crowdfund.payments.tasks import campaign_refund_chunk
from crowdfund.pledges.models import Pledge, PledgeStatus
from tasks.models import TaskRecord


def run_demo_data(capsys) -> str:
    call_command("demo_data")
    return capsys.readouterr().out


def test_demo_data_has_campaigns_in_every_state_and_prints_the_logins(db, capsys):
    out = run_demo_data(capsys)
    assert "admin@example.com  password admin" in out
    assert "backer@example.com  password backer" in out
    assert "creator@example.com  password creator" in out
    assert set(Campaign.objects.values_list("status", flat=True)) == set(CampaignStatus.values)
    assert Pledge.objects.filter(status=PledgeStatus.PAID).exists()
    assert Pledge.objects.filter(status=PledgeStatus.PENDING).exists()
    assert User.objects.get(email="backer@example.com").check_password("backer")
    assert User.objects.get(email="admin@example.com").is_superuser


def test_demo_data_runs_again_without_duplicating_anything(db, capsys):
    run_demo_data(capsys)
    counts = (User.objects.count(), Campaign.objects.count(), Pledge.objects.count())
    out = run_demo_data(capsys)
    assert (User.objects.count(), Campaign.objects.count(), Pledge.objects.count()) == counts
    assert "admin@example.com" in out


def test_the_paid_pledges_of_the_failed_and_the_cancelled_demo_campaign_can_be_refunded(db, capsys):
    run_demo_data(capsys)
    refunding = Campaign.objects.filter(status__in=[CampaignStatus.FAILED, CampaignStatus.CANCELLED])
    assert refunding.count() == 2
    for campaign in refunding:
        assert campaign.pledges.filter(status=PledgeStatus.PAID).exists()
        assert TaskRecord.objects.filter(
            name=campaign_refund_chunk.name, correlation_key=f"campaign:{campaign.id}"
        ).exists()
        # What the refund chain, enqueued when the campaign failed or was cancelled, runs.
        payments.campaign_refund_chunk(campaign=campaign, after=None)
        assert not campaign.pledges.filter(status=PledgeStatus.PAID).exists()
        campaign.refresh_from_db()
        assert (campaign.pledged_amount, campaign.backer_count) == (0, 0)
