"""The mobile API under load: the campaign list and pledge creation at 32 concurrent connections
on gunicorn with 2 workers (as `make run` serves it), beside a trivial endpoint in the same run.

The load generator is plain Python: 32 threads, each with its own keep-alive `requests` session,
for a fixed time per endpoint after a short warm-up. The trivial endpoint is an unknown URL under
/api/v1/ (URL resolution and the JSON error body, no database): the ceiling the others compare to.
Run alone: `.venv/bin/python -m bench.api_bench` (writes the "API" section of docs/benchmarks.md).
"""

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import requests

# A database of its own when run alone, so it never meets another benchmark's tables.
os.environ.setdefault("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/crowdfund_bench_api")

from bench.harness import ROOT, machine, percentile, setup_django, write_section  # noqa: E402

CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "32"))
WORKERS = int(os.environ.get("BENCH_WEB_WORKERS", "2"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "10"))
WARMUP_SECONDS = 2.0
CAMPAIGNS = 200


def _seed() -> dict:
    """Campaigns to list, one live campaign to pledge to, and a backer (with a token) per thread."""
    from decimal import Decimal

    from rest_framework_simplejwt.tokens import RefreshToken

    from crowdfund.accounts.models import User
    from crowdfund.campaigns import services as campaigns
    from crowdfund.campaigns.models import Campaign

    creator, _ = User.objects.get_or_create(email="bench-creator@example.com")
    if Campaign.objects.filter(creator=creator).count() < CAMPAIGNS:
        for n in range(CAMPAIGNS):
            campaign = campaigns.campaign_create(
                creator=creator,
                title=f"Bench campaign {n}",
                description="Load test",
                goal_amount=Decimal("1000.00"),
                currency="EUR",
                deadline=_in_days(60),
            )
            campaigns.campaign_publish(campaign=campaign)
    target = Campaign.objects.filter(creator=creator).first()
    reward = target.rewards.first() or campaigns.reward_create(
        campaign=target, title="Everyone", minimum_amount=Decimal("5.00")
    )
    backers = [User.objects.get_or_create(email=f"bench-backer{i}@example.com")[0] for i in range(CONNECTIONS)]
    tokens = [str(RefreshToken.for_user(backer).access_token) for backer in backers]
    return {"campaign": str(target.id), "reward": str(reward.id), "tokens": tokens}


def _in_days(days: int):
    from datetime import timedelta

    from django.utils import timezone

    return timezone.now() + timedelta(days=days)


def _start_gunicorn() -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = open(ROOT / "var" / "bench-gunicorn.log", "w")  # noqa: SIM115 - lives as long as gunicorn
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "config.wsgi", "--bind", f"127.0.0.1:{port}",
         "--workers", str(WORKERS)],
        cwd=ROOT, env={**os.environ}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.get(f"{base}/api/v1/ping", timeout=1)
            return process, base
        except requests.ConnectionError:
            time.sleep(0.2)
    process.terminate()
    raise RuntimeError("gunicorn did not start; see var/bench-gunicorn.log")


def _load(make_request, expected_status: int) -> dict:
    """CONNECTIONS threads send requests back to back; latencies are kept after the warm-up."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    started = time.monotonic()
    measure_from, stop_at = started + WARMUP_SECONDS, started + WARMUP_SECONDS + SECONDS

    def worker(index: int) -> None:
        session, mine, bad = requests.Session(), [], 0
        while (now := time.monotonic()) < stop_at:
            response = make_request(session, index)
            took = time.monotonic() - now
            if now >= measure_from:
                mine.append(took)
                bad += response.status_code != expected_status
        with lock:
            latencies.extend(mine)
            errors[0] += bad

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(CONNECTIONS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    latencies.sort()
    return {
        "requests": len(latencies),
        "rps": len(latencies) / SECONDS,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "errors": errors[0],
    }


def _scenarios(base: str, seed: dict) -> list[tuple[str, object, int]]:
    pledges_url = f"{base}/api/v1/campaigns/{seed['campaign']}/pledges"

    def pledge(body):
        def send(session, index):
            headers = {"Authorization": f"Bearer {seed['tokens'][index]}", "Idempotency-Key": uuid.uuid4().hex}
            return session.post(pledges_url, json=body, headers=headers, timeout=30)

        return send

    return [
        ("trivial: unknown URL, JSON 404, no database", lambda s, i: s.get(f"{base}/api/v1/ping", timeout=30), 404),
        ("GET /api/v1/campaigns (20 per page)", lambda s, i: s.get(f"{base}/api/v1/campaigns", timeout=30), 200),
        ("POST pledge, no reward", pledge({"amount": "10.00"}), 201),
        ("POST pledge, all on one reward (its row lock)", pledge({"amount": "10.00", "reward": seed["reward"]}), 201),
    ]


def run() -> str:
    """Measure every scenario and return the markdown section for docs/benchmarks.md."""
    seed = _seed()
    gunicorn, base = _start_gunicorn()
    try:
        results = []
        for name, make_request, expected in _scenarios(base, seed):
            print(f"API: {name} ...", flush=True)
            results.append((name, _load(make_request, expected)))
    finally:
        gunicorn.terminate()
        gunicorn.wait(30)
    return _section(results)


def _section(results) -> str:
    lines = [
        "## API",
        "",
        f"gunicorn (`config.wsgi`, {WORKERS} sync workers, DEBUG off) on loopback, PostgreSQL on the same machine; "
        f"{CONNECTIONS} concurrent connections (Python threads with keep-alive `requests` sessions), "
        f"{SECONDS:.0f} s per endpoint after a {WARMUP_SECONDS:.0f} s warm-up. "
        "Command: `.venv/bin/python -m bench.api_bench`.",
        "",
        f"Machine: {machine()}; the load generator runs on the same cores, so the figures are a floor.",
        "",
        "| endpoint | requests/s | p50 (ms) | p99 (ms) | requests | unexpected status |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results:
        lines.append(
            f"| {name} | {r['rps']:,.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['requests']:,} | {r['errors']} |"
        )
    return "\n".join([*lines, ""])


if __name__ == "__main__":
    setup_django()
    section = run()
    print(section)
    print(f"Machine: {machine()}")
    print(f"Wrote {write_section(section)}")
