"""Handover by notified pull (eOverdracht style), end to end over real HTTP.

The example pathway's step ``share`` hands the CPR agreements over to the out-of-hours GP post. The
engine opens a Task owned by the post; `zorgpad deliver` sends an empty POST to the post's notification
endpoint at ``/{task-id}``; the post reads the Task and its input with its own token and completes it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from zorgpad.engine import ROLE_SYSTEM, Engine, Registry, StepState
from zorgpad.engine.app import build_engine
from zorgpad.engine.registry import load_file
from zorgpad.engine.store.audit import Actor
from zorgpad.engine.store.db import Database
from zorgpad.engine.store.resources import put_resource
from zorgpad.fhir.handovers import CONNECTION_TYPE_SYSTEM, NOTIFIED_PULL, notification_addresses

from tests.fhir.test_subscriptions import EXAMPLE, Receiver, deliver, outbox, subscribe, unique

SCT = "http://snomed.info/sct"
STEP_RUN_SYSTEM = "https://zorgpad.nl/fhir/NamingSystem/step-run"




@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    """The out-of-hours post's notification endpoint."""
    started = Receiver()
    yield started
    started.stop()


def example_registry() -> Registry:
    """The built-in pathways plus the example pathway file, as `zorgpad --file` loads them."""
    registry = Registry.default()
    for pathway in load_file(EXAMPLE):
        registry.add(pathway)
    return registry


@dataclass
class Region:
    """A GP practice and an out-of-hours post sharing one enrolled patient."""

    gp: str
    ooh: str
    gp_client: httpx.Client
    ooh_client: httpx.Client
    patient: str
    enrolment: str
    hook: str


def set_up_region(fhir_server: Any, receiver: Receiver) -> Region:
    """Organisations, a patient of the GP with the post in the CareTeam, the post's Endpoint, an enrolment."""
    admin = fhir_server.client()
    gp_id, ooh_id, hook = unique("gp"), unique("ooh"), unique("eoverdracht")
    for org_id in (gp_id, ooh_id):
        assert 201 == admin.put(f"/Organization/{org_id}", json={"resourceType": "Organization", "id": org_id,
                                                                 "name": org_id}).status_code
    gp, ooh = f"Organization/{gp_id}", f"Organization/{ooh_id}"
    gp_client = fhir_server.client(fhir_server.token(gp_id))
    ooh_client = fhir_server.client(fhir_server.token(ooh_id))
    patient = gp_client.post("/Patient", json={"resourceType": "Patient", "name": [{"text": "A. Handover"}],
                                               "generalPractitioner": [{"reference": gp}]})
    assert 201 == patient.status_code, patient.text
    patient_ref = f"Patient/{patient.json()['id']}"
    team = gp_client.post("/CareTeam", json={
        "resourceType": "CareTeam", "status": "active", "subject": {"reference": patient_ref},
        "participant": [{"role": [{"coding": [{"system": ROLE_SYSTEM, "code": "out-of-hours"}]}],
                         "member": {"reference": ooh}}]})
    assert 201 == team.status_code, team.text
    endpoint = ooh_client.post("/Endpoint", json={
        "resourceType": "Endpoint", "status": "active", "connectionType": NOTIFIED_PULL,
        "managingOrganization": {"reference": ooh}, "payloadType": [{"text": "none: notified pull"}],
        "address": receiver.url(f"{hook}/")})  # a trailing slash, as partners sometimes register it
    assert 201 == endpoint.status_code, endpoint.text
    # $apply enrols in the newest version (1.1.0), which has no step share; enrol in 1.0.0 directly.
    db = Database(fhir_server.db_url)
    try:
        state = build_engine(db, example_registry()).enrol("example-acp", patient_ref, version="1.0.0",
                                                           actor=Actor("test", gp))
    finally:
        db.dispose()
    return Region(gp, ooh, gp_client, ooh_client, patient_ref, state.id, hook)


def tasks_by_step(client: httpx.Client, enrolment: str) -> dict[str, dict[str, Any]]:
    """The enrolment's Tasks by step id, read through the CarePlan."""
    careplan = client.get(f"/CarePlan/{enrolment}")
    assert 200 == careplan.status_code, careplan.text
    found = {}
    for activity in careplan.json().get("activity", []):
        task = client.get(f"/{activity['reference']['reference']}").json()
        [value] = [i["value"] for i in task["identifier"] if i["system"] == STEP_RUN_SYSTEM]
        found[value.split("/")[1]] = task
    return found


def set_status(client: httpx.Client, task: dict[str, Any], status: str) -> httpx.Response:
    """The owner's versioned update of a Task's status."""
    return client.put(f"/Task/{task['id']}", json={**task, "status": status},
                      headers={"If-Match": f'W/"{task["meta"]["versionId"]}"'})


def consent(client: httpx.Client, patient: str, **elements: Any) -> dict[str, Any]:
    """Record an active Consent for ``patient``."""
    created = client.post("/Consent", json={
        "resourceType": "Consent", "status": "active", "patient": {"reference": patient},
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "adr"}]},
        **elements})
    assert 201 == created.status_code, created.text
    return dict(created.json())


def reach_handover(region: Region) -> tuple[dict[str, Any], dict[str, Any]]:
    """Complete register and conversation as the GP, record the CPR agreement and the consent to share;
    the handover Task and the CPR Consent."""
    for step in ("register", "conversation"):
        task = tasks_by_step(region.gp_client, region.enrolment)[step]
        completed = set_status(region.gp_client, task, "completed")
        assert 200 == completed.status_code, completed.text
    cpr = consent(region.gp_client, region.patient,
                  category=[{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
                  provision={"code": [{"coding": [{"system": SCT, "code": "89666000"}]}]})
    consent(region.gp_client, region.patient, category=[{"coding": [{"system": SCT, "code": "425691002"}]}])
    return tasks_by_step(region.gp_client, region.enrolment)["share"], cpr


@pytest.fixture
def region(fhir_server: Any, receiver: Receiver) -> Region:
    """A fresh region on the module's server."""
    return set_up_region(fhir_server, receiver)


@pytest.mark.slow
class TestNotifiedPull:
    """The sender's side and the receiver's side of a handover."""

    def test_the_handover_task_is_owned_by_the_receiver_and_carries_the_cpr_agreement(self, region: Region) -> None:
        """Once consent to share is recorded, the share Task goes to the out-of-hours post with the content."""
        share, cpr = reach_handover(region)

        assert ("requested", region.ooh, region.gp) == (share["status"], share["owner"]["reference"],
                                                        share["requester"]["reference"])
        assert [f"Consent/{cpr['id']}"] == [i["valueReference"]["reference"] for i in share["input"]]

    def test_delivery_posts_an_empty_body_to_the_receivers_endpoint_at_the_task_id(
            self, fhir_server: Any, receiver: Receiver, region: Region) -> None:
        """One empty POST to ``{address}/{task-id}`` with the notice's idempotency key; the notice is completed."""
        share, _ = reach_handover(region)
        deliver(fhir_server.db_url)
        got = receiver.at(region.hook)
        [notice] = [i for i in outbox(fhir_server.db_url, "notify", region.ooh) if i.payload["handover"]]
        communication = fhir_server.client().get(f"/{notice.payload['communication']}").json()

        assert 1 == len(got)
        assert ("POST", f"/{region.hook}/{share['id']}", b"") == (got[0].method, got[0].path, got[0].body)
        assert notice.idempotency_key == got[0].headers["idempotency-key"]
        assert "delivered" == notice.status
        assert "completed" == communication["status"]

    def test_the_receiver_reads_the_task_and_its_content_and_completes_the_step(
            self, fhir_server: Any, receiver: Receiver, region: Region) -> None:
        """The pull: the post reads Task/{id} and its input with its own token, then PUTs status completed."""
        reach_handover(region)
        deliver(fhir_server.db_url)
        [notified] = receiver.at(region.hook)
        task_id = notified.path.rsplit("/", 1)[1]
        task = region.ooh_client.get(f"/Task/{task_id}")
        contents = [region.ooh_client.get(f"/{i['valueReference']['reference']}") for i in task.json()["input"]]
        completed = set_status(region.ooh_client, task.json(), "completed")
        after = region.gp_client.get(f"/Task/{task_id}").json()
        db = Database(fhir_server.db_url)
        try:
            state = build_engine(db, example_registry()).state(region.enrolment)
        finally:
            db.dispose()

        assert 200 == task.status_code
        assert [(200, "89666000")] == [(c.status_code, c.json()["provision"]["code"][0]["coding"][0]["code"])
                                       for c in contents]
        assert 200 == completed.status_code, completed.text
        assert "completed" == after["status"]
        assert StepState.COMPLETED == state.steps["share"].state

    def test_the_receivers_own_subscription_also_hears_of_the_handover_task(
            self, fhir_server: Any, receiver: Receiver, region: Region) -> None:
        """The post's Subscription on Tasks it owns gets an id-only notification naming the share Task."""
        folder = unique("subscription")
        created = subscribe(region.ooh_client, f"Task?owner={region.ooh}", receiver.url(folder),
                            payload="application/fhir+json", content="id-only")
        share, _ = reach_handover(region)
        deliver(fhir_server.db_url)
        focuses = [part["valueReference"]["reference"]
                   for request in receiver.at(folder)
                   for parameter in json.loads(request.body)["entry"][0]["resource"]["parameter"]
                   if parameter["name"] == "notification-event"
                   for part in parameter["part"] if part["name"] == "focus"]

        assert 201 == created.status_code, created.text
        assert [f"Task/{share['id']}"] == focuses

    def test_another_organisation_cannot_read_or_complete_the_handover_task(
            self, fhir_server: Any, receiver: Receiver, region: Region) -> None:
        """Knowing the Task id is not enough: an organisation outside the patient's care gets 404 and 404/403."""
        share, _ = reach_handover(region)
        stranger = fhir_server.client(fhir_server.token(unique("stranger")))

        assert 404 == stranger.get(f"/Task/{share['id']}").status_code
        assert set_status(stranger, share, "completed").status_code in (403, 404)
        assert "requested" == region.gp_client.get(f"/Task/{share['id']}").json()["status"]


class TestNotificationAddresses:
    """Which Endpoint of the receiving organisation a handover is announced at."""

    @staticmethod
    def endpoint(db: Database, endpoint_id: str, org: str, code: tuple[str, str], status: str = "active") -> None:
        content = {"resourceType": "Endpoint", "id": endpoint_id, "status": status,
                   "connectionType": {"system": code[0], "code": code[1]},
                   "managingOrganization": {"reference": org}, "payloadType": [{"text": "none"}],
                   "address": f"https://{endpoint_id}.example/notify"}
        db.run(lambda s: put_resource(s, content, datetime.now(UTC)))

    def addresses(self, db: Database, org: str) -> list[str]:
        return db.run(lambda s: notification_addresses(s, org))

    def test_a_notified_pull_endpoint_is_preferred_over_a_fhir_rest_endpoint(self, db: Database) -> None:
        """With both kinds registered, only the notified-pull address is used."""
        rest = ("http://terminology.hl7.org/CodeSystem/endpoint-connection-type", "hl7-fhir-rest")
        self.endpoint(db, "a-rest", "Organization/ooh", rest)
        self.endpoint(db, "b-pull", "Organization/ooh", (CONNECTION_TYPE_SYSTEM, "notified-pull"))

        assert ["https://b-pull.example/notify"] == self.addresses(db, "Organization/ooh")

    def test_a_fhir_rest_endpoint_serves_when_there_is_no_notified_pull_endpoint(self, db: Database) -> None:
        """The HL7 hl7-fhir-rest connection type is the fallback."""
        rest = ("http://terminology.hl7.org/CodeSystem/endpoint-connection-type", "hl7-fhir-rest")
        self.endpoint(db, "a-rest", "Organization/ooh", rest)

        assert ["https://a-rest.example/notify"] == self.addresses(db, "Organization/ooh")

    def test_inactive_foreign_and_other_endpoints_are_ignored(self, db: Database) -> None:
        """Only active Endpoints of that very organisation with a notification connection type count."""
        pull = (CONNECTION_TYPE_SYSTEM, "notified-pull")
        self.endpoint(db, "off", "Organization/ooh", pull, status="off")
        self.endpoint(db, "foreign", "Organization/other", pull)
        self.endpoint(db, "mail", "Organization/ooh", ("http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
                                                       "direct-project"))

        assert [] == self.addresses(db, "Organization/ooh")



@contextmanager
def engine_on(fhir_server: Any) -> Iterator[Engine]:
    """The engine over the server's database, with the example pathway (for a coordinator's actions)."""
    db = Database(fhir_server.db_url)
    try:
        yield build_engine(db, example_registry())
    finally:
        db.dispose()


def pull_endpoint(client: httpx.Client, org: str, address: str) -> None:
    """Register ``org``'s notified-pull Endpoint at ``address``."""
    created = client.post("/Endpoint", json={
        "resourceType": "Endpoint", "status": "active", "connectionType": NOTIFIED_PULL,
        "managingOrganization": {"reference": org}, "payloadType": [{"text": "none: notified pull"}],
        "address": address})
    assert 201 == created.status_code, created.text


@pytest.mark.slow
class TestTaskChanges:
    """eOverdracht: the receiver is told of every later change of its handover Task that it did not make."""

    def announced(self, fhir_server: Any, receiver: Receiver, region: Region) -> dict[str, Any]:
        """The handover Task, once its first notice went out (one request at the post's endpoint)."""
        share, _ = reach_handover(region)
        deliver(fhir_server.db_url)
        assert 1 == len(receiver.at(region.hook))
        return share

    def test_a_cancelled_handover_is_told_to_the_receiver(
            self, fhir_server: Any, receiver: Receiver, region: Region) -> None:
        """The enrolment is withdrawn: the post gets another empty POST at the Task id, keyed by its version."""
        share = self.announced(fhir_server, receiver, region)
        with engine_on(fhir_server) as engine:
            engine.withdraw(region.enrolment, reason="moved out of the region", actor=Actor("test", region.gp))
        deliver(fhir_server.db_url)
        got = receiver.at(region.hook)
        task = region.ooh_client.get(f"/Task/{share['id']}").json()
        [change] = outbox(fhir_server.db_url, "task-changed", region.ooh)

        assert [("POST", f"/{region.hook}/{share['id']}", b"")] * 2 == [(r.method, r.path, r.body) for r in got]
        assert ("cancelled", f"task-changed/{share['id']}/{task['meta']['versionId']}/{region.ooh}", "delivered") \
            == (task["status"], got[1].headers["idempotency-key"], change.status)

    def test_a_reassigned_handover_is_told_to_the_new_owner_and_the_one_before(
            self, fhir_server: Any, receiver: Receiver, region: Region) -> None:
        """A coordinator moves the Task to another post: both posts' endpoints get a POST at the Task id."""
        share = self.announced(fhir_server, receiver, region)
        other, other_hook = unique("ooh"), unique("eoverdracht")
        admin = fhir_server.client()
        assert 201 == admin.put(f"/Organization/{other}", json={"resourceType": "Organization", "id": other,
                                                               "name": other}).status_code
        pull_endpoint(fhir_server.client(fhir_server.token(other)), f"Organization/{other}", receiver.url(other_hook))
        with engine_on(fhir_server) as engine:
            engine.override(region.enrolment, "share", "reassign", reason="the other post covers nights",
                            owner=f"Organization/{other}", actor=Actor("test", region.gp))
        deliver(fhir_server.db_url)

        assert ([f"/{region.hook}/{share['id']}"] * 2, [f"/{other_hook}/{share['id']}"]) == (
            [r.path for r in receiver.at(region.hook)], [r.path for r in receiver.at(other_hook)])

    def test_the_receivers_own_update_is_not_told_back_to_it(
            self, fhir_server: Any, receiver: Receiver, region: Region) -> None:
        """The post accepts and completes the Task itself: no notification is queued or sent for that."""
        share = self.announced(fhir_server, receiver, region)
        accepted = set_status(region.ooh_client, share, "accepted")
        assert 200 == accepted.status_code, accepted.text
        assert 200 == set_status(region.ooh_client, accepted.json(), "completed").status_code
        deliver(fhir_server.db_url)

        assert (1, []) == (len(receiver.at(region.hook)), outbox(fhir_server.db_url, "task-changed", region.ooh))

    def test_a_status_an_administrator_sets_is_told_to_the_receiver(
            self, fhir_server: Any, receiver: Receiver, region: Region) -> None:
        """Only the organisation that made a change is spared: the post hears of what an administrator did."""
        share = self.announced(fhir_server, receiver, region)
        accepted = set_status(fhir_server.client(), share, "accepted")
        deliver(fhir_server.db_url)

        assert (200, 2) == (accepted.status_code, len(receiver.at(region.hook)))

    def test_an_overdue_handover_is_told_to_the_receiver(
            self, fhir_server: Any, receiver: Receiver, region: Region) -> None:
        """Two days without an answer: the Task turns overdue, and the post hears of it."""
        share = self.announced(fhir_server, receiver, region)
        due = datetime.fromisoformat(share["restriction"]["period"]["end"].replace("Z", "+00:00"))
        with engine_on(fhir_server) as engine:
            engine.tick(due + timedelta(minutes=1))
        deliver(fhir_server.db_url, due + timedelta(minutes=2))
        task = region.ooh_client.get(f"/Task/{share['id']}").json()

        assert ("overdue", 2) == (task["businessStatus"]["coding"][0]["code"], len(receiver.at(region.hook)))
