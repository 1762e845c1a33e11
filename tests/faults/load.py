"""A steady stream of backers pledging through the public API and paying at the sandbox provider,
from a background thread, while a test breaks things underneath."""

import threading
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal

import requests
from django.db import connection
from rest_framework_simplejwt.tokens import RefreshToken

from crowdfund.payments.models import SandboxEvent
from crowdfund.payments.providers.sandbox import SIGNATURE_HEADER, sign
from tests.crowdfund.payments.conftest import WEBHOOK_URL
from tests.faults.outages import retrying_outages

# How long one request is retried (connection refused, 5xx) before the stream gives up: longer than
# any outage the scenarios cause.
REQUEST_DEADLINE = 120.0
RETRY_PAUSE = 0.5


class StreamError(Exception):
    pass


@dataclass(frozen=True)
class Payment:
    """A pledge the stream made and paid (or had declined) at the sandbox."""

    pledge_id: str
    campaign_id: str
    backer_id: int
    amount: Decimal
    intent_id: str
    outcome: str  # "succeeded" or "failed"


@dataclass(frozen=True)
class Delivery:
    """A webhook the stream posted itself, as a provider outside our stack would."""

    at: float  # time.monotonic()
    status: int
    duplicate: bool


class PledgeStream:
    """`count` pledges spread over `seconds`, round-robin over the campaigns and backers, each with
    an Idempotency-Key (repeated when a request has to be retried), then confirmed through the
    sandbox's endpoint: every `failed_every`-th payment is declined. The sandbox then posts its
    signed webhook over HTTP from a worker. With `deliver_directly`, the stream also posts that
    webhook itself right away, so webhooks keep arriving even when our workers cannot run."""

    def __init__(
        self,
        *,
        web_url: str,
        campaigns,
        backers,
        count: int = 60,
        seconds: float = 30,
        failed_every: int = 4,
        deliver_directly: bool = False,
    ):
        self.web_url = web_url
        self.campaigns = list(campaigns)
        self.tokens = [(backer.id, str(RefreshToken.for_user(backer).access_token)) for backer in backers]
        self.count = count
        self.interval = seconds / count
        self.failed_every = failed_every
        self.deliver_directly = deliver_directly
        self.payments: list[Payment] = []
        self.deliveries: list[Delivery] = []
        self.errors: list[BaseException] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pledge-stream", daemon=True)
        self._session = requests.Session()

    def start(self) -> "PledgeStream":
        self._thread.start()
        return self

    def wait_for_payments(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.payments) < count and not self.errors:
            if time.monotonic() > deadline or not self._thread.is_alive():
                break
            time.sleep(0.1)

    def finish(self, timeout: float = REQUEST_DEADLINE + 30) -> list[Payment]:
        """Let the stream make all its pledges, then return them; raises what the stream met."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._stopping.set()
            raise StreamError(f"the pledge stream did not finish within {timeout}s")
        if self.errors:
            raise self.errors[0]
        assert len(self.payments) == self.count
        return self.payments

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(REQUEST_DEADLINE + 30)

    def _run(self) -> None:
        try:
            for n in range(self.count):
                if self._stopping.is_set():
                    return
                started = time.monotonic()
                self._pledge_and_pay(n)
                time.sleep(max(0.0, self.interval - (time.monotonic() - started)))
        except BaseException as exc:  # reported by finish(), in the test's thread
            self.errors.append(exc)
        finally:
            connection.close()  # deliver_directly reads the database from this thread

    def _pledge_and_pay(self, n: int) -> None:
        campaign = self.campaigns[n % len(self.campaigns)]
        backer_id, token = self.tokens[n % len(self.tokens)]
        amount = Decimal(10 + n % 7 * 5).quantize(Decimal("0.01"))
        created = self._post(
            f"/api/v1/campaigns/{campaign.id}/pledges",
            {"amount": str(amount)},
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": f"faults-{uuid.uuid4()}"},
            expect=(201,),
        ).json()
        outcome = "failed" if n % self.failed_every == self.failed_every - 1 else "succeeded"
        intent_id = created["payment"]["intent_id"]
        confirmed = self._post(
            f"/api/v1/payments/sandbox/intents/{intent_id}/confirm", {"outcome": outcome}, expect=(202, 409)
        )
        if confirmed.status_code == 409 and confirmed.json()["code"] != "intent_not_confirmable":
            raise StreamError(f"confirm refused: {confirmed.text}")
        # A 409 intent_not_confirmable: an earlier try of this very request committed, its answer lost.
        self.payments.append(
            Payment(
                pledge_id=created["id"],
                campaign_id=str(campaign.id),
                backer_id=backer_id,
                amount=amount,
                intent_id=intent_id,
                outcome=outcome,
            )
        )
        if self.deliver_directly:
            self._deliver(intent_id)

    def _deliver(self, intent_id: str) -> None:
        body = retrying_outages(lambda: SandboxEvent.objects.get(intent__intent_id=intent_id).body).encode()
        deadline = time.monotonic() + REQUEST_DEADLINE
        while True:
            # Signed afresh on each try, as a provider does (the signature carries a timestamp).
            response = self._try_post(
                WEBHOOK_URL, data=body, headers={"Content-Type": "application/json", SIGNATURE_HEADER: sign(body)}
            )
            if response is not None and response.status_code < 500:
                break
            if time.monotonic() > deadline or self._stopping.is_set():
                raise StreamError(f"the webhook for {intent_id} was never answered")
            time.sleep(RETRY_PAUSE)
        duplicate = response.status_code == 200 and response.json().get("duplicate") is True
        self.deliveries.append(Delivery(at=time.monotonic(), status=response.status_code, duplicate=duplicate))

    def _post(self, path: str, payload: dict, *, headers: dict | None = None, expect: tuple[int, ...]):
        """POST until the server answers without a 5xx (the same request, the same Idempotency-Key)."""
        deadline = time.monotonic() + REQUEST_DEADLINE
        while True:
            response = self._try_post(path, json=payload, headers=headers)
            if response is not None and response.status_code < 500:
                if response.status_code not in expect:
                    raise StreamError(f"POST {path} answered {response.status_code}: {response.text}")
                return response
            if time.monotonic() > deadline or self._stopping.is_set():
                raise StreamError(f"POST {path} never answered without an error")
            time.sleep(RETRY_PAUSE)

    def _try_post(self, path: str, **kwargs):
        try:
            return self._session.post(self.web_url + path, timeout=15, **kwargs)
        except requests.RequestException:
            return None
