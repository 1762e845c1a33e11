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

from bench.harness import CpuMeter, setup_django, start_worker

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


def _drain() -> dict:
    """Tasks per second between the first and the last insert, the worker already warm; and the
    CPU time per task, in microseconds, of the worker's processes, PostgreSQL and RabbitMQ over
    the same span (as the database saw it, polled every half second)."""
    from django.db import connection

    worker = start_worker(queues="default", concurrency=2)
    meter, first_count = CpuMeter(worker.worker.pid), None
    try:
        deadline = time.monotonic() + 600
        while True:
            with connection.cursor() as cursor:
                cursor.execute("SELECT count(*), extract(epoch FROM max(at) - min(at)) FROM bench_rows")
                count, span = cursor.fetchone()
            if first_count is None and count:
                meter.start()
                first_count = count
            if count >= TASKS:
                cpu = meter.seconds()
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {count} of {TASKS} tasks ran in 10 minutes")
            time.sleep(0.5)
    finally:
        worker.stop()
    per_task = {kind: seconds * 1e6 / (count - first_count) for kind, seconds in cpu.items() if kind != "busy"}
    return {"drain_per_s": (count - 1) / float(span), "cpu_us": per_task, "busy": cpu["busy"]}


def measure(kind: str) -> dict:
    _reset()
    enqueue_seconds = _enqueue(kind)
    result = {"kind": kind, "enqueue_per_s": TASKS / enqueue_seconds, **_drain()}
    if kind == "platform":
        from tasks.models import TaskRecord, TaskState

        result["succeeded_records"] = TaskRecord.objects.filter(state=TaskState.SUCCEEDED).count()
    cpu = ", ".join(f"{process} {us:,.0f}" for process, us in _cpu_per_task(result).items())
    print(
        f"  {kind:>8}: enqueue {result['enqueue_per_s']:,.0f}/s, drain {result['drain_per_s']:,.0f} tasks/s, "
        f"CPU µs/task: {cpu}, machine busy {result['busy']:.0%}",
        flush=True,
    )
    return result


def _cpu_per_task(result: dict) -> dict[str, float]:
    """CPU µs per task, in the report's column order: the worker's processes, PostgreSQL's,
    RabbitMQ's, and every process's."""
    cpu = result["cpu_us"]
    columns = {process: cpu.get(process, 0.0) for process in ("worker", "postgresql", "rabbitmq")}
    return {**columns, "all": sum(cpu.values())}


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
    lines += _cpu_section(rounds)
    return "\n".join(lines)


def _cpu_section(rounds) -> list[str]:
    """Where the time goes: CPU per task of each side, over the same drains."""
    lines = [
        "CPU time per task drained (µs), over the same drains: the worker's processes (main and children), "
        "PostgreSQL's, RabbitMQ's, and every process on the machine; and how busy the machine's 2 cores were.",
        "",
        "| round | side | worker | PostgreSQL | RabbitMQ | all | machine busy |",
        "|---|---|---|---|---|---|---|",
    ]
    for number, pair in enumerate(rounds, start=1):
        for result in pair:
            cpu = " | ".join(f"{us:,.0f}" for us in _cpu_per_task(result).values())
            lines.append(f"| {number} | {result['kind']} | {cpu} | {result['busy']:.0%} |")
    cpu = [(_cpu_per_task(plain), _cpu_per_task(platform)) for plain, platform in rounds]
    extra = {
        process: statistics.median(platform_cpu[process] - plain_cpu[process] for plain_cpu, platform_cpu in cpu)
        for process in ("worker", "postgresql", "all")
    }
    ceiling = statistics.median(plain_cpu["all"] / platform_cpu["all"] for plain_cpu, platform_cpu in cpu)
    lines += [
        "",
        f"The platform costs {extra['all']:,.0f} µs more CPU per task (median): {extra['postgresql']:,.0f} in "
        f"PostgreSQL (the claim and the success write), {extra['worker']:,.0f} in the worker. Were the drain "
        f"bound by CPU alone, its rate would be {ceiling:.3f} of plain Celery's (median of plain's CPU per task "
        "over the platform's); the machine is not fully busy on either side, and the platform's claim is one "
        "more round trip each run waits for.",
        "",
    ]
    return lines


if __name__ == "__main__":
    setup_django()
    print(run())
