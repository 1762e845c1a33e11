"""How PostgreSQL plans the fan-out's reads once the tables are large: statistics taken when
pending rows were rare (the steady state) must not send a claim through every pending row."""

import pytest
from django.db import connection

from crowdfund.notifications import services
from crowdfund.notifications.models import OutboxMessage, OutboxState
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

ROWS = 20_000

_INSERT = """
INSERT INTO notifications_outboxmessage
       (recipient_id, kind, subject, channel, state, error, context, attempts, claimed_by,
        provider_message_id, created_at, updated_at)
SELECT %s, 'creator_update_posted', %s || n, 'email', %s, '', '{}', 0, '', '', now(), now()
  FROM generate_series(1, %s) AS n
"""


def _plan(sql: str, params) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {sql}", params)
        return "\n".join(line for (line,) in cursor.fetchall())


def test_a_claim_during_a_big_fan_out_reads_its_rows_by_id_only():
    user = UserFactory()
    with connection.cursor() as cursor:
        cursor.execute(_INSERT, [user.id, "update:old-", OutboxState.SENT, ROWS])
        cursor.execute("ANALYZE notifications_outboxmessage")  # statistics: nothing is pending
        cursor.execute(_INSERT, [user.id, "update:new-", OutboxState.PENDING, ROWS])  # then a fan-out
    ids = list(OutboxMessage.objects.filter(state=OutboxState.PENDING).order_by("id").values_list("id", flat=True)[:10])

    claimable = OutboxMessage.objects.filter(id__in=ids, state=OutboxState.PENDING).order_by("id")
    claim = _plan(services._CLAIM_SQL, {**services._outcome_params([], count_attempt=False), "run_id": "r",
                                        "claim_ids": ids})  # fmt: skip

    for plan in (claimable.explain(), claim):
        assert "notifications_outboxmessage_pkey" in plan
        assert "outbox_state_idx" not in plan, plan
