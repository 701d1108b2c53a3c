"""Enrolment over real HTTP: ``PlanDefinition/$apply``, the engine's Tasks, and Task updates by their owner
becoming engine events."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.plandefinition import PlanDefinition
from sqlmodel import select
from zorgpad.engine.store.db import Database
from zorgpad.engine.store.tables import Enrolment, StoredResource

pytestmark = pytest.mark.slow

FHIR_JSON = "application/fhir+json"
CANONICAL = "https://zorgpad.nl/fhir/PlanDefinition/example-acp"
ROLE_SYSTEM = "https://zorgpad.nl/fhir/CodeSystem/care-role"


def uid() -> str:
    """A short unique suffix, so that tests sharing the module's server never collide."""
    return uuid.uuid4().hex[:12]




def is_outcome(response: httpx.Response) -> bool:
    """Whether a response is an OperationOutcome in the FHIR media type."""
    return (response.headers.get("content-type", "").startswith(FHIR_JSON)
            and response.json().get("resourceType") == "OperationOutcome")


def diagnostics(response: httpx.Response) -> str:
    """Every issue's diagnostics of an OperationOutcome, joined."""
    return " | ".join(issue.get("diagnostics", "") for issue in response.json().get("issue", []))


def instant(text: str) -> datetime:
    """A FHIR instant as an aware datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def apply_body(subject: str) -> dict[str, Any]:
    """The Parameters of a $apply for one subject."""
    return {"resourceType": "Parameters", "parameter": [{"name": "subject", "valueReference": {"reference": subject}}]}


@dataclass
class Enrolled:
    """A patient of a fresh GP practice, enrolled in example-acp by that practice."""

    gp: str
    client: httpx.Client
    patient: str
    plan: dict[str, Any]

    def careplan(self) -> dict[str, Any]:
        """The CarePlan as it is now."""
        response = self.client.get(f"/CarePlan/{self.plan['id']}")
        assert 200 == response.status_code, response.text
        return dict(response.json())

    def tasks(self) -> list[dict[str, Any]]:
        """The CarePlan's Tasks as they are now, in the order the CarePlan lists them."""
        refs = [a["reference"]["reference"] for a in self.careplan().get("activity", [])]
        return [self.client.get(f"/{ref}").json() for ref in refs]

    def first_task(self) -> dict[str, Any]:
        """The first step's Task as it is now."""
        return self.tasks()[0]


def new_practice(fhir_server: Any) -> tuple[str, httpx.Client]:
    """A fresh GP organisation and a client with its token."""
    gp = f"Organization/gp-{uid()}"
    return gp, fhir_server.client(fhir_server.token(gp))


def register(client: httpx.Client, gp: str) -> str:
    """Register a new Patient with ``gp`` as generalPractitioner; its reference."""
    pid = f"enrol-{uid()}"
    response = client.put(f"/Patient/{pid}", json={"resourceType": "Patient", "id": pid,
                                                   "generalPractitioner": [{"reference": gp}]})
    assert 201 == response.status_code, response.text
    return f"Patient/{pid}"


@pytest.fixture
def enrolled(fhir_server: Any) -> Enrolled:
    """A freshly registered and enrolled patient."""
    gp, client = new_practice(fhir_server)
    patient = register(client, gp)
    response = client.post("/PlanDefinition/example-acp/$apply", json=apply_body(patient))
    assert 200 == response.status_code, response.text
    return Enrolled(gp, client, patient, response.json())


def put_task(client: httpx.Client, task: dict[str, Any], **changes: Any) -> httpx.Response:
    """PUT the Task back with ``changes``."""
    return client.put(f"/Task/{task['id']}", json={**task, **changes})


class TestApply:
    """POST /fhir/PlanDefinition/example-acp/$apply."""

    def test_apply_answers_a_careplan_for_the_newest_pathway_version(self, enrolled: Enrolled) -> None:
        """The answer is a CarePlan that instantiates example-acp|1.1.0, the newest registered version."""
        assert "CarePlan" == enrolled.plan["resourceType"]
        assert [f"{CANONICAL}|1.1.0"] == enrolled.plan["instantiatesCanonical"]
        assert ({"reference": enrolled.patient}, "active") == (enrolled.plan["subject"], enrolled.plan["status"])

    def test_the_careplan_is_stored(self, enrolled: Enrolled) -> None:
        """The CarePlan can be read back by its id."""
        assert enrolled.plan["instantiatesCanonical"] == enrolled.careplan()["instantiatesCanonical"]

    def test_the_enrolment_is_recorded_on_the_newest_version(self, fhir_server: Any, enrolled: Enrolled) -> None:
        """The enrolment row in the database is pinned to version 1.1.0."""
        db = Database(fhir_server.db_url)
        try:
            row = db.run(lambda s: s.get(Enrolment, enrolled.plan["id"]))
        finally:
            db.dispose()

        assert row is not None
        assert ("example-acp", "1.1.0", enrolled.patient) == (row.pathway_id, row.pathway_version, row.patient)

    def test_the_first_task_is_persisted(self, fhir_server: Any, enrolled: Enrolled) -> None:
        """The first step's Task is in the resource table."""
        ref = enrolled.plan["activity"][0]["reference"]["reference"]
        db = Database(fhir_server.db_url)
        try:
            row = db.run(lambda s: s.get(StoredResource, ("Task", ref.split("/")[1])))
        finally:
            db.dispose()

        assert row is not None
        assert (False, enrolled.patient) == (row.deleted, row.patient)

    def test_the_first_task_is_owned_by_the_patients_gp(self, enrolled: Enrolled) -> None:
        """The Task of the first step is requested of the GP practice named in generalPractitioner."""
        task = enrolled.first_task()

        assert ("Task", "requested", "order") == (task["resourceType"], task["status"], task["intent"])
        assert {"reference": enrolled.gp} == task["owner"]

    def test_the_first_task_points_at_the_careplan_and_the_patient(self, enrolled: Enrolled) -> None:
        """basedOn is the CarePlan and for is the patient."""
        task = enrolled.first_task()

        assert [{"reference": f"CarePlan/{enrolled.plan['id']}"}] == task["basedOn"]
        assert {"reference": enrolled.patient} == task["for"]

    def test_the_first_task_carries_the_role_and_the_due_date(self, enrolled: Enrolled) -> None:
        """performerType is the GP role code and restriction.period.end is 7 days (the step's due) after it opened."""
        task = enrolled.first_task()

        assert [{"coding": [{"system": ROLE_SYSTEM, "code": "gp"}]}] == task["performerType"]
        assert timedelta(days=7) == instant(task["restriction"]["period"]["end"]) - instant(task["authoredOn"])

    def test_the_first_task_is_the_register_step(self, enrolled: Enrolled) -> None:
        """The one open Task is the register step of round 0."""
        task = enrolled.first_task()

        assert 1 == len(enrolled.plan["activity"])
        assert "Add to the palliative register" == task["description"]
        assert [f"{enrolled.plan['id']}/register/0"] == [i["value"] for i in task["identifier"]]

    def test_the_careplan_is_a_valid_fhir_careplan(self, enrolled: Enrolled) -> None:
        """The CarePlan validates as FHIR."""
        from fhir.resources.R4B.careplan import CarePlan

        assert enrolled.plan["id"] == CarePlan.model_validate(enrolled.careplan()).id

    def test_a_second_apply_for_the_same_patient_is_409(self, fhir_server: Any, enrolled: Enrolled) -> None:
        """Enrolling an enrolled patient again answers 409 and makes no second enrolment."""
        response = enrolled.client.post("/PlanDefinition/example-acp/$apply", json=apply_body(enrolled.patient))

        assert 409 == response.status_code
        assert is_outcome(response)
        db = Database(fhir_server.db_url)
        try:
            rows = db.run(lambda s: s.exec(select(Enrolment).where(Enrolment.patient == enrolled.patient)).all())
        finally:
            db.dispose()
        assert 1 == len(rows)

    def test_an_unknown_plandefinition_is_404(self, fhir_server: Any) -> None:
        """$apply of a pathway nobody registered answers 404."""
        gp, client = new_practice(fhir_server)
        patient = register(client, gp)

        response = client.post("/PlanDefinition/no-such-pathway/$apply", json=apply_body(patient))

        assert 404 == response.status_code
        assert is_outcome(response)

    def test_a_missing_subject_is_400(self, fhir_server: Any) -> None:
        """$apply without a subject parameter answers 400 naming the parameter."""
        response = fhir_server.client().post("/PlanDefinition/example-acp/$apply",
                                             json={"resourceType": "Parameters", "parameter": []})

        assert 400 == response.status_code
        assert is_outcome(response)
        assert "subject" in diagnostics(response)

    def test_a_subject_that_is_not_a_patient_is_400(self, fhir_server: Any) -> None:
        """$apply with a subject that is not a Patient reference answers 400."""
        response = fhir_server.client().post("/PlanDefinition/example-acp/$apply",
                                             json=apply_body("Organization/gp-1"))

        assert 400 == response.status_code
        assert is_outcome(response)

    def test_an_unknown_patient_is_404(self, fhir_server: Any) -> None:
        """$apply for a Patient nobody stored answers 404."""
        response = fhir_server.client().post("/PlanDefinition/example-acp/$apply",
                                             json=apply_body(f"Patient/nobody-{uid()}"))

        assert 404 == response.status_code
        assert is_outcome(response)

    def test_apply_with_a_subject_in_the_query_works(self, fhir_server: Any) -> None:
        """GET $apply?subject=Patient/x enrols too."""
        gp, client = new_practice(fhir_server)
        patient = register(client, gp)

        response = client.get("/PlanDefinition/example-acp/$apply", params={"subject": patient})

        assert 200 == response.status_code
        assert [f"{CANONICAL}|1.1.0"] == response.json()["instantiatesCanonical"]


class TestTaskUpdatesByTheOwner:
    """PUT of an engine Task by its owner is an engine event."""

    def test_completing_the_task_opens_the_next_step(self, enrolled: Enrolled) -> None:
        """The owner completes the first Task; the CarePlan then lists the next step's Task, requested of the GP."""
        task = enrolled.first_task()

        response = put_task(enrolled.client, task, status="completed")

        assert 200 == response.status_code, response.text
        tasks = enrolled.tasks()
        assert ["completed", "requested"] == [t["status"] for t in tasks]
        assert [f"{enrolled.plan['id']}/acp_talk/0"] == [i["value"] for i in tasks[1]["identifier"]]
        assert {"reference": enrolled.gp} == tasks[1]["owner"]

    def test_the_answer_to_completing_is_the_completed_task(self, enrolled: Enrolled) -> None:
        """The PUT answers the Task as the engine stored it: completed, with an execution end."""
        response = put_task(enrolled.client, enrolled.first_task(), status="completed")

        body = response.json()
        assert ("completed", True) == (body["status"], "end" in body.get("executionPeriod", {}))
        assert response.headers["etag"] == f'W/"{body["meta"]["versionId"]}"'

    def test_completing_writes_exactly_one_new_version(self, enrolled: Enrolled) -> None:
        """One status update by the owner adds one version to the Task's history, not two identical ones."""
        task = enrolled.first_task()

        response = put_task(enrolled.client, task, status="completed")

        history = enrolled.client.get(f"/Task/{task['id']}/_history").json()
        assert 'W/"2"' == response.headers["etag"]
        assert ["completed", "requested"] == [e["resource"]["status"] for e in history["entry"]]

    def test_patch_of_the_status_is_an_engine_event_too(self, enrolled: Enrolled) -> None:
        """A JSON Patch that sets status to completed advances the engine like a PUT."""
        task = enrolled.first_task()

        response = enrolled.client.patch(f"/Task/{task['id']}", headers={"Content-Type": "application/json-patch+json"},
                                         content=json.dumps([{"op": "replace", "path": "/status",
                                                              "value": "completed"}]))

        assert 200 == response.status_code, response.text
        assert ["completed", "requested"] == [t["status"] for t in enrolled.tasks()]

    def test_in_progress_then_completed_is_allowed(self, enrolled: Enrolled) -> None:
        """The owner may start the Task, then complete it."""
        started = put_task(enrolled.client, enrolled.first_task(), status="in-progress")
        completed = put_task(enrolled.client, enrolled.first_task(), status="completed")

        assert (200, 200) == (started.status_code, completed.status_code)
        assert "completed" == enrolled.first_task()["status"]

    def test_an_illegal_transition_is_422_naming_the_step(self, enrolled: Enrolled) -> None:
        """completed → in-progress answers 422 with an OperationOutcome that names the step."""
        put_task(enrolled.client, enrolled.first_task(), status="completed")
        task = enrolled.first_task()

        response = put_task(enrolled.client, task, status="in-progress")

        assert 422 == response.status_code
        assert is_outcome(response)
        assert "register" in diagnostics(response)
        assert task["meta"]["versionId"] == enrolled.first_task()["meta"]["versionId"]

    def test_an_invalid_status_code_is_400(self, enrolled: Enrolled) -> None:
        """Task.status "bogus" answers 400 naming Task.status, and the Task is unchanged."""
        task = enrolled.first_task()

        response = put_task(enrolled.client, task, status="bogus")

        assert 400 == response.status_code
        assert is_outcome(response)
        assert "Task.status" in diagnostics(response)
        assert task == enrolled.first_task()

    def test_an_organisation_outside_the_patients_care_cannot_update(self, fhir_server: Any,
                                                                     enrolled: Enrolled) -> None:
        """Another organisation's PUT answers 403 or 404, and the Task is unchanged."""
        _, stranger = new_practice(fhir_server)
        task = enrolled.first_task()

        response = put_task(stranger, task, status="completed")

        assert response.status_code in (403, 404)
        assert is_outcome(response)
        assert task == enrolled.first_task()

    def test_a_care_team_member_who_is_not_the_owner_gets_403(self, fhir_server: Any, enrolled: Enrolled) -> None:
        """An organisation that sees the patient (CareTeam member) but does not own the Task gets 403."""
        member, colleague = new_practice(fhir_server)
        team = {"resourceType": "CareTeam", "status": "active", "subject": {"reference": enrolled.patient},
                "participant": [{"member": {"reference": member}}]}
        assert 201 == enrolled.client.post("/CareTeam", json=team).status_code
        task = enrolled.first_task()
        assert 200 == colleague.get(f"/Task/{task['id']}").status_code

        response = put_task(colleague, task, status="completed")

        assert 403 == response.status_code
        assert is_outcome(response)
        assert task == enrolled.first_task()

    def test_the_owner_may_not_change_the_code(self, enrolled: Enrolled) -> None:
        """Changing an element that is not the owner's (code) answers 422 naming it; nothing changes."""
        task = enrolled.first_task()

        response = put_task(enrolled.client, task, status="completed", code={"text": "something else"})

        assert 422 == response.status_code
        assert is_outcome(response)
        assert "code" in diagnostics(response)
        assert task == enrolled.first_task()

    def test_the_owner_may_not_move_the_task_to_another_patient(self, enrolled: Enrolled) -> None:
        """Changing Task.for to another of the practice's patients answers 422 naming it; nothing changes."""
        other = register(enrolled.client, enrolled.gp)
        task = enrolled.first_task()

        response = put_task(enrolled.client, task, **{"for": {"reference": other}})

        assert 422 == response.status_code
        assert is_outcome(response)
        assert "for" in diagnostics(response)
        assert task == enrolled.first_task()

    def test_the_owner_may_add_a_note(self, enrolled: Enrolled) -> None:
        """A note is the owner's to add: the update is stored and the status stays requested."""
        task = enrolled.first_task()

        response = put_task(enrolled.client, task, note=[{"text": "called the patient"}])

        assert 200 == response.status_code, response.text
        assert ([{"text": "called the patient"}], "requested") == (enrolled.first_task()["note"],
                                                                   enrolled.first_task()["status"])

    def test_admin_may_complete_a_task(self, fhir_server: Any, enrolled: Enrolled) -> None:
        """An administrator's PUT of the status is accepted like the owner's."""
        response = put_task(fhir_server.client(), enrolled.first_task(), status="completed")

        assert 200 == response.status_code
        assert 2 == len(enrolled.tasks())


class TestPlanDefinition:
    """GET /fhir/PlanDefinition/example-acp."""

    def test_the_current_version_is_a_valid_plandefinition(self, fhir_server: Any) -> None:
        """The newest version (1.1.0) validates as an R4 PlanDefinition."""
        response = fhir_server.client().get("/PlanDefinition/example-acp")

        plan = PlanDefinition.model_validate(response.json())
        assert 200 == response.status_code
        assert (CANONICAL, "1.1.0", "example-acp") == (plan.url, plan.version, plan.id)

    def test_the_plandefinition_lists_the_steps(self, fhir_server: Any) -> None:
        """The actions of 1.1.0 carry its step ids as FHIR ids (acp_talk and check_in are new in 1.1.0)."""
        plan = fhir_server.client().get("/PlanDefinition/example-acp").json()

        ids = json.dumps(plan)
        assert all(f'"id": "{step}"' in ids for step in ("register", "acp-talk", "check-in", "review"))

    def test_vread_of_the_old_version_gives_1_0_0(self, fhir_server: Any) -> None:
        """/_history/1.0.0 answers the first version, with its own steps."""
        response = fhir_server.client().get("/PlanDefinition/example-acp/_history/1.0.0")

        plan = PlanDefinition.model_validate(response.json())
        assert 200 == response.status_code
        assert "1.0.0" == plan.version
        assert '"id": "conversation"' in json.dumps(response.json())

    def test_vread_of_an_unknown_version_is_404(self, fhir_server: Any) -> None:
        """/_history/9.9.9 answers 404 with an OperationOutcome."""
        response = fhir_server.client().get("/PlanDefinition/example-acp/_history/9.9.9")

        assert 404 == response.status_code
        assert is_outcome(response)

    def test_an_unknown_plandefinition_is_404(self, fhir_server: Any) -> None:
        """GET of a pathway nobody registered answers 404."""
        response = fhir_server.client().get("/PlanDefinition/no-such-pathway")

        assert 404 == response.status_code
        assert is_outcome(response)

    def test_an_organisation_may_read_the_plandefinition(self, fhir_server: Any) -> None:
        """PlanDefinitions are not patient data: any organisation's token may read them."""
        _, client = new_practice(fhir_server)

        assert 200 == client.get("/PlanDefinition/example-acp").status_code
