"""The mobile app's traffic mix, for locust: browse campaigns, open one, pledge, confirm the payment
through the sandbox, watch the pledge get paid; creators poll a report.

Run through `python -m bench.load_test` (which starts the stack and seeds it), or by hand against a
running stack: `locust -f bench/locustfile.py --headless -u 32 -r 8 -t 60s --host http://127.0.0.1:8000`.
"""

import os
import random
import uuid

from locust import HttpUser, between, task

CAMPAIGN_IDS = [value for value in os.environ.get("LOAD_CAMPAIGN_IDS", "").split(",") if value]
CREATOR = os.environ.get("LOAD_CREATOR_EMAIL", ""), os.environ.get("LOAD_CREATOR_PASSWORD", "")
CREATOR_CAMPAIGN = os.environ.get("LOAD_CREATOR_CAMPAIGN", "")


class Backer(HttpUser):
    weight = 9
    wait_time = between(0.1, 0.5)

    def on_start(self):
        email, password = f"load-{uuid.uuid4().hex[:12]}@example.org", uuid.uuid4().hex
        self.client.post("/api/v1/auth/register", json={"email": email, "password": password, "display_name": "Load"})
        token = self.client.post("/api/v1/auth/token", json={"email": email, "password": password}).json()["access"]
        self.client.headers["Authorization"] = f"Bearer {token}"
        self.campaign_ids = CAMPAIGN_IDS or self._live_campaigns()

    def _live_campaigns(self):
        return [campaign["id"] for campaign in self.client.get("/api/v1/campaigns?status=live").json()["results"]]

    @task(5)
    def browse_campaigns(self):
        self.client.get("/api/v1/campaigns?status=live&ordering=-created_at", name="/campaigns?status=live")

    @task(3)
    def open_campaign(self):
        self.client.get(f"/api/v1/campaigns/{random.choice(self.campaign_ids)}", name="/campaigns/{id}")

    @task(1)
    def pledge_and_pay(self):
        campaign = random.choice(self.campaign_ids)
        response = self.client.post(
            f"/api/v1/campaigns/{campaign}/pledges",
            json={"amount": f"{random.randint(5, 200)}.00"},
            headers={"Idempotency-Key": uuid.uuid4().hex},
            name="/campaigns/{id}/pledges",
        )
        if response.status_code != 201:
            return
        pledge = response.json()
        outcome = "succeeded" if random.random() < 0.9 else "failed"
        self.client.post(
            f"/api/v1/payments/sandbox/intents/{pledge['payment']['intent_id']}/confirm",
            json={"outcome": outcome},
            name="/payments/sandbox/intents/{id}/confirm",
        )
        self.client.get(f"/api/v1/pledges/{pledge['id']}", name="/pledges/{id}")


class Creator(HttpUser):
    """Creators ask for their backers report now and then and poll it until it is ready."""

    weight = 1
    wait_time = between(1, 3)

    def on_start(self):
        email, password = CREATOR
        token = self.client.post("/api/v1/auth/token", json={"email": email, "password": password}).json()["access"]
        self.client.headers["Authorization"] = f"Bearer {token}"
        self.report_id = None

    @task
    def request_or_poll_report(self):
        if self.report_id is None:
            response = self.client.post(
                f"/api/v1/campaigns/{CREATOR_CAMPAIGN}/reports",
                json={"kind": "backers", "format": "csv"},
                name="/campaigns/{id}/reports",
            )
            if response.status_code == 202:
                self.report_id = response.json()["id"]
            return
        status = self.client.get(f"/api/v1/reports/{self.report_id}", name="/reports/{id}").json().get("status")
        if status in ("ready", "failed", "expired"):
            self.report_id = None
