"""Provider rate limits shared by every worker process: a token bucket per provider in PostgreSQL.

Celery's own `rate_limit` counts per worker process, so ten processes would send ten times the
limit. Here each sender takes tokens from one row per provider with one atomic statement that
first refills the bucket by the time elapsed since it was last touched; the limit therefore holds
across every process and machine sharing the database. Senders take tokens for a batch at a time,
so the row is touched once per batch, not once per message.
"""

import time

from django.conf import settings
from django.db import connection

from crowdfund.notifications.models import ProviderRateLimit

_TABLE = ProviderRateLimit._meta.db_table
# Refill, then take `count` if that many are there; a row appears on first use, full.
_TAKE_SQL = f"""
INSERT INTO {_TABLE} AS b (provider, tokens, capacity, rate, updated_at)
VALUES (%(provider)s, %(capacity)s - %(count)s, %(capacity)s, %(rate)s, clock_timestamp())
ON CONFLICT (provider) DO UPDATE
   SET tokens = LEAST(EXCLUDED.capacity,
                      b.tokens + EXCLUDED.rate * EXTRACT(EPOCH FROM clock_timestamp() - b.updated_at)) - %(count)s,
       capacity = EXCLUDED.capacity, rate = EXCLUDED.rate, updated_at = clock_timestamp()
 WHERE LEAST(EXCLUDED.capacity, b.tokens + EXCLUDED.rate * EXTRACT(EPOCH FROM clock_timestamp() - b.updated_at))
       >= %(count)s
RETURNING tokens
"""
_LEVEL_SQL = f"""
SELECT LEAST(capacity, tokens + rate * EXTRACT(EPOCH FROM clock_timestamp() - updated_at)) FROM {_TABLE}
 WHERE provider = %s
"""


def limit_for(provider: str) -> tuple[float, float]:
    """(rate per second, burst capacity) from NOTIFICATIONS_RATE_LIMITS; rate 0 means unlimited."""
    rate = float(settings.NOTIFICATIONS_RATE_LIMITS.get(provider, 0))
    return rate, max(rate * settings.NOTIFICATIONS_RATE_BURST_SECONDS, 1.0)


def take(*, provider: str, count: int) -> float:
    """Block until `count` tokens are taken from `provider`'s bucket; returns the seconds waited.

    Runs in autocommit, outside any transaction, so the row is locked only for the statement."""
    rate, capacity = limit_for(provider)
    if rate <= 0 or count <= 0:
        return 0.0
    waited = 0.0
    remaining = count
    while remaining > 0:
        portion = min(remaining, int(capacity))
        params = {"provider": provider, "capacity": capacity, "rate": rate, "count": portion}
        with connection.cursor() as cursor:
            cursor.execute(_TAKE_SQL, params)
            if cursor.fetchone() is not None:
                remaining -= portion
                continue
            cursor.execute(_LEVEL_SQL, [provider])
            level = cursor.fetchone()[0]
        pause = max((portion - float(level)) / rate, 0.005)
        time.sleep(pause)
        waited += pause
    return waited
