"""Security over real HTTP: bearer tokens on every route, organisations scoped to the patients they take part
in, an audit trail readable as AuditEvents, and tokens stored only as hashes."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlmodel import select
from zorgpad.engine.store.db import Database
from zorgpad.engine.store.tables import ApiToken

pytestmark = pytest.mark.slow

FHIR_JSON = "application/fhir+json"
JSON_PATCH = {"Content-Type": "application/json-patch+json"}


def uid() -> str:
    """A short unique suffix, so that tests sharing the module's server never collide."""
    return uuid.uuid4().hex[:12]




def is_outcome(response: httpx.Response) -> bool:
    """Whether a response is an OperationOutcome in the FHIR media type."""
    return (response.headers.get("content-type", "").startswith(FHIR_JSON)
            and response.json().get("resourceType") == "OperationOutcome")


@dataclass
class Practice:
    """A GP organisation with its token, and one patient of its own with an Observation and a Task."""

    org: str
    client: httpx.Client
    patient: str
    observation: str


def new_org(fhir_server: Any, prefix: str = "org") -> tuple[str, httpx.Client]:
    """A fresh organisation reference and a client with its token."""
    org = f"Organization/{prefix}-{uid()}"
    return org, fhir_server.client(fhir_server.token(org))


@pytest.fixture
def practice(fhir_server: Any) -> Practice:
    """A fresh GP practice with one patient and one Observation about that patient."""
    org, client = new_org(fhir_server, "gp")
    pid, oid = f"sec-{uid()}", f"sec-{uid()}"
    assert 201 == client.put(f"/Patient/{pid}", json={"resourceType": "Patient", "id": pid,
                                                      "generalPractitioner": [{"reference": org}]}).status_code
    assert 201 == client.put(f"/Observation/{oid}", json={
        "resourceType": "Observation", "id": oid, "status": "final", "code": {"text": "surprise question"},
        "subject": {"reference": f"Patient/{pid}"}}).status_code
    return Practice(org, client, f"Patient/{pid}", f"Observation/{oid}")


APPLY = {"resourceType": "Parameters", "parameter": [{"name": "subject", "valueReference": {"reference": "Patient/x"}}]}
PATIENT = {"resourceType": "Patient", "id": "x"}
#: (method, path under /fhir, JSON body) of every route except /metadata.
ROUTES = [
    ("GET", "/Patient/x", None),
    ("GET", "/Patient/x/_history", None),
    ("GET", "/Patient/x/_history/1", None),
    ("GET", "/Patient", None),
    ("POST", "/Patient/_search", None),
    ("POST", "/Patient", PATIENT),
    ("PUT", "/Patient/x", PATIENT),
    ("PATCH", "/Patient/x", [{"op": "add", "path": "/gender", "value": "male"}]),
    ("DELETE", "/Patient/x", None),
    ("GET", "/PlanDefinition", None),
    ("GET", "/PlanDefinition/example-acp", None),
    ("GET", "/PlanDefinition/example-acp/_history/1.0.0", None),
    ("POST", "/PlanDefinition/example-acp/$apply", APPLY),
    ("GET", "/PlanDefinition/example-acp/$apply?subject=Patient/x", None),
    ("GET", "/AuditEvent", None),
    ("GET", "/AuditEvent/1", None),
    ("POST", "", {"resourceType": "Bundle", "type": "batch", "entry": []}),
    ("POST", "/$process-message", {"resourceType": "Bundle", "type": "message", "entry": []}),
]


def call(fhir_server: Any, token: str, method: str, path: str, body: Any) -> httpx.Response:
    """One request with ``Authorization: Bearer token`` ("" sends no Authorization header)."""
    headers = {"Accept": FHIR_JSON, "Content-Type": JSON_PATCH["Content-Type"] if method == "PATCH" else FHIR_JSON}
    if token:
        headers["Authorization"] = token
    content = json.dumps(body).encode() if body is not None else None
    return httpx.request(method, fhir_server.fhir + path, headers=headers, content=content, timeout=30)


class TestAuthentication:
    """Every route but /metadata needs a valid bearer token."""

    @pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=[f"{m} {p or '/'}" for m, p, _ in ROUTES])
    def test_no_token_is_401_with_an_outcome_and_www_authenticate(self, fhir_server: Any, method: str, path: str,
                                                                   body: Any) -> None:
        """Without Authorization the route answers 401, an OperationOutcome and a WWW-Authenticate challenge."""
        response = call(fhir_server, "", method, path, body)

        assert 401 == response.status_code
        assert is_outcome(response)
        assert response.headers.get("www-authenticate", "").lower().startswith("bearer")

    @pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=[f"{m} {p or '/'}" for m, p, _ in ROUTES])
    def test_a_wrong_token_is_401(self, fhir_server: Any, method: str, path: str, body: Any) -> None:
        """An unknown bearer token answers 401 with an OperationOutcome and a challenge."""
        response = call(fhir_server, "Bearer zp_not-a-real-token", method, path, body)

        assert 401 == response.status_code
        assert is_outcome(response)
        assert "www-authenticate" in response.headers

    @pytest.mark.parametrize("authorization", ["Basic YWRtaW46YWRtaW4=", "Bearer", "Token zp_x", "zp_no-scheme"])
    def test_malformed_authorization_is_401(self, fhir_server: Any, authorization: str) -> None:
        """Another scheme, an empty bearer token or no scheme at all answers 401."""
        response = call(fhir_server, authorization, "GET", "/Patient/x", None)

        assert 401 == response.status_code
        assert is_outcome(response)

    def test_a_revoked_token_is_401(self, fhir_server: Any) -> None:
        """A token that was revoked no longer works."""
        org = f"Organization/revoked-{uid()}"
        token = fhir_server.token(org)
        assert 404 == fhir_server.client(token).get("/Patient/x").status_code

        def revoke(session: Any) -> None:
            for row in session.exec(select(ApiToken).where(ApiToken.organisation == org)).all():
                row.revoked_at = datetime.now(UTC)
                session.add(row)

        db = Database(fhir_server.db_url)
        try:
            db.run(revoke)
        finally:
            db.dispose()

        response = fhir_server.client(token).get("/Patient/x")

        assert 401 == response.status_code

    def test_a_token_is_checked_before_the_body(self, fhir_server: Any) -> None:
        """Without a token even a malformed body answers 401: nothing is parsed for an anonymous caller."""
        response = httpx.post(f"{fhir_server.fhir}/Patient", content=b"{not json",
                              headers={"Content-Type": FHIR_JSON}, timeout=30)

        assert 401 == response.status_code

    def test_metadata_needs_no_token(self, fhir_server: Any) -> None:
        """/metadata answers an anonymous caller."""
        assert 200 == call(fhir_server, "", "GET", "/metadata", None).status_code

    def test_a_refused_write_stores_nothing(self, fhir_server: Any) -> None:
        """An unauthenticated create leaves the database as it was."""
        before = fhir_server.stored_counts()

        pid = f"anon-{uid()}"
        call(fhir_server, "", "PUT", f"/Patient/{pid}", {"resourceType": "Patient", "id": pid})
        call(fhir_server, "Bearer zp_wrong", "POST", "/Patient", {"resourceType": "Patient"})

        assert before == fhir_server.stored_counts()


class TestOrganisationScope:
    """An organisation sees only the patients it takes part in."""

    @pytest.mark.parametrize("what", ["patient", "observation", "history", "vread"])
    def test_another_organisations_patient_data_is_404(self, fhir_server: Any, practice: Practice,
                                                       what: str) -> None:
        """Reads of another practice's patient data answer 404 (never 403, which would leak existence)."""
        _, stranger = new_org(fhir_server)
        path = {"patient": f"/{practice.patient}", "observation": f"/{practice.observation}",
                "history": f"/{practice.patient}/_history", "vread": f"/{practice.observation}/_history/1"}[what]

        response = stranger.get(path)

        assert 404 == response.status_code
        assert is_outcome(response)

    def test_an_unknown_and_a_hidden_patient_answer_alike(self, fhir_server: Any, practice: Practice) -> None:
        """The 404 for a hidden patient is the same as for one that does not exist, apart from the id."""
        _, stranger = new_org(fhir_server)
        hidden = stranger.get(f"/{practice.patient}")
        missing = stranger.get("/Patient/sec-nobody")

        assert (hidden.status_code, hidden.json()["issue"][0]["code"]) == (missing.status_code,
                                                                           missing.json()["issue"][0]["code"])
        assert (hidden.json()["issue"][0]["diagnostics"].replace(practice.patient, "Patient/sec-nobody")
                == missing.json()["issue"][0]["diagnostics"])

    def test_the_engine_task_and_careplan_of_another_organisations_patient_are_404(
            self, fhir_server: Any, practice: Practice) -> None:
        """The CarePlan and Tasks of someone else's patient are hidden too."""
        plan = practice.client.post("/PlanDefinition/example-acp/$apply", json={
            "resourceType": "Parameters",
            "parameter": [{"name": "subject", "valueReference": {"reference": practice.patient}}]}).json()
        task = plan["activity"][0]["reference"]["reference"]
        _, stranger = new_org(fhir_server)

        assert [404, 404] == [stranger.get(f"/CarePlan/{plan['id']}").status_code, stranger.get(f"/{task}").status_code]

    def test_the_general_practitioner_sees_the_patient(self, practice: Practice) -> None:
        """The organisation named in generalPractitioner reads the Patient and its Observation."""
        assert [200, 200] == [practice.client.get(f"/{practice.patient}").status_code,
                              practice.client.get(f"/{practice.observation}").status_code]

    def test_a_gp_through_a_practitioner_role_sees_the_patient(self, fhir_server: Any) -> None:
        """generalPractitioner naming a PractitionerRole of the organisation gives access too."""
        org, client = new_org(fhir_server, "gp")
        role, pid = f"role-{uid()}", f"sec-{uid()}"
        admin = fhir_server.client()
        admin.put(f"/PractitionerRole/{role}", json={"resourceType": "PractitionerRole", "id": role,
                                                     "organization": {"reference": org}})
        admin.put(f"/Patient/{pid}", json={"resourceType": "Patient", "id": pid,
                                           "generalPractitioner": [{"reference": f"PractitionerRole/{role}"}]})

        assert 200 == client.get(f"/Patient/{pid}").status_code

    def test_a_care_team_member_sees_the_patient(self, fhir_server: Any, practice: Practice) -> None:
        """An organisation in the patient's CareTeam (participant.member) reads the patient's data."""
        member, client = new_org(fhir_server, "homecare")
        assert 404 == client.get(f"/{practice.patient}").status_code
        practice.client.post("/CareTeam", json={"resourceType": "CareTeam", "status": "active",
                                                "subject": {"reference": practice.patient},
                                                "participant": [{"member": {"reference": member}}]})

        assert [200, 200] == [client.get(f"/{practice.patient}").status_code,
                              client.get(f"/{practice.observation}").status_code]

    @pytest.mark.parametrize("element", ["owner", "requester"])
    def test_a_task_owner_or_requester_sees_the_patient(self, fhir_server: Any, practice: Practice,
                                                        element: str) -> None:
        """An organisation that owns or requested one of the patient's Tasks reads the patient's data."""
        org, client = new_org(fhir_server, "hospice")
        practice.client.post("/Task", json={"resourceType": "Task", "status": "requested", "intent": "order",
                                            "for": {"reference": practice.patient}, element: {"reference": org}})

        assert 200 == client.get(f"/{practice.patient}").status_code

    def test_leaving_the_care_team_ends_access(self, fhir_server: Any, practice: Practice) -> None:
        """When the CareTeam is deleted, its former member no longer sees the patient."""
        member, client = new_org(fhir_server, "homecare")
        team = practice.client.post("/CareTeam", json={"resourceType": "CareTeam", "status": "active",
                                                       "subject": {"reference": practice.patient},
                                                       "participant": [{"member": {"reference": member}}]}).json()
        assert 200 == client.get(f"/{practice.patient}").status_code

        practice.client.delete(f"/CareTeam/{team['id']}")

        assert 404 == client.get(f"/{practice.patient}").status_code

    def test_admin_sees_every_patient(self, fhir_server: Any, practice: Practice) -> None:
        """The administrator's token reads any organisation's patient data."""
        admin = fhir_server.client()

        assert [200, 200] == [admin.get(f"/{practice.patient}").status_code,
                              admin.get(f"/{practice.observation}").status_code]

    def test_directory_resources_are_visible_to_every_organisation(self, fhir_server: Any) -> None:
        """An Organization (no patient) is readable with any organisation's token."""
        oid = f"dir-{uid()}"
        fhir_server.client().put(f"/Organization/{oid}", json={"resourceType": "Organization", "id": oid})
        _, client = new_org(fhir_server)

        assert 200 == client.get(f"/Organization/{oid}").status_code

    def test_a_provenance_about_another_organisations_patient_is_404(self, fhir_server: Any,
                                                                      practice: Practice) -> None:
        """A Provenance whose target is the patient is patient data: hidden from other organisations."""
        prov = f"sec-{uid()}"
        practice.client.put(f"/Provenance/{prov}", json={
            "resourceType": "Provenance", "id": prov, "target": [{"reference": practice.patient}],
            "recorded": "2024-01-01T00:00:00Z", "agent": [{"who": {"reference": practice.org}}]})
        _, stranger = new_org(fhir_server)

        assert 404 == stranger.get(f"/Provenance/{prov}").status_code


class TestOrganisationWrites:
    """An organisation writes only for the patients it takes part in."""

    def test_writing_about_another_organisations_patient_is_refused(self, fhir_server: Any,
                                                                    practice: Practice) -> None:
        """An Observation about someone else's patient answers 403 or 404 and nothing is stored."""
        _, stranger = new_org(fhir_server)
        before = fhir_server.stored_counts()

        response = stranger.post("/Observation", json={"resourceType": "Observation", "status": "final",
                                                       "code": {"text": "x"},
                                                       "subject": {"reference": practice.patient}})

        assert response.status_code in (403, 404)
        assert is_outcome(response)
        assert before == fhir_server.stored_counts()

    def test_an_absolute_reference_does_not_get_around_the_scope(self, fhir_server: Any,
                                                                 practice: Practice) -> None:
        """Naming the patient by its absolute URL on this server is refused just the same."""
        _, stranger = new_org(fhir_server)
        before = fhir_server.stored_counts()

        response = stranger.post("/Observation", json={
            "resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "subject": {"reference": f"{fhir_server.fhir}/{practice.patient}"}})

        assert response.status_code in (403, 404)
        assert before == fhir_server.stored_counts()

    @pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
    def test_changing_another_organisations_patient_is_404(self, fhir_server: Any, practice: Practice,
                                                           method: str) -> None:
        """PUT, PATCH and DELETE of someone else's Patient answer 404 and change nothing."""
        _, stranger = new_org(fhir_server)
        pid = practice.patient.split("/")[1]
        body = {"PUT": {"resourceType": "Patient", "id": pid, "gender": "male"},
                "PATCH": [{"op": "add", "path": "/gender", "value": "male"}], "DELETE": None}[method]
        before = fhir_server.stored_counts()

        response = stranger.request(method, f"/{practice.patient}", content=None if body is None else json.dumps(body),
                                    headers=JSON_PATCH if method == "PATCH" else None)

        assert 404 == response.status_code
        assert before == fhir_server.stored_counts()
        assert "gender" not in practice.client.get(f"/{practice.patient}").json()

    def test_applying_for_another_organisations_patient_is_404(self, fhir_server: Any, practice: Practice) -> None:
        """$apply for someone else's patient answers 404 and enrols nobody."""
        _, stranger = new_org(fhir_server)
        before = fhir_server.stored_counts()

        response = stranger.post("/PlanDefinition/example-acp/$apply", json={
            "resourceType": "Parameters",
            "parameter": [{"name": "subject", "valueReference": {"reference": practice.patient}}]})

        assert 404 == response.status_code
        assert before == fhir_server.stored_counts()

    def test_an_organisation_may_register_its_own_patient(self, fhir_server: Any) -> None:
        """A new Patient naming the caller as generalPractitioner is created (201)."""
        org, client = new_org(fhir_server, "gp")

        response = client.post("/Patient", json={"resourceType": "Patient",
                                                 "generalPractitioner": [{"reference": org}]})

        assert 201 == response.status_code

    @pytest.mark.parametrize("gp", [None, "Organization/someone-else"])
    def test_an_organisation_may_not_register_a_patient_of_another_gp(self, fhir_server: Any,
                                                                      gp: str | None) -> None:
        """A new Patient naming another (or no) generalPractitioner answers 403 and nothing is stored."""
        _, client = new_org(fhir_server, "gp")
        body: dict[str, Any] = {"resourceType": "Patient"}
        if gp:
            body["generalPractitioner"] = [{"reference": gp}]
        before = fhir_server.stored_counts()

        response = client.post("/Patient", json=body)

        assert 403 == response.status_code
        assert is_outcome(response)
        assert before == fhir_server.stored_counts()

    def test_re_registering_a_deleted_patient_does_not_expose_its_records(self, fhir_server: Any,
                                                                          practice: Practice) -> None:
        """Another organisation re-creating a deleted Patient's id does not get to read the old Observations."""
        assert 204 == practice.client.delete(f"/{practice.patient}").status_code
        org, stranger = new_org(fhir_server, "gp")
        pid = practice.patient.split("/")[1]
        stranger.put(f"/{practice.patient}", json={"resourceType": "Patient", "id": pid,
                                                    "generalPractitioner": [{"reference": org}]})

        response = stranger.get(f"/{practice.observation}")

        assert 404 == response.status_code


class TestAudit:
    """Every read and write of patient data is in the audit log, searchable as AuditEvent."""

    def events(self, client: httpx.Client, patient: str) -> list[dict[str, Any]]:
        """The AuditEvents about ``patient`` that ``client`` may see."""
        response = client.get("/AuditEvent", params={"patient": patient, "_count": "1000"})
        assert 200 == response.status_code, response.text
        return [e["resource"] for e in response.json().get("entry", [])]

    def test_a_read_is_audited_with_who_what_when_and_outcome(self, fhir_server: Any, practice: Practice) -> None:
        """The practice's read of its Patient shows up with the organisation, the Patient, the time and outcome 0."""
        practice.client.get(f"/{practice.patient}")

        reads = [e for e in self.events(fhir_server.client(), practice.patient)
                 if e["subtype"][0]["code"] == "read"]
        assert 1 == len(reads)
        event = reads[0]
        assert [{"reference": practice.org}] == [a["who"] for a in event["agent"]]
        assert {"reference": practice.patient} in [e.get("what") for e in event["entity"]]
        assert ("R", "0") == (event["action"], event["outcome"])
        recorded = datetime.fromisoformat(event["recorded"].replace("Z", "+00:00"))
        assert abs((datetime.now(UTC) - recorded).total_seconds()) < 60

    def test_every_kind_of_access_is_audited(self, fhir_server: Any, practice: Practice) -> None:
        """Create, read, vread, history, update, patch and delete each leave an AuditEvent."""
        client, oid = practice.client, f"sec-{uid()}"
        body = {"resourceType": "Observation", "id": oid, "status": "final", "code": {"text": "x"},
                "subject": {"reference": practice.patient}}
        client.put(f"/Observation/{oid}", json=body)
        client.get(f"/Observation/{oid}")
        client.get(f"/Observation/{oid}/_history/1")
        client.get(f"/Observation/{oid}/_history")
        client.put(f"/Observation/{oid}", json={**body, "status": "amended"})
        client.patch(f"/Observation/{oid}", headers=JSON_PATCH,
                     content=json.dumps([{"op": "replace", "path": "/status", "value": "corrected"}]))
        client.delete(f"/Observation/{oid}")

        about = [e for e in self.events(fhir_server.client(), practice.patient)
                 if any(f"Observation/{oid}" in (x.get("what") or {}).get("reference", "") for x in e["entity"])]
        codes = sorted(e["subtype"][0]["code"] for e in about)
        assert ["create", "delete", "history-instance", "read", "update", "update", "vread"] == codes
        assert {practice.org} == {e["agent"][0]["who"]["reference"] for e in about}

    def test_audit_events_are_valid_fhir(self, fhir_server: Any, practice: Practice) -> None:
        """Each AuditEvent validates as FHIR."""
        from fhir.resources.R4B.auditevent import AuditEvent

        practice.client.get(f"/{practice.patient}")

        events = self.events(fhir_server.client(), practice.patient)
        assert len(events) >= 3
        assert [e["id"] for e in events] == [AuditEvent.model_validate(e).id for e in events]

    def test_the_practice_sees_the_audit_trail_of_its_patient(self, practice: Practice) -> None:
        """The GP organisation may search the AuditEvents of its own patient."""
        practice.client.get(f"/{practice.patient}")

        assert any(e["subtype"][0]["code"] == "read" for e in self.events(practice.client, practice.patient))

    def test_another_organisation_sees_no_audit_events_of_the_patient(self, fhir_server: Any,
                                                                      practice: Practice) -> None:
        """A stranger's AuditEvent search for the patient finds nothing, and a direct read is 404."""
        practice.client.get(f"/{practice.patient}")
        event_id = self.events(fhir_server.client(), practice.patient)[0]["id"]
        _, stranger = new_org(fhir_server)

        assert [] == self.events(stranger, practice.patient)
        assert 404 == stranger.get(f"/AuditEvent/{event_id}").status_code

    def test_an_unfiltered_search_hides_other_organisations_patients(self, fhir_server: Any,
                                                                     practice: Practice) -> None:
        """A stranger's AuditEvent search without a patient filter holds no event about the patient."""
        practice.client.get(f"/{practice.patient}")
        _, stranger = new_org(fhir_server)

        response = stranger.get("/AuditEvent", params={"_count": "1000"})

        assert 200 == response.status_code
        assert [] == [e for e in response.json().get("entry", []) if practice.patient in json.dumps(e)]


class TestTokens:
    """Tokens are stored only as hashes."""

    def test_no_row_of_the_token_table_holds_a_secret(self, fhir_server: Any) -> None:
        """Neither the admin token nor an organisation token appears in any column of api_token."""
        secret = fhir_server.token(f"Organization/hashed-{uid()}")
        db = Database(fhir_server.db_url)
        try:
            rows = db.run(lambda s: [r.model_dump() for r in s.exec(select(ApiToken)).all()])
        finally:
            db.dispose()

        dumped = json.dumps(rows, default=str)
        assert len(rows) >= 2
        assert [] == [t for t in (secret, fhir_server.admin, secret.removeprefix("zp_"),
                                  fhir_server.admin.removeprefix("zp_")) if t in dumped]

    def test_the_stored_hash_is_not_the_token(self, fhir_server: Any) -> None:
        """Every stored token_hash is a fixed-length digest, not a secret."""
        db = Database(fhir_server.db_url)
        try:
            hashes = db.run(lambda s: [r.token_hash for r in s.exec(select(ApiToken)).all()])
        finally:
            db.dispose()

        assert {64} == {len(h) for h in hashes}
        assert [] == [h for h in hashes if h.startswith("zp_")]
