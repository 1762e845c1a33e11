"""Payments under load, in one run: webhook ingest on gunicorn (2 workers, 32 connections, a
dispatcher publishing) beside the trivial endpoint and the store-only floor; the same events
processed synchronously inside the request with a simulated 50 ms provider call; and 20,000
events end to end (webhook → paid pledge, totals, receipt queued) with real workers, checking none
is lost and none applied twice.

Run alone: `.venv/bin/python -m bench.payments_bench` (writes the "Payments" section of
docs/benchmarks.md).
"""

import json
import os
import secrets
import time
import uuid

os.environ.setdefault("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/crowdfund_bench_pay")
# Production settings have no sandbox secret (every sandbox webhook would be refused): give it one.
os.environ.setdefault("PAYMENTS_SANDBOX_WEBHOOK_SECRET", secrets.token_hex(16))

from bench import web  # noqa: E402
from bench.harness import machine, run_alone, start_dispatcher, start_worker, stop  # noqa: E402

END_TO_END_EVENTS = int(os.environ.get("BENCH_PAYMENT_EVENTS", "20000"))
END_TO_END_CAMPAIGNS = 50
SYNC_PLEDGES = 3000
INGEST_EVENTS = 60_000  # more than a run posts: each event is new
WORKER_CONCURRENCY = int(os.environ.get("BENCH_PAYMENT_WORKERS", "4"))
# End to end, events are signed and posted in batches: a signature is refused after 300 seconds,
# and a busy machine can take longer than that to post 20,000.
SIGNED_BATCH = 5000
WEBHOOK_PATH = "/api/v1/payments/webhooks/sandbox"
SYNC_WEBHOOK_PATH = "/bench/sync-webhook"  # bench/urls.py
STORE_ONLY_PATH = "/bench/store-only"  # bench/urls.py


# --- Data -----------------------------------------------------------------------------------------


def _seed_pledges(count: int, campaigns: int, tag: str) -> tuple[list[tuple[str, str, str]], list]:
    """`count` pending pledges spread over `campaigns` live campaigns, each with its sandbox intent,
    inserted in bulk (the services would take minutes). Returns their events' (intent_id, amount,
    currency) and the campaigns' ids."""
    from datetime import timedelta
    from decimal import Decimal

    from django.utils import timezone

    from crowdfund.accounts.models import User
    from crowdfund.campaigns.models import Campaign, CampaignStatus
    from crowdfund.payments.models import SandboxIntent
    from crowdfund.pledges.models import Pledge

    creator, _ = User.objects.get_or_create(email="bench-pay-creator@example.com")
    backers = [User.objects.get_or_create(email=f"bench-pay-backer{i}@example.com")[0] for i in range(200)]
    deadline = timezone.now() + timedelta(days=30)
    targets = Campaign.objects.bulk_create(
        Campaign(creator=creator, title=f"{tag} {n}", goal_amount=Decimal("1000000"), currency="EUR",
                 deadline=deadline, status=CampaignStatus.LIVE)
        for n in range(campaigns)
    )  # fmt: skip
    intents, pledges = [], []
    for n in range(count):
        intent_id = f"pi_{secrets.token_hex(12)}"
        amount = Decimal(10 + n % 90)
        intents.append(SandboxIntent(intent_id=intent_id, client_secret="s", amount=amount, currency="EUR",
                                     idempotency_key=f"{tag}-{intent_id}", status="succeeded"))  # fmt: skip
        pledges.append(Pledge(campaign=targets[n % campaigns], backer=backers[n % len(backers)], amount=amount,
                              currency="EUR", idempotency_key=f"{tag}-{n}-{uuid.uuid4().hex}", request_fingerprint="b",
                              payment_provider="sandbox", payment_intent_id=intent_id))  # fmt: skip
    SandboxIntent.objects.bulk_create(intents, batch_size=2000)
    Pledge.objects.bulk_create(pledges, batch_size=2000)
    return [(intent.intent_id, f"{intent.amount:.2f}", "EUR") for intent in intents], [c.id for c in targets]


def _webhooks(path: str, events: list[tuple[str, str, str]]) -> list[tuple]:
    """A signed `payment.succeeded` request to `path` for each event, for web.load or web.send_once.
    Signed now: the endpoint refuses signatures older than 300 seconds, so sign just before sending."""
    from crowdfund.payments.providers.sandbox import SIGNATURE_HEADER, sign

    # This process may have loaded its settings before this module set the secret.
    secret = os.environ["PAYMENTS_SANDBOX_WEBHOOK_SECRET"]
    requests = []
    for intent_id, amount, currency in events:
        body = json.dumps({
            "id": f"evt_{secrets.token_hex(12)}", "type": "payment.succeeded", "created": int(time.time()),
            "data": {"intent_id": intent_id, "amount": amount, "currency": currency},
        })  # fmt: skip
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(body.encode(), secret=secret)}
        requests.append(("POST", path, body, headers))
    return requests


# --- The three measurements -----------------------------------------------------------------------


def _ingest(base: str, sync_events) -> list[tuple[str, dict]]:
    """The four endpoints one after the other, with a dispatcher running: it publishes what the
    webhooks enqueue, on the same cores (no worker takes the processing tasks)."""
    from django.db import connection

    from bench.urls import STORE_ONLY_TABLE

    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE IF NOT EXISTS {STORE_ONLY_TABLE} (id bigserial PRIMARY KEY, body text NOT NULL)")
    fake = [(f"pi_ingest_{uuid.uuid4().hex}", "10.00", "EUR") for _ in range(INGEST_EVENTS)]  # no pledge
    results = []
    dispatcher = start_dispatcher(log_name="bench-payments-dispatcher")
    try:
        for name, path, to_send in [
            ("trivial: DRF APIView, small JSON, no database", "/bench/trivial", None),
            ("store only: verify, one INSERT of the body (the floor, nothing enqueued)", STORE_ONLY_PATH,
             lambda: _webhooks(STORE_ONLY_PATH, fake)),
            ("webhook ingest: verify, store, enqueue (async)", WEBHOOK_PATH, lambda: _webhooks(WEBHOOK_PATH, fake)),
            ("same events processed in the request, 50 ms provider call (sync)", SYNC_WEBHOOK_PATH,
             lambda: _webhooks(SYNC_WEBHOOK_PATH, sync_events)),
        ]:  # fmt: skip
            print(f"Payments: {name} ...", flush=True)
            results.append((name, web.load(base + path, to_send and to_send())))
    finally:
        stop(dispatcher)
    return results


def _end_to_end(base: str, events, campaign_ids, *, workers: list[tuple[str, int]], path: str = WEBHOOK_PATH) -> dict:
    """Post every event once (wrk, CONNECTIONS connections, SIGNED_BATCH at a time) to `path` while
    `workers` (hostname, concurrency; none for the synchronous route) process them; wait until every
    pledge is paid, then check nothing was lost or applied twice. Times run from the first event
    stored to the last pledge paid; the webhook p99 is the worst batch's."""
    from django.db.models import Max, Min

    from crowdfund.campaigns.models import Campaign
    from crowdfund.notifications.models import NotificationKind, OutboxMessage
    from crowdfund.payments.models import PaymentEvent, PaymentEventState
    from crowdfund.payments.selectors import campaign_totals_mismatches
    from crowdfund.pledges.models import Pledge

    processes = [
        start_worker(queues="payments", concurrency=concurrency, include="bench.bench_tasks", hostname=hostname)
        for hostname, concurrency in workers
    ]
    pledges = Pledge.objects.filter(campaign__in=campaign_ids)
    try:
        batches = [events[i : i + SIGNED_BATCH] for i in range(0, len(events), SIGNED_BATCH)]
        posted = [web.send_once(base + path, _webhooks(path, batch)) for batch in batches]
        answered, errors = sum(p["requests"] for p in posted), sum(p["errors"] for p in posted)
        if answered < len(events) or errors:
            raise RuntimeError(f"{answered} webhooks answered, {errors} errors, for {len(events)} events; "
                               "see the gunicorn log in var/")  # fmt: skip
        deadline = time.monotonic() + 900
        while pledges.filter(status="paid").count() < len(events) and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        for process in processes:
            process.stop()
    stored = PaymentEvent.objects.filter(intent_id__in=[e[0] for e in events])
    paid = pledges.filter(status="paid")
    times = {**stored.aggregate(first=Min("received_at"), last_stored=Max("received_at")),
             **paid.aggregate(last_paid=Max("paid_at"))}  # fmt: skip
    seconds = (times["last_paid"] - times["first"]).total_seconds()
    return {
        "events": len(events),
        "ingest_seconds": (times["last_stored"] - times["first"]).total_seconds(),
        "seconds": seconds,
        "rate": len(events) / seconds,
        "post_p99_ms": max(p["p99_ms"] for p in posted),
        "accepted": answered - errors,
        "stored": stored.count(),
        "processed": stored.filter(state=PaymentEventState.PROCESSED).count(),
        "paid": paid.count(),
        "receipts": OutboxMessage.objects.filter(
            kind=NotificationKind.PLEDGE_RECEIPT, subject__in=[f"pledge:{p}" for p in paid.values_list("id", flat=True)]
        )
        .values("subject")
        .distinct()
        .count(),  # fmt: skip
        "totals_wrong": len(campaign_totals_mismatches(campaigns=Campaign.objects.filter(id__in=campaign_ids))),
    }


def run() -> str:
    from config.celery import app

    sync_events, _ = _seed_pledges(SYNC_PLEDGES, 10, "bench-pay-sync")
    e2e_events, e2e_campaigns = _seed_pledges(END_TO_END_EVENTS, END_TO_END_CAMPAIGNS, "bench-pay-e2e")
    gunicorn, base = web.start_gunicorn(log_name="bench-payments-gunicorn")
    try:
        ingest = _ingest(base, sync_events)
        app.control.purge()  # the ingest-only events' processing tasks: not part of what follows
        print(f"Payments: {len(e2e_events)} events end to end ...", flush=True)
        end_to_end = _end_to_end(base, e2e_events, e2e_campaigns,
                                 workers=[("bench-payments", WORKER_CONCURRENCY)])  # fmt: skip
        app.control.purge()  # the receipts' sending tasks (the notifications queue is not served here)
    finally:
        gunicorn.terminate()
        gunicorn.wait(30)
    return _section(ingest, end_to_end)


def _section(ingest, e2e) -> str:
    trivial, floor, asynchronous, synchronous = (r for _, r in ingest)
    lines = [
        "## Payments",
        "",
        f"gunicorn (the project's WSGI handler, {web.WORKERS} sync workers, DEBUG off) on loopback, "
        f"PostgreSQL and RabbitMQ on the same machine; wrk ({web.WRK_THREADS} threads, {web.CONNECTIONS} keep-alive "
        f"connections, each webhook a new event signed beforehand), {web.SECONDS:.0f} s per endpoint after a "
        f"{web.WARMUP_SECONDS:.0f} s warm-up. The trivial endpoint is a DRF APIView answering a small JSON. "
        "The store-only endpoint is the webhook's floor: the same signature check and parse, then one INSERT "
        "of the raw body in its own transaction, nothing enqueued. A dispatcher (`manage.py run_dispatcher`) "
        "runs throughout, on the same cores, publishing what the webhooks enqueue; no worker runs during these "
        "four. Command: `.venv/bin/python -m bench.payments_bench`.",
        "",
        f"Machine: {machine()}; the load generator and the workers share its cores.",
        "",
        "| endpoint | requests/s | p50 (ms) | p99 (ms) | requests | errors (status ≥ 400, socket) |",
        "|---|---|---|---|---|---|",
        *(f"| {name} | {r['rps']:,.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['requests']:,} | {r['errors']} |"
          for name, r in ingest),
        "",
        f"- Ingest vs trivial: {asynchronous['rps'] / trivial['rps']:.0%} of the trivial rate (target ≥ 60%); "
        f"p99 {asynchronous['p99_ms']:.1f} ms (target < 50 ms).",
        f"- The floor, storing the body and nothing else: {floor['rps'] / trivial['rps']:.0%} of the trivial rate, "
        f"p99 {floor['p99_ms']:.1f} ms. An ingest that loses nothing stores the event before it answers, so on "
        "this machine it cannot reach more than this; the webhook adds its task row and the publishing to RabbitMQ.",
        f"- Asynchronous vs synchronous: {asynchronous['rps'] / synchronous['rps']:.1f}× (target ≥ 20×).",
        "",
        f"End to end, {e2e['events']:,} `payment.succeeded` events for pledges of {END_TO_END_CAMPAIGNS} campaigns, "
        f"each posted once by wrk over {web.CONNECTIONS} connections while one worker (`-Q payments -c "
        f"{WORKER_CONCURRENCY}`, with its dispatcher) processes them: webhook → stored → task → pledge paid, totals "
        "updated, receipt "
        "queued. Times run from the first event stored to the last pledge paid. Events are signed and posted "
        f"{SIGNED_BATCH:,} at a time (signatures expire after 300 s); the webhook p99 is the worst batch's.",
        "",
        "| events | all stored after (s) | all paid after (s) | events/s | webhook p99 (ms) | accepted | stored "
        "| processed | paid | receipts queued | campaigns with wrong totals |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {e2e['events']:,} | {e2e['ingest_seconds']:.1f} | {e2e['seconds']:.1f} | {e2e['rate']:,.0f} "
        f"| {e2e['post_p99_ms']:.1f} "
        f"| {e2e['accepted']:,} | {e2e['stored']:,} | {e2e['processed']:,} | {e2e['paid']:,} | {e2e['receipts']:,} "
        f"| {e2e['totals_wrong']} |",
        "",
    ]  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    run_alone(run)
