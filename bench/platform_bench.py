"""Drain rate of 20,000 tasks that each insert one row: plain Celery versus the task platform.

Both sides use the same worker settings (prefork, 2 processes, late acks, connection reuse); the
platform side is enqueued through `task_enqueue_many` (then published by the dispatcher's pass,
run in this process) and keeps its ledger up to date. Rounds alternate so that machine noise hits
both alike; the ratio is the median of the rounds' ratios.
Run alone: `make bench` (or `.venv/bin/python -m bench.platform_bench`).
"""

import os
import statistics
import time

from bench.harness import setup_django, start_worker

TASKS = int(os.environ.get("BENCH_TASKS", "20000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
TARGET_RATIO = 0.80


def _reset() -> None:
    from django.db import connection

    from config.celery import app

    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE IF NOT EXISTS bench_rows "
            "(id bigserial PRIMARY KEY, n integer NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())"
        )
        cursor.execute("TRUNCATE bench_rows, tasks_taskrecord")
        # PostgreSQL checkpoints every 5 minutes (checkpoint_timeout), slowing every commit while it
        # writes; one now means none falls inside the drain that follows, on either side.
        cursor.execute("CHECKPOINT")
    app.control.purge()


def _enqueue(kind: str) -> float:
    from django.db import transaction

    from bench import bench_tasks
    from config.celery import app
    from tasks.services import task_enqueue_many, task_records_publish_pending

    started = time.perf_counter()
    if kind == "plain":
        with app.producer_or_acquire() as producer:
            for n in range(TASKS):
                bench_tasks.plain_insert.apply_async(args=(n,), producer=producer)
    else:
        with transaction.atomic():
            task_enqueue_many(bench_tasks.platform_insert, kwargs_list=({"n": n} for n in range(TASKS)))
        # The dispatcher's pass, run here: every task is published before the worker starts, as
        # on the plain side.
        task_records_publish_pending()
    return time.perf_counter() - started


def _drain_rate() -> float:
    """Tasks per second between the first and the last insert, the worker already warm."""
    from django.db import connection

    worker = start_worker(queues="default", concurrency=2)
    try:
        deadline = time.monotonic() + 600
        while True:
            with connection.cursor() as cursor:
                cursor.execute("SELECT count(*), extract(epoch FROM max(at) - min(at)) FROM bench_rows")
                count, span = cursor.fetchone()
            if count >= TASKS:
                return (count - 1) / float(span)
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {count} of {TASKS} tasks ran in 10 minutes")
            time.sleep(0.5)
    finally:
        worker.stop()


def measure(kind: str) -> dict:
    _reset()
    enqueue_seconds = _enqueue(kind)
    rate = _drain_rate()
    result = {"kind": kind, "enqueue_per_s": TASKS / enqueue_seconds, "drain_per_s": rate}
    if kind == "platform":
        from tasks.models import TaskRecord, TaskState

        result["succeeded_records"] = TaskRecord.objects.filter(state=TaskState.SUCCEEDED).count()
    print(f"  {kind:>8}: enqueue {result['enqueue_per_s']:,.0f}/s, drain {rate:,.0f} tasks/s", flush=True)
    return result


def run() -> str:
    """Run the rounds and return the markdown section for docs/benchmarks.md."""
    print(f"Task platform: draining {TASKS:,} one-insert tasks, {ROUNDS} alternating rounds", flush=True)
    rounds = [(measure("plain"), measure("platform")) for _ in range(ROUNDS)]
    ratios = [platform["drain_per_s"] / plain["drain_per_s"] for plain, platform in rounds]
    ratio = statistics.median(ratios)
    lines = [
        "## Task platform: drain rate (issue 3)",
        "",
        f"{TASKS:,} tasks that each insert one PostgreSQL row, drained by one prefork worker with 2 processes "
        "(late acks, connection reuse), plain Celery versus the same through the platform (ledger row written "
        "in the enqueuing transaction, claimed and finished by the worker). Rounds alternate.",
        "",
        "| round | plain Celery drain (tasks/s) | platform drain (tasks/s) | ratio "
        "| plain enqueue (/s) | platform enqueue (/s) | ledger rows succeeded |",
        "|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for number, ((plain, platform), r) in enumerate(zip(rounds, ratios, strict=True), start=1):
        lines.append(
            f"| {number} | {plain['drain_per_s']:,.0f} | {platform['drain_per_s']:,.0f} | {r:.3f} | "
            f"{plain['enqueue_per_s']:,.0f} | {platform['enqueue_per_s']:,.0f} | {platform['succeeded_records']:,} |"
        )
    verdict = "met" if ratio >= TARGET_RATIO else "NOT met"
    lines += ["", f"Median ratio **{ratio:.3f}** (target ≥ {TARGET_RATIO:.2f}: {verdict}).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    setup_django()
    print(run())
