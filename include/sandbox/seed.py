"""Deterministic generation of the sandbox's people and of their data in every service.

``seed_state`` fills a fresh :class:`~sandbox.state.SandboxState` from its settings: ``people``
generated people (``person-001`` ...) with a random subset of data, plus fixed edge-case people
that are always present under stable keys. All names are fake, every email uses a reserved
example domain and every phone number is in a range reserved for fiction (+1 NXX 555-01xx,
+44 7700 900xxx), so seeded data can never reach a real person.

Seeded timestamps are fixed relative to :data:`BASE_TIME`, so a seed gives the same data on
every run, whatever the date.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sandbox.ids import (
    SEGMENT_CHECK_USER_ID,
    SEGMENT_SOURCE_ID,
    TWILIO_CHAT_SERVICE_SID,
    TWILIO_SUPPORT_CHAT_SERVICE_SID,
)
from sandbox.state import (
    Call,
    Charge,
    Conversation,
    ConversationService,
    Customer,
    Dispute,
    Invoice,
    MemoryProfile,
    Message,
    Participant,
    Person,
    Recording,
    SegmentProfile,
    Subscription,
    Transcription,
    isoformat,
)

if TYPE_CHECKING:
    from sandbox.state import SandboxState

BASE_TIME = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)

# The business side of every message and call (fictional numbers too).
BUSINESS_NUMBERS = ("+14155550100", "+14155550101")

# Edge cases always present, keyed by name. Each one lacks (or carries) one specific thing.
EDGE_CASES = (
    "no_stripe",  # no Stripe customer
    "multi_stripe",  # two Stripe customers sharing one email
    "no_segment",  # no Segment profile
    "quiet_phone",  # a phone with no messages, calls or conversations
    "segment_failed",  # a regulation for this user ends FAILED
    "segment_stuck",  # a regulation for this user stays RUNNING forever
    "many_messages",  # more than 50 messages in each direction: list calls need paging
    "in_flight",  # a message and a call still in progress: DELETE answers 20009 until they settle
    "other_service",  # conversations in a Conversation Service that is not the account's default
    # Stripe live state (issue 15); everyone else has none, so their erasures are unaffected.
    "active_subscription",  # an active subscription (and the paid invoice of its current period)
    "open_dispute",  # a charge disputed, the dispute in needs_response
    "unpaid_invoice",  # an open invoice
    "customer_balance",  # a non-zero customer balance (a credit of 15.00)
    "closed_states",  # a canceled subscription, a paid invoice, a won dispute, zero balance: nothing live
)
#: The Stripe live state each of those people has (the others have none).
LIVE_STATE_CASES = (
    "active_subscription",
    "open_dispute",
    "unpaid_invoice",
    "customer_balance",
    "closed_states",
)
#: The credit on the ``customer_balance`` person's customer, in cents (negative: owed to the customer).
SEEDED_BALANCE = -1500

FIRST_NAMES = (
    "Ada", "Bruno", "Chiara", "Dmitri", "Elena", "Farid", "Greta", "Hiro", "Ines", "Jonas",
    "Kwame", "Lucia", "Mateo", "Nadia", "Oskar", "Priya", "Quentin", "Rosa", "Samir", "Tove",
    "Ugo", "Vera", "Wen", "Ximena", "Yusuf", "Zofia", "Amara", "Bjorn", "Carmen", "Dario",
)  # fmt: skip
LAST_NAMES = (
    "Abbott", "Bianchi", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad", "Ivanova",
    "Jensen", "Kowalski", "Lindqvist", "Moreau", "Novak", "Okafor", "Petrov", "Quinn", "Rossi",
    "Sato", "Tanaka", "Umarov", "Varga", "Weber", "Xu", "Yilmaz", "Zeller",
)  # fmt: skip
EMAIL_DOMAINS = ("example.com", "example.org", "example.net")
US_AREA_CODES = ("201", "212", "305", "312", "415", "503", "617", "702", "808", "919")
CITIES = (
    ("Springfield", "IL", "62701", "US"),
    ("Portland", "OR", "97201", "US"),
    ("Manchester", None, "M1 1AE", "GB"),
    ("Leeds", None, "LS1 4AP", "GB"),
)
MESSAGE_BODIES = (
    "Your order has shipped.",
    "Reply STOP to unsubscribe.",
    "Thanks, see you on Tuesday!",
    "Can you call me back?",
    "Your verification code is 482913.",
    "Running 10 minutes late.",
    "Appointment confirmed for 3pm.",
    "Got it, thanks.",
)
TRANSCRIPTS = (
    "Hi, this is a message about my recent order, please call me back.",
    "Hello, I would like to change my delivery address.",
    "Calling to confirm the appointment tomorrow morning.",
)
PLANS = ("free", "team", "business")


@dataclass
class Plan:
    """Which kinds of data one person gets, and how much of each."""

    customers: int = 1
    charges: tuple[int, int] = (0, 3)
    messages: int = 0
    calls: int = 0
    conversations: int = 0
    conversation_service: str = TWILIO_CHAT_SERVICE_SID
    memory: bool = True
    segment: bool = True


def seed_state(state: SandboxState) -> None:
    """Populate ``state`` from ``state.settings`` (same settings give the same data)."""
    for sid, name in ((TWILIO_CHAT_SERVICE_SID, "Default"), (TWILIO_SUPPORT_CHAT_SERVICE_SID, "Support app")):
        state.conversation_services[sid] = ConversationService(sid, name, BASE_TIME - timedelta(days=400))
    seeder = _Seeder(state)
    for index in range(1, state.settings.people + 1):
        seeder.add_person(f"person-{index:03d}", seeder.random_plan(), flags=[])
    for key in EDGE_CASES:
        seeder.add_person(key, seeder.edge_plan(key), flags=[key])
    seeder.check_profile()


class _Seeder:
    """Creates people and their resources in every service, drawing from the state's RNG."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self.rng: random.Random = state.rng
        self.ids = state.ids
        self.emails: set[str] = set()
        self.phones: set[str] = set(BUSINESS_NUMBERS)

    # -- plans -------------------------------------------------------------------------------

    def random_plan(self) -> Plan:
        rng = self.rng
        return Plan(
            customers=1 if rng.random() < 0.85 else 0,
            messages=rng.randint(1, 30) if rng.random() < 0.8 else 0,
            calls=rng.randint(1, 4) if rng.random() < 0.6 else 0,
            conversations=rng.randint(1, 2) if rng.random() < 0.4 else 0,
            memory=rng.random() < 0.75,
            segment=rng.random() < 0.8,
        )

    def edge_plan(self, key: str) -> Plan:
        plan = Plan(customers=1, charges=(1, 2), messages=6, calls=2, conversations=1)
        if key == "no_stripe":
            plan.customers = 0
        elif key == "multi_stripe":
            plan.customers = 2
        elif key == "no_segment":
            plan.segment = False
        elif key == "quiet_phone":
            plan.messages = plan.calls = plan.conversations = 0
        elif key == "many_messages":
            plan.messages = 130
        elif key == "other_service":
            # One conversation by phone, one by chat identity, both outside the default service.
            plan.conversations = 2
            plan.conversation_service = TWILIO_SUPPORT_CHAT_SERVICE_SID
        return plan

    # -- people ------------------------------------------------------------------------------

    def add_person(self, key: str, plan: Plan, flags: list[str]) -> None:
        first, last = self.rng.choice(FIRST_NAMES), self.rng.choice(LAST_NAMES)
        person = Person(key, first, last, self._email(first, last), self._phone(), flags=flags)
        self.state.people[key] = person
        for _ in range(plan.customers):
            self._customer(person, plan)
        self._messages(person, plan.messages, balanced=plan.messages > 100)
        for _ in range(plan.calls):
            self._call(person)
        for index in range(plan.conversations):
            self._conversation(person, by_identity=index == 1, service=plan.conversation_service)
        if plan.memory:
            self._memory_profile(person)
        if plan.segment:
            self._segment_profile(person)
        if "in_flight" in flags:
            self._in_flight(person)
        if key in LIVE_STATE_CASES:
            self._live_state(person, key)

    def _email(self, first: str, last: str) -> str:
        while True:
            number = self.rng.randint(1, 99)
            email = f"{first}.{last}{number}@{self.rng.choice(EMAIL_DOMAINS)}".lower()
            if email not in self.emails:
                self.emails.add(email)
                return email

    def _phone(self) -> str:
        while True:
            if self.rng.random() < 0.6:
                phone = f"+1{self.rng.choice(US_AREA_CODES)}55501{self.rng.randint(0, 99):02d}"
            else:
                phone = f"+447700900{self.rng.randint(0, 999):03d}"
            if phone not in self.phones:
                self.phones.add(phone)
                return phone

    def _moment(self, max_days: int = 365) -> datetime:
        return BASE_TIME - timedelta(seconds=self.rng.randint(60, max_days * 86400))

    # -- Stripe ------------------------------------------------------------------------------

    def _customer(self, person: Person, plan: Plan) -> None:
        city, region, postal, country = self.rng.choice(CITIES)
        created = int(self._moment(900).timestamp())
        customer = Customer(
            id=self.ids.stripe("cus"),
            created=created,
            email=person.email,
            name=person.name,
            phone=person.phone,
            description=f"Customer since {datetime.fromtimestamp(created, UTC):%Y}",
            address={
                "city": city,
                "country": country,
                "line1": f"{self.rng.randint(1, 250)} High Street",
                "line2": None,
                "postal_code": postal,
                "state": region,
            },
            metadata={"crm_id": f"crm-{self.ids.hex(8)}"},
        )
        self.state.customers[customer.id] = customer
        person.stripe_customer_ids.append(customer.id)
        for _ in range(self.rng.randint(*plan.charges)):
            self._charge(customer)

    def _charge(self, customer: Customer) -> None:
        charge = Charge(
            id=self.ids.stripe("ch"),
            customer=customer.id,
            amount=self.rng.choice((990, 1990, 4900, 12500)),
            currency="usd",
            created=customer.created + self.rng.randint(3600, 86400 * 60),
            description="Subscription payment",
            billing_details={
                "address": dict(customer.address or {}),
                "email": customer.email,
                "name": customer.name,
                "phone": customer.phone,
            },
            receipt_email=customer.email,
        )
        self.state.charges[charge.id] = charge

    # -- Stripe live state (what must not be erased blindly) ----------------------------------

    def _live_state(self, person: Person, key: str) -> None:
        customer = self.state.customers[person.stripe_customer_ids[0]]
        charge = next(c for c in self.state.charges.values() if c.customer == customer.id)
        if key == "active_subscription":
            subscription = self._subscription(customer, "active")
            self._invoice(customer, "paid", subscription)
        elif key == "open_dispute":
            self._dispute(charge, "needs_response")
        elif key == "unpaid_invoice":
            self._invoice(customer, "open")
        elif key == "customer_balance":
            customer.balance = SEEDED_BALANCE
        elif key == "closed_states":
            subscription = self._subscription(customer, "canceled")
            self._invoice(customer, "paid", subscription)
            self._dispute(charge, "won")

    def _subscription(self, customer: Customer, status: str) -> Subscription:
        """A monthly subscription; its current period runs from ten days before ``BASE_TIME``."""
        period_start = int((BASE_TIME - timedelta(days=10)).timestamp())
        subscription = Subscription(
            id=self.ids.stripe("sub"),
            customer=customer.id,
            created=customer.created + 86400,
            status=status,
            item_id=self.ids.stripe("si"),
            price_id=self.ids.stripe("price"),
            product_id=self.ids.stripe("prod"),
            unit_amount=self.rng.choice((990, 1990, 4900)),
            current_period_start=period_start,
            current_period_end=period_start + 30 * 86400,
        )
        if status == "canceled":
            subscription.canceled_at = subscription.ended_at = period_start - 20 * 86400
            subscription.cancellation_reason = "cancellation_requested"
        self.state.subscriptions[subscription.id] = subscription
        return subscription

    def _invoice(self, customer: Customer, status: str, subscription: Subscription | None = None) -> Invoice:
        """A finalized invoice (``open`` or ``paid``) with Stripe's snapshot of the customer."""
        period_end = subscription.current_period_start if subscription else int(BASE_TIME.timestamp())
        amount = subscription.unit_amount if subscription else self.rng.choice((4900, 12500))
        sequence = sum(1 for i in self.state.invoices.values() if i.customer == customer.id) + 1
        invoice = Invoice(
            id=self.ids.stripe("in"),
            customer=customer.id,
            created=period_end,
            status=status,
            amount_due=amount,
            amount_paid=amount if status == "paid" else 0,
            number=f"{customer.id[4:11].upper()}-{sequence:04d}",
            period_start=period_end - 30 * 86400 if subscription else period_end,
            period_end=period_end,
            customer_email=customer.email,
            customer_name=customer.name,
            customer_phone=customer.phone,
            customer_address=dict(customer.address) if customer.address else None,
            subscription=subscription.id if subscription else None,
            due_date=None if subscription else period_end + 30 * 86400,
            finalized_at=period_end + 3600,
            paid_at=period_end + 3600 if status == "paid" else None,
        )
        self.state.invoices[invoice.id] = invoice
        if subscription:
            subscription.latest_invoice = invoice.id
        return invoice

    def _dispute(self, charge: Charge, status: str) -> Dispute:
        dispute = Dispute(
            id=self.ids.stripe("dp"),
            charge=charge.id,
            amount=charge.amount,
            currency=charge.currency,
            created=charge.created + 20 * 86400,
            status=status,
            reason="product_not_received",
            evidence_due_by=charge.created + 41 * 86400,
        )
        charge.disputed = True
        self.state.disputes[dispute.id] = dispute
        return dispute

    # -- Twilio ------------------------------------------------------------------------------

    def _messages(self, person: Person, count: int, balanced: bool) -> None:
        for index in range(count):
            inbound = index % 2 == 0 if balanced else self.rng.random() < 0.5
            self._message(person, inbound)

    def _message(self, person: Person, inbound: bool, status: str | None = None) -> Message:
        business = self.rng.choice(BUSINESS_NUMBERS)
        sent = self._moment()
        if status is None:
            status = (
                "received" if inbound else self.rng.choice(("delivered",) * 8 + ("undelivered", "failed"))
            )
        message = Message(
            sid=self.ids.twilio_sid("SM"),
            from_=person.phone if inbound else business,
            to=business if inbound else person.phone,
            body=self.rng.choice(MESSAGE_BODIES),
            direction="inbound" if inbound else "outbound-api",
            status=status,
            date_created=sent - timedelta(seconds=2),
            date_sent=sent,
        )
        self.state.messages[message.sid] = message
        return message

    def _call(self, person: Person, status: str | None = None) -> Call:
        inbound = self.rng.random() < 0.5
        business = self.rng.choice(BUSINESS_NUMBERS)
        if status is None:
            status = self.rng.choice(("completed",) * 6 + ("no-answer", "busy"))
        call = Call(
            sid=self.ids.twilio_sid("CA"),
            from_=person.phone if inbound else business,
            to=business if inbound else person.phone,
            direction="inbound" if inbound else "outbound-api",
            status=status,
            start_time=self._moment(),
            duration=self.rng.randint(20, 600) if status == "completed" else 0,
        )
        self.state.calls[call.sid] = call
        if status == "completed":
            for _ in range(self.rng.randint(0, 2)):
                self._recording(call)
        return call

    def _recording(self, call: Call) -> None:
        recording = Recording(
            sid=self.ids.twilio_sid("RE"),
            call_sid=call.sid,
            date_created=call.start_time + timedelta(seconds=5),
            duration=max(1, call.duration - 10),
        )
        self.state.recordings[recording.sid] = recording
        if self.rng.random() < 0.5:
            transcription = Transcription(
                sid=self.ids.twilio_sid("TR"),
                recording_sid=recording.sid,
                date_created=recording.date_created + timedelta(minutes=1),
                duration=recording.duration,
                text=self.rng.choice(TRANSCRIPTS),
            )
            self.state.transcriptions[transcription.sid] = transcription

    def _conversation(self, person: Person, by_identity: bool, service: str) -> None:
        created = self._moment()
        conversation = Conversation(
            chat_service_sid=service,
            sid=self.ids.twilio_sid("CH"),
            friendly_name=f"Support thread {self.ids.hex(4)}",
            unique_name=None,
            state=self.rng.choice(("active", "inactive", "closed")),
            date_created=created,
            date_updated=created + timedelta(hours=self.rng.randint(1, 48)),
        )
        self.state.conversations[conversation.sid] = conversation
        if by_identity:
            person.chat_identity = person.email
            self._participant(conversation, identity=person.email, user_sid=self.ids.twilio_sid("US"))
        else:
            self._participant(conversation, address=person.phone, proxy=self.rng.choice(BUSINESS_NUMBERS))
        # The agent on the other side: not the data subject, must survive the erasure.
        self._participant(
            conversation, identity=f"agent-{self.ids.hex(6)}", user_sid=self.ids.twilio_sid("US")
        )

    def _participant(
        self,
        conversation: Conversation,
        *,
        address: str | None = None,
        proxy: str | None = None,
        identity: str | None = None,
        user_sid: str | None = None,
    ) -> None:
        participant = Participant(
            sid=self.ids.twilio_sid("MB"),
            conversation_sid=conversation.sid,
            address=address,
            proxy_address=proxy,
            identity=identity,
            user_sid=user_sid,
        )
        self.state.participants[participant.sid] = participant

    def _in_flight(self, person: Person) -> None:
        """A message and a call that are still in progress and settle after ``in_flight_seconds``."""
        settles_at = self.state.clock() + self.state.settings.in_flight_seconds
        message = self._message(person, inbound=False, status="sending")
        message.final_status, message.settles_at = "delivered", settles_at
        call = self._call(person, status="in-progress")
        call.final_status, call.settles_at = "completed", settles_at

    # -- Twilio Memory and Segment -----------------------------------------------------------

    def _memory_profile(self, person: Person) -> None:
        profile = MemoryProfile(
            id=self.ids.ttid("mem_profile"),
            created_at=isoformat(self._moment()).replace(".000000Z", "Z"),
            traits={
                "Contact": {
                    "email": person.email,
                    "phone": person.phone,
                    "firstName": person.first_name,
                    "lastName": person.last_name,
                }
            },
        )
        self.state.memory_profiles[profile.id] = profile
        person.memory_profile_id = profile.id

    def check_profile(self) -> None:
        """The company's own test profile that the preflight reads (not a data subject)."""
        values = (
            ("user_id", SEGMENT_CHECK_USER_ID),
            ("email", "privacy-check@example.com"),
            ("phone", self._phone()),
        )
        external_ids = [
            {
                "source_id": SEGMENT_SOURCE_ID,
                "collection": "users",
                "id": value,
                "type": id_type,
                "created_at": isoformat(BASE_TIME),
                "encoding": "none",
                "first_message_id": f"ajs-next-{self.ids.hex(32)}",
            }
            for id_type, value in values
        ]
        profile = SegmentProfile(segment_id=f"use_{self.ids.ksuid()}", external_ids=external_ids, traits={})
        self.state.segment_profiles[profile.segment_id] = profile

    def _segment_profile(self, person: Person) -> None:
        person.segment_user_id = f"usr_{self.ids.hex(12)}"
        person.segment_id = f"use_{self.ids.ksuid()}"
        person.anonymous_id = self.ids.uuid()
        values = (
            ("user_id", person.segment_user_id),
            ("email", person.email),
            ("phone", person.phone),
            ("anonymous_id", person.anonymous_id),
        )
        external_ids = [
            {
                "source_id": SEGMENT_SOURCE_ID,
                "collection": "users",
                "id": value,
                "type": id_type,
                "created_at": isoformat(self._moment()),
                "encoding": "none",
                "first_message_id": f"ajs-next-{self.ids.hex(32)}",
            }
            for id_type, value in values
        ]
        traits = {
            "first_name": person.first_name,
            "last_name": person.last_name,
            "email": person.email,
            "phone": person.phone,
            "plan": self.rng.choice(PLANS),
            "logins_last_30_days": self.rng.randint(0, 40),
        }
        profile = SegmentProfile(segment_id=person.segment_id, external_ids=external_ids, traits=traits)
        self.state.segment_profiles[profile.segment_id] = profile
