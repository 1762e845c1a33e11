"""The classic comparison for this kind of system (issue 8), in one run: the same pledge-and-payment
work (a `payment.succeeded` webhook → pledge paid, campaign totals, receipt queued) done
synchronously inside the requests, through a single-machine asynchronous queue with one worker
process, and through several worker processes consuming the same queue.

Each design gets its own freshly seeded pending pledges, each event posted once by wrk over 32
connections to the same gunicorn (2 workers); events/s run from the first event stored to the last
pledge paid, and every run is checked: none lost, none applied twice, totals right.
Run alone: `.venv/bin/python -m bench.classic_comparison` (writes its section of docs/benchmarks.md).
"""

import os

from bench import payments_bench, web
from bench.harness import machine, run_alone

SYNC_EVENTS = int(os.environ.get("BENCH_CLASSIC_SYNC_EVENTS", "500"))
ASYNC_EVENTS = int(os.environ.get("BENCH_CLASSIC_EVENTS", "5000"))
CAMPAIGNS = 20
# Two cores: two worker nodes of two processes each, so four processes overlap their database
# round trips, as two small machines would.
SEVERAL_WORKERS = [("bench-classic-a", 2), ("bench-classic-b", 2)]


def run() -> str:
    from config.celery import app

    designs = [
        ("synchronous: processed in the request, 50 ms provider call", SYNC_EVENTS, [],
         payments_bench.SYNC_WEBHOOK_PATH),
        ("asynchronous, one worker process (`-Q payments -c 1`)", ASYNC_EVENTS, [("bench-classic", 1)],
         payments_bench.WEBHOOK_PATH),
        (f"asynchronous, {len(SEVERAL_WORKERS)} worker nodes × `-Q payments -c {SEVERAL_WORKERS[0][1]}`",
         ASYNC_EVENTS, SEVERAL_WORKERS, payments_bench.WEBHOOK_PATH),
    ]  # fmt: skip
    seeded = [payments_bench._seed_pledges(events, CAMPAIGNS, f"bench-classic-{n}") for n, (_, events, *_) in
              enumerate(designs)]  # fmt: skip
    gunicorn, base = web.start_gunicorn(log_name="bench-classic-gunicorn")
    results = []
    try:
        for (name, _, workers, path), (events, campaign_ids) in zip(designs, seeded, strict=True):
            app.control.purge()  # what the previous design left queued (the sync route enqueues too)
            print(f"Classic comparison: {name}, {len(events):,} events ...", flush=True)
            results.append((name, payments_bench._end_to_end(base, events, campaign_ids, workers=workers, path=path)))
        app.control.purge()
    finally:
        gunicorn.terminate()
        gunicorn.wait(30)
    return _section(results)


def _section(results) -> str:
    sync_rate = results[0][1]["rate"]
    lines = [
        "## Classic comparison: synchronous, one worker, several workers",
        "",
        "The same work for each design, on freshly seeded pending pledges: a signed `payment.succeeded` webhook "
        "→ pledge paid, campaign totals updated, receipt queued. Each event is posted once by wrk over "
        f"{web.CONNECTIONS} connections to gunicorn ({web.WORKERS} sync workers, DEBUG off); synchronously, the "
        "request stores and applies the event after a simulated 50 ms provider call; asynchronously, it "
        "verifies, stores and enqueues, and the workers on the `payments` queue apply it. "
        "Events/s run from the first event stored to the last pledge paid. "
        "Command: `.venv/bin/python -m bench.classic_comparison` (or `make bench BENCH=classic_comparison`).",
        "",
        f"Machine: {machine()}; gunicorn, the workers, wrk, PostgreSQL and RabbitMQ share its cores.",
        "",
        "| design | events | events/s | × synchronous | webhook p99 (ms) | accepted | stored | processed | paid "
        "| receipts queued | campaigns with wrong totals |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *(f"| {name} | {r['events']:,} | {r['rate']:,.0f} | {r['rate'] / sync_rate:.1f} | {r['post_p99_ms']:.1f} "
          f"| {r['accepted']:,} | {r['stored']:,} | {r['processed']:,} | {r['paid']:,} | {r['receipts']:,} "
          f"| {r['totals_wrong']} |" for name, r in results),
        "",
        "None lost and none applied twice when, on every line, accepted, stored, processed, paid and receipts "
        "queued all equal the events, and no campaign's totals are wrong.",
        "",
    ]  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    run_alone(run)
