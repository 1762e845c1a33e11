"""The mobile API under load: the campaign list and pledge creation at 32 concurrent connections
on gunicorn with 2 workers (as `make run` serves it), beside a trivial endpoint in the same run.

The load generator is wrk (bench/web.py), for a fixed time per endpoint after a short warm-up.
The trivial endpoint is a DRF APIView answering a small JSON (bench/urls.py, no database): the
ceiling the others compare to. Run alone: `.venv/bin/python -m bench.api_bench` (writes the "API"
section of docs/benchmarks.md).
"""

import json
import os
import uuid

# A database of its own when run alone, so it never meets another benchmark's tables.
os.environ.setdefault("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/crowdfund_bench_api")

from bench import web  # noqa: E402
from bench.harness import machine, setup_django, write_section  # noqa: E402

CAMPAIGNS = 200
PLEDGE_REQUESTS = 20_000  # more than a run sends: each pledge has its own idempotency key


def _seed() -> dict:
    """Campaigns to list, one live campaign to pledge to, and a backer (with a token) per connection."""
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
    backers = [User.objects.get_or_create(email=f"bench-backer{i}@example.com")[0] for i in range(web.CONNECTIONS)]
    tokens = [str(RefreshToken.for_user(backer).access_token) for backer in backers]
    return {"campaign": str(target.id), "reward": str(reward.id), "tokens": tokens}


def _in_days(days: int):
    from datetime import timedelta

    from django.utils import timezone

    return timezone.now() + timedelta(days=days)


def _scenarios(base: str, seed: dict) -> list[tuple[str, str, list | None]]:
    pledges_path = f"/api/v1/campaigns/{seed['campaign']}/pledges"

    def pledges(body: dict) -> list[tuple]:
        tokens = seed["tokens"]
        return [
            ("POST", pledges_path, json.dumps(body), {"Content-Type": "application/json",
             "Authorization": f"Bearer {tokens[n % len(tokens)]}", "Idempotency-Key": uuid.uuid4().hex})
            for n in range(PLEDGE_REQUESTS)
        ]  # fmt: skip

    return [
        ("trivial: DRF APIView, small JSON, no database", f"{base}/bench/trivial", None),
        ("GET /api/v1/campaigns (20 per page)", f"{base}/api/v1/campaigns", None),
        ("POST pledge, no reward", base + pledges_path, pledges({"amount": "10.00"})),
        ("POST pledge, all on one reward (its row lock)", base + pledges_path,
         pledges({"amount": "10.00", "reward": seed["reward"]})),
    ]  # fmt: skip


def run() -> str:
    """Measure every scenario and return the markdown section for docs/benchmarks.md."""
    seed = _seed()
    gunicorn, base = web.start_gunicorn(log_name="bench-gunicorn")
    try:
        results = []
        for name, url, to_send in _scenarios(base, seed):
            print(f"API: {name} ...", flush=True)
            results.append((name, web.load(url, to_send)))
    finally:
        gunicorn.terminate()
        gunicorn.wait(30)
    return _section(results)


def _section(results) -> str:
    lines = [
        "## API",
        "",
        f"gunicorn (the project's WSGI handler, {web.WORKERS} sync workers, DEBUG off) on loopback, PostgreSQL on "
        f"the same machine; wrk ({web.WRK_THREADS} threads, {web.CONNECTIONS} keep-alive connections), "
        f"{web.SECONDS:.0f} s per endpoint after a {web.WARMUP_SECONDS:.0f} s warm-up. "
        "Command: `.venv/bin/python -m bench.api_bench`.",
        "",
        f"Machine: {machine()}; the load generator runs on the same cores, so the figures are a floor.",
        "",
        "| endpoint | requests/s | p50 (ms) | p99 (ms) | requests | errors (status ≥ 400, socket) |",
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
