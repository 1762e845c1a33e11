from django.core.management.base import BaseCommand, CommandError

from crowdfund.payments.selectors import campaign_totals_mismatches


class Command(BaseCommand):
    help = "Check that every campaign's totals equal the sum of its paid pledges; exit 1 on any mismatch."

    def handle(self, *args, **options):
        wrong = campaign_totals_mismatches()
        for row in wrong:
            self.stderr.write(
                f"{row['id']} {row['title']!r}: pledged_amount {row['pledged_amount']} but paid pledges sum to "
                f"{row['paid_amount']}; backer_count {row['backer_count']} but {row['paid_backers']} paying backers"
            )
        if wrong:
            raise CommandError(f"{len(wrong)} campaign(s) with wrong totals.")
        self.stdout.write("Every campaign's totals equal the sum of its paid pledges.")
