"""Load test of the mobile API mix with locust, headless, against the real stack: gunicorn (2
workers), a worker for payments/notifications/default and one for reports, PostgreSQL, RabbitMQ.
The mix (bench/locustfile.py): browse campaigns, open one, pledge, confirm the payment through the
sandbox (which posts the signed webhook back over HTTP), read the pledge; creators poll a report.

Run alone: `make bench BENCH=load_test` (writes only its section of docs/benchmarks.md when run
through bench.run_all with other benchmarks, or merges it when run alone).
"""

import csv
import os
import secrets
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

from bench.harness import ROOT, machine, setup_django, start_worker, stop, write_section

USERS = int(os.environ.get("BENCH_LOAD_USERS", "32"))
SECONDS = int(os.environ.get("BENCH_LOAD_SECONDS", "60"))
CAMPAIGNS = 20
CREATOR_PASSWORD = secrets.token_urlsafe(12)


def _seed() -> dict:
    from datetime import timedelta

    from django.utils import timezone

    from crowdfund.accounts.models import User
    from crowdfund.campaigns import services as campaigns

    creator, _ = User.objects.get_or_create(email="load-creator@example.org", defaults={"display_name": "Load"})
    creator.set_password(CREATOR_PASSWORD)
    creator.save()
    ids = []
    for n in range(CAMPAIGNS):
        campaign = campaigns.campaign_create(
            creator=creator, title=f"Load campaign {n}", description="Load test", goal_amount=Decimal("5000.00"),
            currency="EUR", deadline=timezone.now() + timedelta(days=30),
        )  # fmt: skip
        ids.append(str(campaigns.campaign_publish(campaign=campaign).id))
    return {"campaigns": ids, "creator": creator.email}


def _paid_share(campaign_ids) -> tuple[int, int]:
    from crowdfund.pledges.models import Pledge, PledgeStatus

    pledges = Pledge.objects.filter(campaign_id__in=campaign_ids)
    return pledges.filter(status__in=[PledgeStatus.PAID, PledgeStatus.FAILED]).count(), pledges.count()


def run() -> str:
    from bench import web

    os.environ.update(
        AUTH_THROTTLE_RATE="1000000/minute",  # every simulated user registers from 127.0.0.1
        PAYMENTS_SANDBOX_ENABLED="true",
        PAYMENTS_SANDBOX_WEBHOOK_SECRET=os.environ.get("PAYMENTS_SANDBOX_WEBHOOK_SECRET") or secrets.token_hex(16),
    )
    seed = _seed()
    gunicorn, base = web.start_gunicorn(log_name="bench-load-gunicorn")
    os.environ["PAYMENTS_SANDBOX_WEBHOOK_URL"] = f"{base}/api/v1/payments/webhooks/sandbox"
    workers = [
        start_worker(queues="payments,notifications,default", concurrency=2, hostname="load-main"),
        start_worker(queues="reports", concurrency=1, hostname="load-reports"),
    ]
    try:
        stats = _locust(base, seed)
        deadline = time.monotonic() + 120
        while (share := _paid_share(seed["campaigns"]))[0] < share[1] and time.monotonic() < deadline:
            time.sleep(1)
    finally:
        for worker in workers:
            worker.stop()
        stop(gunicorn)
    return _section(stats, share)


def _locust(base: str, seed: dict) -> list[dict]:
    prefix = ROOT / "var" / "locust"
    env = {
        **os.environ,
        "LOAD_CAMPAIGN_IDS": ",".join(seed["campaigns"]),
        "LOAD_CREATOR_EMAIL": seed["creator"],
        "LOAD_CREATOR_PASSWORD": CREATOR_PASSWORD,
        "LOAD_CREATOR_CAMPAIGN": seed["campaigns"][0],
    }
    print(f"Load test: {USERS} users for {SECONDS} s against {base}", flush=True)
    subprocess.run(
        [str(Path(sys.executable).parent / "locust"), "-f", str(ROOT / "bench" / "locustfile.py"), "--headless",
         "-u", str(USERS), "-r", str(max(USERS // 4, 1)), "-t", f"{SECONDS}s", "--host", base,
         "--csv", str(prefix), "--only-summary", "--loglevel", "WARNING"],
        cwd=ROOT, env=env, check=False,
    )  # fmt: skip
    with open(f"{prefix}_stats.csv") as stats:
        return list(csv.DictReader(stats))


def _section(stats: list[dict], share: tuple[int, int]) -> str:
    lines = [
        "## Load test: the mobile API mix (locust)",
        "",
        f"locust, headless, {USERS} users for {SECONDS} s (spawned {max(USERS // 4, 1)}/s), against gunicorn "
        "(2 workers), one worker for payments/notifications/default (2 processes) and one for reports, PostgreSQL "
        "and RabbitMQ, all on this machine (locust shares its cores). Mix per backer: browse 5, open 3, pledge + "
        "sandbox confirm + read the pledge 1; one user in ten is a creator polling a backers report. "
        "Command: `make bench BENCH=load_test`.",
        "",
        f"Machine: {machine()}.",
        "",
        "| endpoint | requests | failures | requests/s | p50 (ms) | p95 (ms) | p99 (ms) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in stats:
        lines.append(
            f"| {row['Type']} {row['Name']} | {int(row['Request Count']):,} | {int(row['Failure Count']):,} | "
            f"{float(row['Requests/s']):.1f} | {row['50%']} | {row['95%']} | {row['99%']} |"
        )
    done, total = share
    lines += ["", f"Pledges created: {total:,}; paid or failed through the webhook flow by the end: {done:,}.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    setup_django()
    print(f"Wrote {write_section(run())}")
