"""Payments under load, in one run: webhook ingest on gunicorn (2 workers, 32 connections) beside
the trivial endpoint; the same events processed synchronously inside the request with a simulated
50 ms provider call; and 20,000 events end to end (webhook → paid pledge, totals, receipt queued)
with real workers, checking none is lost and none applied twice.

Run alone: `.venv/bin/python -m bench.payments_bench` (writes the "Payments" section of
docs/benchmarks.md).
"""

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import requests
from django.core.handlers.wsgi import WSGIHandler

os.environ.setdefault("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/crowdfund_bench_pay")
# Production settings have no sandbox secret (every sandbox webhook would be refused): give it one.
os.environ.setdefault("PAYMENTS_SANDBOX_WEBHOOK_SECRET", secrets.token_hex(16))

from bench import api_bench  # noqa: E402
from bench.harness import ROOT, machine, setup_django, start_worker, stop, write_section  # noqa: E402

END_TO_END_EVENTS = int(os.environ.get("BENCH_PAYMENT_EVENTS", "20000"))
END_TO_END_CAMPAIGNS = 50
SYNC_PLEDGES = 3000
PROVIDER_CALL_SECONDS = 0.05
WORKER_CONCURRENCY = int(os.environ.get("BENCH_PAYMENT_WORKERS", "4"))


# --- The synchronous design, for comparison: served by the same gunicorn, under its own URL --------


def sync_webhook(request):
    """Store the event and apply it inside the request, after a provider call (simulated): what
    the platform's asynchronous ingest avoids."""
    from django.http import JsonResponse

    from crowdfund.payments import services
    from crowdfund.payments.models import PaymentEvent
    from crowdfund.payments.providers import get_provider

    body = request.body
    services.webhook_receive(provider=get_provider("sandbox"), body=body, headers=request.headers)
    time.sleep(PROVIDER_CALL_SECONDS)  # e.g. retrieving the intent to double-check it
    event = PaymentEvent.objects.get(provider="sandbox", event_id=json.loads(body)["id"])
    services.payment_event_apply(event_id=event.id)
    return JsonResponse({"received": True})


class _BenchHandler(WSGIHandler):
    """The project's WSGI handler, with this module as the URLconf: the project's URLs plus the
    synchronous webhook, all served by the same gunicorn."""

    def get_response(self, request):
        request.urlconf = __name__
        return super().get_response(request)


_handler = None


def application(environ, start_response):  # gunicorn bench.payments_bench:application
    global _handler
    if _handler is None:
        import django

        django.setup(set_prefix=False)
        _handler = _BenchHandler()
    return _handler(environ, start_response)


def _urlpatterns():
    from django.urls import include, path
    from django.views.decorators.csrf import csrf_exempt

    return [path("bench/sync-webhook", csrf_exempt(sync_webhook)), path("", include("config.urls"))]


def __getattr__(name):  # this module doubles as the bench URLconf (ROOT_URLCONF=bench.payments_bench)
    if name == "urlpatterns":
        return _urlpatterns()
    raise AttributeError(name)


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


def _signed(intent_id: str, amount: str, currency: str) -> tuple[bytes, dict]:
    from crowdfund.payments.providers.sandbox import sign

    body = json.dumps({
        "id": f"evt_{secrets.token_hex(12)}", "type": "payment.succeeded", "created": int(time.time()),
        "data": {"intent_id": intent_id, "amount": amount, "currency": currency},
    }).encode()  # fmt: skip
    return body, {"Content-Type": "application/json", "Sandbox-Signature": sign(body)}


def _post_each(url: str, events: list[tuple[str, str, str]]):
    """A request sender for api_bench._load that posts the next event of `events` each time."""
    import itertools
    import threading

    counter, lock = itertools.count(), threading.Lock()

    def send(session, index):
        with lock:
            n = next(counter)
        body, headers = _signed(*events[n % len(events)]) if n < len(events) else _signed(f"pi_x{n}", "1.00", "EUR")
        return session.post(url, data=body, headers=headers, timeout=30)

    return send


# --- The three measurements -----------------------------------------------------------------------


def _ingest(base: str, sync_events) -> list[tuple[str, dict]]:
    fake = [(f"pi_ingest_{n}", "10.00", "EUR") for n in range(10**6)]  # no pledge: ingest only
    results = []
    for name, url, events in [
        ("trivial: unknown URL, JSON 404, no database", None, None),
        ("webhook ingest: verify, store, enqueue (async)", f"{base}/api/v1/payments/webhooks/sandbox", fake),
        ("same events processed in the request, 50 ms provider call (sync)", f"{base}/bench/sync-webhook",
         sync_events),
    ]:  # fmt: skip
        print(f"Payments: {name} ...", flush=True)
        if url is None:
            send, expected = (lambda s, i: s.get(f"{base}/api/v1/ping", timeout=30)), 404
        else:
            send, expected = _post_each(url, events), 200
        results.append((name, api_bench._load(send, expected)))
    return results


def _end_to_end(base: str, events, campaign_ids) -> dict:
    """Post every event (32 connections) while real workers process them; time until every
    pledge is paid, then check nothing was lost or applied twice."""
    import threading

    from crowdfund.campaigns.models import Campaign
    from crowdfund.notifications.models import NotificationKind, OutboxMessage
    from crowdfund.payments.models import PaymentEvent, PaymentEventState
    from crowdfund.payments.selectors import campaign_totals_mismatches
    from crowdfund.pledges.models import Pledge

    print(f"Payments: {len(events)} events end to end ...", flush=True)
    worker = start_worker(queues="payments", concurrency=WORKER_CONCURRENCY, include="bench.bench_tasks",
                          hostname="bench-payments")  # fmt: skip
    pledges = Pledge.objects.filter(campaign__in=campaign_ids)
    statuses, chunks = [], [events[i :: api_bench.CONNECTIONS] for i in range(api_bench.CONNECTIONS)]
    started = time.monotonic()

    def post_all(mine):
        session = requests.Session()
        url = f"{base}/api/v1/payments/webhooks/sandbox"
        statuses.extend(session.post(url, data=b, headers=h, timeout=30).status_code for b, h in map(
            lambda e: _signed(*e), mine))  # fmt: skip

    threads = [threading.Thread(target=post_all, args=(chunk,)) for chunk in chunks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    posted = time.monotonic() - started
    if statuses.count(200) != len(events):
        stop(worker)
        raise RuntimeError(f"only {statuses.count(200)} of {len(events)} webhooks accepted; see the gunicorn log")
    deadline = time.monotonic() + 900
    while pledges.filter(status="paid").count() < len(events) and time.monotonic() < deadline:
        time.sleep(0.5)
    elapsed = time.monotonic() - started
    stop(worker)
    intent_ids = [e[0] for e in events]
    stored = PaymentEvent.objects.filter(intent_id__in=intent_ids)
    paid = pledges.filter(status="paid")
    return {
        "events": len(events),
        "ingest_seconds": posted,
        "seconds": elapsed,
        "rate": len(events) / elapsed,
        "accepted": statuses.count(200),
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


def _start_gunicorn_with_sync_route():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = open(ROOT / "var" / "bench-payments-gunicorn.log", "w")  # noqa: SIM115 - lives as long as gunicorn
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "bench.payments_bench:application", "--bind",
         f"127.0.0.1:{port}", "--workers", str(api_bench.WORKERS)],
        cwd=ROOT, env={**os.environ}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    for _ in range(150):
        try:
            requests.get(f"{base}/api/v1/ping", timeout=1)
            return process, base
        except requests.RequestException:  # not listening yet, or still loading Django
            time.sleep(0.2)
    process.terminate()
    raise RuntimeError("gunicorn did not start; see var/bench-payments-gunicorn.log")


def run() -> str:
    from config.celery import app

    sync_events, _ = _seed_pledges(SYNC_PLEDGES, 10, "bench-pay-sync")
    e2e_events, e2e_campaigns = _seed_pledges(END_TO_END_EVENTS, END_TO_END_CAMPAIGNS, "bench-pay-e2e")
    gunicorn, base = _start_gunicorn_with_sync_route()
    try:
        ingest = _ingest(base, sync_events)
        app.control.purge()  # the ingest-only events' processing tasks: not part of what follows
        end_to_end = _end_to_end(base, e2e_events, e2e_campaigns)
        app.control.purge()  # the receipts' sending tasks (the notifications queue is not served here)
    finally:
        gunicorn.terminate()
        gunicorn.wait(30)
    return _section(ingest, end_to_end)


def _section(ingest, e2e) -> str:
    trivial, asynchronous, synchronous = (r for _, r in ingest)
    lines = [
        "## Payments",
        "",
        f"gunicorn (the project's WSGI handler, {api_bench.WORKERS} sync workers, DEBUG off) on loopback, "
        f"PostgreSQL and RabbitMQ on the same machine; {api_bench.CONNECTIONS} concurrent connections, "
        f"{api_bench.SECONDS:.0f} s per endpoint after a {api_bench.WARMUP_SECONDS:.0f} s warm-up. "
        "Command: `.venv/bin/python -m bench.payments_bench`.",
        "",
        f"Machine: {machine()}; the load generator and the workers share its cores.",
        "",
        "| endpoint | requests/s | p50 (ms) | p99 (ms) | requests | unexpected status |",
        "|---|---|---|---|---|---|",
        *(f"| {name} | {r['rps']:,.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['requests']:,} | {r['errors']} |"
          for name, r in ingest),
        "",
        f"- Ingest vs trivial: {asynchronous['rps'] / trivial['rps']:.0%} of the trivial rate (target ≥ 60%); "
        f"p99 {asynchronous['p99_ms']:.1f} ms (target < 50 ms).",
        f"- Asynchronous vs synchronous: {asynchronous['rps'] / synchronous['rps']:.1f}× (target ≥ 20×).",
        "",
        f"End to end, {e2e['events']:,} `payment.succeeded` events for pledges of {END_TO_END_CAMPAIGNS} campaigns, "
        f"posted over {api_bench.CONNECTIONS} connections while one worker (`-Q payments -c {WORKER_CONCURRENCY}`) "
        "processes them: webhook → stored → task → pledge paid, totals updated, receipt queued.",
        "",
        "| events | all posted after (s) | all paid after (s) | events/s | accepted | stored | processed | paid "
        "| receipts queued | campaigns with wrong totals |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| {e2e['events']:,} | {e2e['ingest_seconds']:.1f} | {e2e['seconds']:.1f} | {e2e['rate']:,.0f} "
        f"| {e2e['accepted']:,} | {e2e['stored']:,} | {e2e['processed']:,} | {e2e['paid']:,} | {e2e['receipts']:,} "
        f"| {e2e['totals_wrong']} |",
        "",
    ]  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    setup_django()
    section = run()
    print(section)
    print(f"Wrote {write_section(section)}")
