"""``POST /fhir`` with transaction and batch Bundles, over real HTTP against a `zorgpad serve` process."""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fhir.resources.R4B import get_fhir_model_class
from sqlalchemy import func
from sqlmodel import col, select
from zorgpad.engine.app import build_engine
from zorgpad.engine.registry import Registry
from zorgpad.engine.store.db import Database
from zorgpad.engine.store.resources import get_resource
from zorgpad.engine.store.tables import ResourceVersion, StoredResource
from zorgpad.fhir.access import Principal
from zorgpad.fhir.bundles import process_bundle
from zorgpad.fhir.context import FHIRContext
from zorgpad.fhir.outcomes import FHIRError

pytestmark = pytest.mark.slow

SYNTHEA = Path(__file__).resolve().parents[3] / "shared" / "corpora" / "synthea" / "R4"
IDENTIFIER_SYSTEM = "https://zorgpad.nl/test/bundles"
FHIRServer = Any  # tests/fhir/conftest.py FHIRServer (conftest modules are not importable by name)


def stored_counts(server: FHIRServer) -> dict[str, int]:
    """How many resources (current, not deleted) of each type the server's database holds."""
    db = Database(server.db_url)
    try:
        rows = db.run(lambda s: s.exec(select(StoredResource.resource_type, func.count())
                                       .where(col(StoredResource.deleted).is_(False))
                                       .group_by(StoredResource.resource_type)).all())
        return {str(rtype): int(n) for rtype, n in rows}
    finally:
        db.dispose()


def stored_among(server: FHIRServer, wanted: list[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which of the ``(type, id)`` pairs the database holds as current, not deleted resources."""
    ids = sorted({rid for _, rid in wanted})
    db = Database(server.db_url)
    try:
        rows = db.run(lambda s: s.exec(select(StoredResource.resource_type, StoredResource.id).where(
            col(StoredResource.id).in_(ids), col(StoredResource.deleted).is_(False))).all())
        return {(str(rtype), str(rid)) for rtype, rid in rows} & set(wanted)
    finally:
        db.dispose()


def stored_count(server: FHIRServer) -> int:
    """How many resources (current, not deleted) the server's database holds."""
    return sum(stored_counts(server).values())


def versions_of(server: FHIRServer, resource_type: str, resource_id: str) -> int:
    """How many versions of one resource the database holds."""
    db = Database(server.db_url)
    try:
        return int(db.run(lambda s: s.exec(select(func.count()).select_from(ResourceVersion).where(
            ResourceVersion.resource_type == resource_type, ResourceVersion.id == resource_id)).one()))
    finally:
        db.dispose()


def urn() -> str:
    """A fresh placeholder fullUrl."""
    return f"urn:uuid:{uuid.uuid4()}"


def patient(value: str | None = None, **extra: Any) -> dict[str, Any]:
    """A Patient with a test identifier."""
    return {"resourceType": "Patient", "active": True,
            "identifier": [{"system": IDENTIFIER_SYSTEM, "value": value or uuid.uuid4().hex}], **extra}


def observation(subject: str, **extra: Any) -> dict[str, Any]:
    """A weight Observation about ``subject``."""
    return {"resourceType": "Observation", "status": "final", "code": {"text": "weight"},
            "subject": {"reference": subject}, "valueQuantity": {"value": 61, "unit": "kg"}, **extra}


def post(full_url: str, resource: dict[str, Any], **request: Any) -> dict[str, Any]:
    """A create entry."""
    return {"fullUrl": full_url, "resource": resource,
            "request": {"method": "POST", "url": resource["resourceType"], **request}}


def bundle(kind: str, *entries: dict[str, Any]) -> dict[str, Any]:
    """A transaction or batch Bundle."""
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def send(client: httpx.Client, body: dict[str, Any]) -> httpx.Response:
    """POST a Bundle to the FHIR base (``[base]``, without the slash httpx would add to "")."""
    return client.post(str(client.base_url).rstrip("/"), json=body)


def location_id(entry: dict[str, Any]) -> str:
    """The id in an entry's response.location (``Type/id/_history/v``)."""
    return str(entry["response"]["location"].split("/")[1])


class TestTransaction:
    """A transaction is all or nothing, in FHIR order, with placeholders resolved."""

    def test_every_entry_is_answered_in_request_order(self, fhir_server: FHIRServer) -> None:
        """One response entry per request entry, in order, with status, location, etag, lastModified, resource."""
        client = fhir_server.client()
        person = urn()
        body = bundle("transaction", post(person, patient()), post(urn(), observation(person)))

        response = send(client, body)

        assert 200 == response.status_code, response.text
        answer = response.json()
        assert "transaction-response" == answer["type"]
        assert ["201 Created", "201 Created"] == [e["response"]["status"] for e in answer["entry"]]
        assert ["Patient", "Observation"] == [e["resource"]["resourceType"] for e in answer["entry"]]
        for entry in answer["entry"]:
            rtype, rid = entry["resource"]["resourceType"], entry["resource"]["id"]
            assert f"{rtype}/{rid}/_history/1" == entry["response"]["location"]
            assert 'W/"1"' == entry["response"]["etag"]
            assert entry["resource"]["meta"]["lastUpdated"] == entry["response"]["lastModified"]
        get_fhir_model_class("Bundle").model_validate(answer)

    def test_placeholders_become_the_server_assigned_ids_everywhere(self, fhir_server: FHIRServer) -> None:
        """urn:uuid references become ``Type/id`` in elements, extensions and contained resources, in any order."""
        client = fhir_server.client()
        person, practitioner = urn(), urn()
        weight = observation(person, performer=[{"reference": practitioner}],
                             extension=[{"url": "https://zorgpad.nl/test/ext",
                                         "valueReference": {"reference": person}}],
                             contained=[{"resourceType": "Provenance", "id": "p1",
                                         "target": [{"reference": person}], "recorded": "2024-01-01T00:00:00Z",
                                         "agent": [{"who": {"reference": practitioner}}]}])
        body = bundle("transaction", post(urn(), weight), post(person, patient()),
                      post(practitioner, {"resourceType": "Practitioner", "active": True}))

        answer = send(client, body).json()

        ids = [location_id(e) for e in answer["entry"]]
        read = client.get(f"Observation/{ids[0]}").json()
        assert f"Patient/{ids[1]}" == read["subject"]["reference"]
        assert [{"reference": f"Practitioner/{ids[2]}"}] == read["performer"]
        assert f"Patient/{ids[1]}" == read["extension"][0]["valueReference"]["reference"]
        assert [{"reference": f"Patient/{ids[1]}"}] == read["contained"][0]["target"]
        assert f"Practitioner/{ids[2]}" == read["contained"][0]["agent"][0]["who"]["reference"]
        assert 200 == client.get(f"Patient/{ids[1]}").status_code

    def test_references_to_an_updated_entry_use_its_id(self, fhir_server: FHIRServer) -> None:
        """A reference to the fullUrl of a PUT entry becomes that entry's ``Type/id``."""
        client = fhir_server.client()
        rid = uuid.uuid4().hex
        full_url = f"http://elsewhere.example/fhir/Patient/{rid}"
        body = bundle("transaction", post(urn(), observation(full_url)),
                      {"fullUrl": full_url, "resource": patient(id=rid),
                       "request": {"method": "PUT", "url": f"Patient/{rid}"}})

        answer = send(client, body).json()

        assert ["201 Created", "201 Created"] == [e["response"]["status"] for e in answer["entry"]]
        assert f"Patient/{rid}" == answer["entry"][0]["resource"]["subject"]["reference"]

    def test_an_invalid_entry_stores_nothing_and_is_named(self, fhir_server: FHIRServer) -> None:
        """One invalid entry fails the transaction with a 4xx naming the entry; nothing at all is stored."""
        client = fhir_server.client()
        person = urn()
        invalid = {k: v for k, v in observation(person).items() if k != "status"}
        body = bundle("transaction", post(person, patient()), post(urn(), observation(person)),
                      post(urn(), invalid))
        before = stored_count(fhir_server)

        response = send(client, body)

        assert 400 == response.status_code
        outcome = response.json()
        assert "OperationOutcome" == outcome["resourceType"]
        assert outcome["issue"][0]["diagnostics"].startswith("Bundle.entry[2] (POST Observation): ")
        assert "Observation.status" in outcome["issue"][0]["diagnostics"]
        assert ["Bundle.entry[2].resource.status"] == outcome["issue"][0]["expression"]
        assert before == stored_count(fhir_server)

    def test_a_failing_update_keeps_its_own_status(self, fhir_server: FHIRServer) -> None:
        """A stale If-Match in an entry fails the whole transaction with 412, after earlier entries ran."""
        client = fhir_server.client()
        rid = uuid.uuid4().hex
        assert 201 == client.put(f"Patient/{rid}", json=patient(id=rid)).status_code
        body = bundle("transaction", post(urn(), patient()),
                      {"resource": patient(id=rid, active=False),
                       "request": {"method": "PUT", "url": f"Patient/{rid}", "ifMatch": 'W/"7"'}})
        before = stored_count(fhir_server)

        response = send(client, body)

        assert 412 == response.status_code
        assert f"Bundle.entry[1] (PUT Patient/{rid})" in response.json()["issue"][0]["diagnostics"]
        assert before == stored_count(fhir_server)
        assert 1 == versions_of(fhir_server, "Patient", rid)

    def test_if_match_with_the_current_version_updates(self, fhir_server: FHIRServer) -> None:
        """A PUT entry with the current version in ifMatch stores the next version."""
        client = fhir_server.client()
        rid = uuid.uuid4().hex
        client.put(f"Patient/{rid}", json=patient(id=rid))
        body = bundle("transaction", {"resource": patient(id=rid, active=False),
                                      "request": {"method": "PUT", "url": f"Patient/{rid}", "ifMatch": 'W/"1"'}})

        entry = send(client, body).json()["entry"][0]

        assert "200 OK" == entry["response"]["status"]
        assert f"Patient/{rid}/_history/2" == entry["response"]["location"]
        assert False is client.get(f"Patient/{rid}").json()["active"]

    def test_conditional_create_finds_the_existing_resource(self, fhir_server: FHIRServer) -> None:
        """ifNoneExist creates once, then answers 200 with the existing resource, which references then name."""
        client = fhir_server.client()
        value = uuid.uuid4().hex
        condition = f"identifier={IDENTIFIER_SYSTEM}|{value}"

        def transaction() -> dict[str, Any]:
            person = urn()
            body = bundle("transaction", post(person, patient(value), ifNoneExist=condition),
                          post(urn(), observation(person)))
            response = send(client, body)
            assert 200 == response.status_code, response.text
            return dict(response.json())

        first, second = transaction(), transaction()

        assert ["201 Created", "201 Created"] == [e["response"]["status"] for e in first["entry"]]
        assert ["200 OK", "201 Created"] == [e["response"]["status"] for e in second["entry"]]
        assert first["entry"][0]["response"]["location"] == second["entry"][0]["response"]["location"]
        assert f"Patient/{location_id(first['entry'][0])}" == second["entry"][1]["resource"]["subject"]["reference"]
        found = client.get("Patient", params={"identifier": f"{IDENTIFIER_SYSTEM}|{value}"}).json()
        assert 1 == found["total"]

    def test_entries_run_in_fhir_order(self, fhir_server: FHIRServer) -> None:
        """DELETE, POST, PUT/PATCH, then GET whatever the Bundle's order; two changes of one instance are refused."""
        client = fhir_server.client()
        old, new = uuid.uuid4().hex, uuid.uuid4().hex
        client.put(f"Patient/{old}", json=patient(id=old))
        patch = [{"op": "replace", "path": "/active", "value": False}]
        binary = {"resourceType": "Binary", "contentType": "application/json-patch+json",
                  "data": base64.b64encode(json.dumps(patch).encode()).decode()}
        body = bundle("transaction",
                      {"request": {"method": "GET", "url": f"Patient/{new}"}},
                      {"resource": binary, "request": {"method": "PATCH", "url": f"Patient/{new}"}},
                      {"resource": patient(id=new), "request": {"method": "PUT", "url": f"Patient/{new}"}},
                      {"request": {"method": "DELETE", "url": f"Patient/{old}"}})

        response = send(client, body)

        assert 400 == response.status_code
        assert f"both change Patient/{new}" in response.json()["issue"][0]["diagnostics"]
        body["entry"].pop(1)

        answer = send(client, body).json()

        assert ["200 OK", "201 Created", "204 No Content"] == [e["response"]["status"] for e in answer["entry"]]
        assert new == answer["entry"][0]["resource"]["id"]
        assert 410 == client.get(f"Patient/{old}").status_code

    def test_a_get_of_a_deleted_resource_fails_the_transaction(self, fhir_server: FHIRServer) -> None:
        """A GET entry fails like a single GET (410 for a resource the transaction deleted), rolling back."""
        client = fhir_server.client()
        rid = uuid.uuid4().hex
        client.put(f"Patient/{rid}", json=patient(id=rid))
        body = bundle("transaction", {"request": {"method": "GET", "url": f"Patient/{rid}"}},
                      {"request": {"method": "DELETE", "url": f"Patient/{rid}"}})

        response = send(client, body)

        assert 410 == response.status_code
        assert response.json()["issue"][0]["diagnostics"].startswith(f"Bundle.entry[0] (GET Patient/{rid})")
        assert 200 == client.get(f"Patient/{rid}").status_code

    def test_a_patch_entry_applies_a_json_patch(self, fhir_server: FHIRServer) -> None:
        """A PATCH entry carries a Binary with a JSON Patch and answers the patched version."""
        client = fhir_server.client()
        rid = uuid.uuid4().hex
        client.put(f"Patient/{rid}", json=patient(id=rid))
        patch = [{"op": "add", "path": "/gender", "value": "female"}]
        binary = {"resourceType": "Binary", "contentType": "application/json-patch+json",
                  "data": base64.b64encode(json.dumps(patch).encode()).decode()}
        body = bundle("transaction", {"resource": binary, "request": {"method": "PATCH", "url": f"Patient/{rid}"}})

        entry = send(client, body).json()["entry"][0]

        assert "200 OK" == entry["response"]["status"]
        assert "female" == entry["resource"]["gender"]

    def test_a_placeholder_that_matches_no_entry_is_refused(self, fhir_server: FHIRServer) -> None:
        """A urn:uuid reference that no fullUrl in the Bundle answers cannot be stored."""
        client = fhir_server.client()
        dangling = urn()

        response = send(client, bundle("transaction", post(urn(), observation(dangling))))

        assert 400 == response.status_code
        assert dangling in response.json()["issue"][0]["diagnostics"]

    def test_created_entries_referring_to_each_other_in_a_circle_are_refused(self, fhir_server: FHIRServer) -> None:
        """Two created entries that refer to each other cannot both get ids first: 400, nothing stored."""
        client = fhir_server.client()
        encounter, condition = urn(), urn()
        person = urn()
        body = bundle("transaction", post(person, patient()),
                      post(encounter, {"resourceType": "Encounter", "status": "finished",
                                       "class": {"code": "AMB"}, "subject": {"reference": person},
                                       "diagnosis": [{"condition": {"reference": condition}}]}),
                      post(condition, {"resourceType": "Condition", "subject": {"reference": person},
                                       "encounter": {"reference": encounter}}))
        before = stored_count(fhir_server)

        response = send(client, body)

        assert 400 == response.status_code
        assert "Bundle.entry[1], Bundle.entry[2]" in response.json()["issue"][0]["diagnostics"]
        assert before == stored_count(fhir_server)

    def test_an_organisation_registers_its_patient_and_an_observation_together(self, fhir_server: FHIRServer
                                                                                 ) -> None:
        """A GP practice may create its patient with an Observation, but not write about another's patient."""
        org = f"gp-{uuid.uuid4().hex[:8]}"
        client = fhir_server.client(fhir_server.token(org))
        stranger = uuid.uuid4().hex
        fhir_server.client().put(f"Patient/{stranger}", json=patient(id=stranger))
        person = urn()
        mine = patient(generalPractitioner=[{"reference": f"Organization/{org}"}])

        allowed = send(client, bundle("transaction", post(urn(), observation(person)), post(person, mine)))
        refused = send(client, bundle("transaction", post(urn(), observation(f"Patient/{stranger}"))))

        assert ["201 Created", "201 Created"] == [e["response"]["status"] for e in allowed.json()["entry"]]
        assert 403 == refused.status_code
        assert "Bundle.entry[0]" in refused.json()["issue"][0]["diagnostics"]


class TestBatch:
    """A batch runs each entry on its own."""

    def test_a_failing_entry_fails_alone(self, fhir_server: FHIRServer) -> None:
        """Failing entries answer their own 4xx with an OperationOutcome; the others are stored."""
        client = fhir_server.client()
        rid = uuid.uuid4().hex
        body = bundle("batch", post(urn(), patient()),
                      post(urn(), observation("Patient/x", valueQuantity={"value": "heavy"})),
                      {"resource": patient(id=rid), "request": {"method": "PUT", "url": f"Patient/{rid}"}},
                      {"request": {"method": "GET", "url": f"Patient/{uuid.uuid4().hex}"}},
                      {"resource": patient(id="other"), "request": {"method": "PUT", "url": f"Patient/{rid}x"}})
        before = stored_count(fhir_server)

        response = send(client, body)

        assert 200 == response.status_code
        answer = response.json()
        assert "batch-response" == answer["type"]
        assert ["201 Created", "400 Bad Request", "201 Created", "404 Not Found", "400 Bad Request"] == [
            e["response"]["status"] for e in answer["entry"]]
        for failed in (answer["entry"][1], answer["entry"][3], answer["entry"][4]):
            assert "OperationOutcome" == failed["response"]["outcome"]["resourceType"]
        assert "Observation.valueQuantity.value" in answer["entry"][1]["response"]["outcome"]["issue"][0]["diagnostics"]
        assert before + 2 == stored_count(fhir_server)
        assert 200 == client.get(f"Patient/{rid}").status_code
        get_fhir_model_class("Bundle").model_validate(answer)

    def test_a_rolled_back_entry_leaves_the_earlier_writes_of_the_batch(self, fhir_server: FHIRServer) -> None:
        """An entry that fails after an earlier entry changed the same resource keeps that change only."""
        client = fhir_server.client()
        rid = uuid.uuid4().hex
        client.put(f"Patient/{rid}", json=patient(id=rid))
        body = bundle("batch",
                      {"resource": patient(id=rid, gender="male"),
                       "request": {"method": "PUT", "url": f"Patient/{rid}"}},
                      {"resource": patient(id=rid, gender="female"),
                       "request": {"method": "PUT", "url": f"Patient/{rid}", "ifMatch": 'W/"1"'}},
                      {"request": {"method": "GET", "url": f"Patient/{rid}"}})

        answer = send(client, body).json()

        assert ["200 OK", "412 Precondition Failed", "200 OK"] == [e["response"]["status"] for e in answer["entry"]]
        assert "male" == answer["entry"][2]["resource"]["gender"]
        assert 2 == versions_of(fhir_server, "Patient", rid)

    def test_get_entries_read_and_search(self, fhir_server: FHIRServer) -> None:
        """GET entries read a resource, search a type and read a registered PlanDefinition."""
        client = fhir_server.client()
        value, rid = uuid.uuid4().hex, uuid.uuid4().hex
        client.put(f"Patient/{rid}", json=patient(value, id=rid))
        body = bundle("batch", {"request": {"method": "GET", "url": f"Patient/{rid}"}},
                      {"request": {"method": "GET", "url": f"Patient?identifier={IDENTIFIER_SYSTEM}|{value}"}},
                      {"request": {"method": "GET", "url": "PlanDefinition/example-acp"}},
                      {"request": {"method": "GET", "url": f"Patient/{rid}/_history/1"}})

        answer = send(client, body).json()

        assert ["200 OK"] * 4 == [e["response"]["status"] for e in answer["entry"]]
        assert rid == answer["entry"][0]["resource"]["id"]
        assert 'W/"1"' == answer["entry"][0]["response"]["etag"]
        assert "searchset" == answer["entry"][1]["resource"]["type"]
        assert [rid] == [e["resource"]["id"] for e in answer["entry"][1]["resource"]["entry"]]
        assert "PlanDefinition" == answer["entry"][2]["resource"]["resourceType"]
        assert "1" == answer["entry"][3]["resource"]["meta"]["versionId"]

    def test_batch_entries_may_not_refer_to_each_other(self, fhir_server: FHIRServer) -> None:
        """A batch entry that refers to another entry's fullUrl fails; the other entry is stored."""
        client = fhir_server.client()
        person = urn()

        answer = send(client, bundle("batch", post(person, patient()), post(urn(), observation(person)))).json()

        assert ["201 Created", "400 Bad Request"] == [e["response"]["status"] for e in answer["entry"]]
        assert "use a transaction" in answer["entry"][1]["response"]["outcome"]["issue"][0]["diagnostics"]


class TestBundleShape:
    """Bodies that are not a transaction or batch Bundle are refused with 400."""

    @pytest.mark.parametrize(("body", "fragment"), [
        ({"resourceType": "Patient"}, "takes a Bundle"),
        ([], "takes a Bundle"),
        (bundle("collection"), "Bundle.type must be transaction or batch"),
        (bundle("message"), "$process-message"),
        ({"resourceType": "Bundle", "type": "batch", "entry": [{"bogus": 1}]}, "unknown element 'bogus'"),
        (bundle("transaction", {"resource": patient()}), "Bundle.entry[0]"),
        (bundle("transaction", {"request": {"method": "HEAD", "url": "Patient"}}), "request.method 'HEAD'"),
        (bundle("transaction", {"request": {"method": "PUT", "url": "Patient?identifier=x|y"}, "resource": patient()}),
         "conditional put is not supported"),
        (bundle("transaction", {"request": {"method": "POST", "url": "Observation"}, "resource": patient()}),
         "does not match the request url"),
        (bundle("transaction", {"request": {"method": "POST", "url": "https://other.example/fhir/Patient"},
                                "resource": patient()}), "is not on this server"),
    ])
    def test_a_malformed_bundle_is_refused(self, fhir_server: FHIRServer, body: Any, fragment: str) -> None:
        """The answer is a 4xx OperationOutcome that says what is wrong."""
        response = send(fhir_server.client(), body)

        assert 400 == response.status_code
        assert "OperationOutcome" == response.json()["resourceType"]
        assert fragment in response.json()["issue"][0]["diagnostics"]

    def test_an_empty_transaction_answers_an_empty_response(self, fhir_server: FHIRServer) -> None:
        """A transaction without entries succeeds and changes nothing."""
        answer = send(fhir_server.client(), bundle("transaction")).json()

        assert {"resourceType": "Bundle", "type": "transaction-response", "entry": []} == answer


class TestEntriesThatFailAfterWriting:
    """An entry that fails after writing (a listener refuses it) leaves nothing: SAVEPOINT or full rollback."""

    @pytest.fixture
    def refusing(self, db: Database) -> Any:
        """Process a Bundle in-process on ``db``, where writing a Patient named 'Refused' fails afterwards."""

        def refuse(_session: Any, stored: StoredResource, _previous: Any, _now: datetime) -> None:
            if stored.resource_type == "Patient" and stored.content.get("name") == [{"family": "Refused"}]:
                raise FHIRError(422, f"{stored.resource_type}/{stored.id} is refused after writing",
                                code="business-rule")

        engine = build_engine(db, Registry())
        db.resource_listeners.append(refuse)

        def run(body: dict[str, Any]) -> Any:
            def work(session: Any) -> Any:
                ctx = FHIRContext(engine, session, Principal("test", None, True), datetime.now(UTC),
                                  "http://zorgpad.test/fhir")
                return process_bundle(ctx, body)
            return db.run(work)

        return run

    def test_a_batch_keeps_the_other_entries_only(self, db: Database, refusing: Any) -> None:
        """The refused entry answers 422 and is not stored; the entries before and after it are."""
        body = bundle("batch", *({"resource": patient(id=rid, name=[{"family": family}]),
                                  "request": {"method": "PUT", "url": f"Patient/{rid}"}}
                                 for rid, family in (("kept-1", "Kept"), ("refused", "Refused"), ("kept-2", "Kept"))))

        answer = refusing(body)

        assert ["201 Created", "422 Unprocessable Entity", "201 Created"] == [
            e["response"]["status"] for e in answer["entry"]]
        assert [True, False, True] == [db.run(lambda s, rid=rid: get_resource(s, "Patient", rid) is not None)
                                       for rid in ("kept-1", "refused", "kept-2")]

    def test_a_transaction_keeps_nothing(self, db: Database, refusing: Any) -> None:
        """The refused entry fails the transaction, naming the entry; nothing is stored."""
        body = bundle("transaction", post(urn(), patient(name=[{"family": "Kept"}])),
                      post(urn(), patient(name=[{"family": "Refused"}])))

        with pytest.raises(FHIRError) as raised:
            refusing(body)

        assert 422 == raised.value.status
        assert raised.value.diagnostics.startswith("Bundle.entry[1] (POST Patient): Patient/")
        assert 0 == db.run(lambda s: s.exec(select(func.count()).select_from(StoredResource)).one())


#: A representative few of the 20 Synthea bundles: together every resource type of the corpus (Dennis), the
#: smallest (Chet) and the largest, with the most CarePlans (Tasha). Loading all 20 takes about 60 s on SQLite
#: and 130 s on PostgreSQL; ZORGPAD_TEST_SYNTHEA=all loads all of them.
REPRESENTATIVE = ("Dennis_Durgan", "Chet_Thompson", "Tasha_Miller")
SYNTHEA_FILES = sorted(SYNTHEA.glob("*.json"))
LOADED = SYNTHEA_FILES if os.environ.get("ZORGPAD_TEST_SYNTHEA") == "all" else [
    p for p in SYNTHEA_FILES if p.name.startswith(REPRESENTATIVE)]


def types_in(path: Path) -> dict[str, int]:
    """How many entries of each resource type a Bundle file holds."""
    counts: dict[str, int] = {}
    for entry in json.loads(path.read_text())["entry"]:
        counts[entry["resource"]["resourceType"]] = counts.get(entry["resource"]["resourceType"], 0) + 1
    return counts


class TestSynthea:
    """The Synthea corpus: transaction Bundles of POST entries with urn:uuid references and US extensions."""

    def test_the_loaded_bundles_cover_every_resource_type_of_the_corpus(self) -> None:
        """The representative bundles hold every resource type that any of the 20 holds."""
        corpus = {rtype for path in SYNTHEA_FILES for rtype in types_in(path)}
        loaded = {rtype for path in LOADED for rtype in types_in(path)}

        assert 20 == len(SYNTHEA_FILES)
        assert len(REPRESENTATIVE) <= len(LOADED)
        assert corpus == loaded

    @pytest.mark.parametrize("path", LOADED, ids=lambda p: p.stem.split("_")[0])
    def test_a_synthea_bundle_loads_as_it_is(self, fhir_server: FHIRServer, path: Path) -> None:
        """Every entry is created (201), the Patient can be read and found, and references point at it."""
        body = json.loads(path.read_text())
        client = fhir_server.client()
        client.timeout = httpx.Timeout(120)
        started = time.monotonic()

        response = send(client, body)

        elapsed = time.monotonic() - started
        assert 200 == response.status_code, response.text[:2000]
        answer = response.json()
        assert ["201 Created"] * len(body["entry"]) == [e["response"]["status"] for e in answer["entry"]]
        created = [(a["resource"]["resourceType"], location_id(a)) for a in answer["entry"]]
        assert [e["resource"]["resourceType"] for e in body["entry"]] == [rtype for rtype, _ in created]
        assert set(created) == stored_among(fhir_server, created)
        ids = {e["fullUrl"]: rid for e, (_, rid) in zip(body["entry"], created, strict=True)}
        person = next(e for e in body["entry"] if e["resource"]["resourceType"] == "Patient")
        patient_id = ids[person["fullUrl"]]
        assert person["resource"]["name"] == client.get(f"Patient/{patient_id}").json()["name"]
        found = client.get("Patient", params={"_id": patient_id}).json()
        assert [patient_id] == [e["resource"]["id"] for e in found["entry"]]
        encounter = next(a for a in answer["entry"] if a["resource"]["resourceType"] == "Encounter")
        read = client.get(f"Encounter/{encounter['resource']['id']}").json()
        assert f"Patient/{patient_id}" == read["subject"]["reference"]
        leftover = [ref for a in answer["entry"] for ref in _references(a["resource"]) if ref.startswith("urn:")]
        assert [] == leftover
        print(f"{path.name}: {len(body['entry'])} entries in {elapsed:.1f} s")


def _references(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["reference"]] if isinstance(node.get("reference"), str) else []
        return found + [r for v in node.values() for r in _references(v)]
    if isinstance(node, list):
        return [r for v in node for r in _references(v)]
    return []
