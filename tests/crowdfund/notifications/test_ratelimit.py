import threading
import time

import pytest
from django.db import connection

from crowdfund.notifications import ratelimit
from crowdfund.notifications.models import ProviderRateLimit


@pytest.mark.django_db(transaction=True)
def test_the_rate_limit_holds_for_all_senders_together(settings):
    settings.NOTIFICATIONS_RATE_LIMITS = {"email": 40.0}
    settings.NOTIFICATIONS_RATE_BURST_SECONDS = 0.25  # a bucket of 10
    taken = []
    stop_at = time.monotonic() + 1.5

    def sender():
        try:
            while time.monotonic() < stop_at:
                ratelimit.take(provider="email", count=5)
                taken.append((time.monotonic(), 5))
        finally:
            connection.close()

    started = time.monotonic()
    threads = [threading.Thread(target=sender) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = max(at for at, _ in taken) - started

    total = sum(count for _, count in taken)
    # At most the bucket plus the refill over the time spent, whatever the number of senders.
    assert total <= 10 + 40 * elapsed + 5
    assert total >= 40 * 1.0  # and it does let that rate through
    assert ProviderRateLimit.objects.get(provider="email").rate == 40.0


@pytest.mark.django_db
def test_a_provider_without_a_limit_never_waits(settings):
    settings.NOTIFICATIONS_RATE_LIMITS = {"email": 0}
    assert ratelimit.take(provider="email", count=10_000) == 0.0
    assert not ProviderRateLimit.objects.exists()
