"""FHIR search over real HTTP: every parameter kind, paging, includes, strictness, scoping and auditing.

One server per module holds a small world of patients and resources (``world``); each test reads it
and only the tests that say so add to it, under ids of their own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import httpx
import pytest
from sqlmodel import col, select
from zorgpad.engine.store.db import Database
from zorgpad.engine.store.tables import AuditEntry

if TYPE_CHECKING:
    from tests.fhir.conftest import FHIRServer

pytestmark = pytest.mark.slow

LOINC = "http://loinc.org"
SCT = "http://snomed.info/sct"
BSN = "http://fhir.nl/fhir/NamingSystem/bsn"
PAGED = 23


def _observation(oid: str, patient: str, codings: list[dict[str, str]], status: str = "final",
                 **effective: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "status": status, "code": {"coding": codings},
            "subject": {"reference": f"Patient/{patient}"}, **effective}


def _patient(pid: str, gp: str, *identifiers: dict[str, str]) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "identifier": list(identifiers),
            "generalPractitioner": [{"reference": f"Organization/{gp}"}]}


def _world() -> list[dict[str, Any]]:
    """The resources every test searches: patients pa and pc of gp-a, pb of gp-b, pp of gp-c."""
    loinc = lambda code: {"system": LOINC, "code": code}  # noqa: E731
    resources: list[dict[str, Any]] = [
        {"resourceType": "Organization", "id": org, "name": org} for org in ("gp-a", "gp-b", "gp-c")
    ]
    resources += [
        _patient("pa", "gp-a", {"system": BSN, "value": "111222333"}, {"value": "no-system-id"}),
        _patient("pb", "gp-b", {"system": BSN, "value": "222333444"}),
        _patient("pc", "gp-a", {"system": BSN, "value": "333444555"}),
        _patient("pp", "gp-c"),
        _observation("obs-1", "pa", [loinc("1111-1"), {"system": SCT, "code": "100"}],
                     effectiveDateTime="2025-06-15"),
        _observation("obs-2", "pa", [loinc("2222-2")], "preliminary", effectiveDateTime="2025-06-15T10:30:00Z"),
        _observation("obs-3", "pa", [loinc("3333-3")], effectivePeriod={"start": "2025-01-01", "end": "2025-01-31"}),
        _observation("obs-4", "pa", [loinc("4444-4")], "amended", effectivePeriod={"start": "2025-09-01"}),
        _observation("obs-5", "pb", [loinc("1111-1")], effectiveDateTime="2025-06-15"),
        _observation("obs-6", "pc", [loinc("1111-1")], effectiveDateTime="2024-12-31T23:59:59Z"),
        _observation("obs-7", "pa", [{"code": "local-1"}]),
        _observation("obs-8", "pa", [{"system": "urn:example", "code": "a,b|c"}], "cancelled"),
        {"resourceType": "Device", "id": "dev-icd", "type": {"coding": [{"system": SCT, "code": "72506001"}]}},
        {"resourceType": "Device", "id": "dev-other", "type": {"coding": [{"system": SCT, "code": "123456"}]}},
        {"resourceType": "DeviceUseStatement", "id": "dus-1", "status": "active",
         "subject": {"reference": "Patient/pa"}, "device": {"reference": "Device/dev-icd"}},
        {"resourceType": "DeviceUseStatement", "id": "dus-2", "status": "active",
         "subject": {"reference": "Patient/pa"}, "device": {"reference": "Device/dev-other"}},
        {"resourceType": "Procedure", "id": "proc-acp", "status": "completed", "subject": {"reference": "Patient/pa"},
         "code": {"coding": [{"system": SCT, "code": "713603004"}]}, "encounter": {"reference": "Encounter/enc-1"}},
        {"resourceType": "Procedure", "id": "proc-other", "status": "completed",
         "subject": {"reference": "Patient/pa"}, "code": {"coding": [{"system": SCT, "code": "999999"}]}},
        {"resourceType": "Encounter", "id": "enc-1", "status": "finished", "subject": {"reference": "Patient/pa"},
         "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
         "reasonReference": [{"reference": "Procedure/proc-acp"}]},
        {"resourceType": "Encounter", "id": "enc-2", "status": "finished", "subject": {"reference": "Patient/pa"},
         "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
         "reasonReference": [{"reference": "Procedure/proc-other"}]},
        {"resourceType": "Consent", "id": "cons-x", "status": "active", "patient": {"reference": "Patient/pa"},
         "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "treatment"}]},
         "category": [{"coding": [{"system": SCT, "code": "129125009"}]}],
         "provision": {"actor": [{"role": {"text": "agreement party"}, "reference": {"reference": "Patient/pa"}},
                                 {"role": {"text": "agreement party"}, "reference": {"reference": "Patient/pb"}}]}},
        {"resourceType": "Observation", "id": "obs-abs", "status": "final", "code": {"text": "elsewhere"},
         "subject": {"reference": "https://other.example/fhir/Patient/pz"}},
        {"resourceType": "QuestionnaireResponse", "id": "qr-1", "status": "completed",
         "questionnaire": "http://example.org/Questionnaire/acp|1.0", "subject": {"reference": "Patient/pa"}},
    ]
    resources += [_observation(f"page-{n:02d}", "pp", [{"system": "urn:paging", "code": "page"}])
                  for n in range(PAGED)]
    return resources


@dataclass
class World:
    """The seeded server and its clients."""

    server: FHIRServer
    admin: httpx.Client
    gp_a: httpx.Client
    gp_b: httpx.Client

    def bundle(self, path: str, params: Any = None, client: httpx.Client | None = None,
               **headers: str) -> dict[str, Any]:
        """A search that must succeed; its Bundle."""
        response = (client or self.admin).get(path, params=params, headers=headers)
        assert 200 == response.status_code, response.text
        body: dict[str, Any] = response.json()
        return body

    def found(self, path: str, params: Any = None, client: httpx.Client | None = None) -> set[str]:
        """``Type/id`` of the matches of a search."""
        return refs(self.bundle(path, params, client))


def refs(bundle: dict[str, Any], mode: str = "match") -> set[str]:
    """``Type/id`` of the entries of a Bundle in one search mode."""
    return {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle.get("entry", [])
            if e["search"]["mode"] == mode}


def obs(*numbers: int | str) -> set[str]:
    """Observation references by number."""
    return {f"Observation/obs-{n}" for n in numbers}




@pytest.fixture(scope="module")
def world(fhir_server: FHIRServer) -> World:
    """The module's server with the resources of :func:`_world` stored by an administrator."""
    admin = fhir_server.client()
    for resource in _world():
        response = admin.put(f"/{resource['resourceType']}/{resource['id']}", json=resource)
        assert response.status_code in (200, 201), response.text
    return World(fhir_server, admin, fhir_server.client(fhir_server.token("gp-a")),
                 fhir_server.client(fhir_server.token("gp-b")))


class TestTokenParameters:
    """Token values: system|code, |code, system|, code; comma is OR, repetition is AND."""

    def test_system_and_code_match_one_coding(self, world: World) -> None:
        """`system|code` matches a resource with that coding."""
        assert obs(1, 5, 6) == world.found("/Observation", {"code": f"{LOINC}|1111-1"})

    def test_code_alone_matches_any_system(self, world: World) -> None:
        """A bare code matches whatever system it has."""
        assert obs(1) == world.found("/Observation", {"code": "100"})

    def test_empty_system_matches_codes_without_a_system_only(self, world: World) -> None:
        """`|code` matches only codings that have no system."""
        assert obs(7) == world.found("/Observation", {"code": "|local-1"})
        assert set() == world.found("/Observation", {"code": "|1111-1"})

    def test_system_alone_matches_every_code_of_it(self, world: World) -> None:
        """`system|` matches any code in that system."""
        assert obs(1, 2, 3, 4) == world.found("/Observation", {"patient": "pa", "code": f"{LOINC}|"})

    def test_comma_is_or(self, world: World) -> None:
        """Comma-separated values match either."""
        assert obs(1, 2) == world.found("/Observation", {"patient": "pa", "code": f"{LOINC}|1111-1,{LOINC}|2222-2"})

    def test_repeated_parameter_is_and(self, world: World) -> None:
        """A repeated parameter must match every time, possibly on different codings."""
        both = [("code", f"{LOINC}|1111-1"), ("code", f"{SCT}|100")]
        unrelated = [("code", f"{LOINC}|2222-2"), ("code", f"{SCT}|100")]

        assert obs(1) == world.found("/Observation", both)
        assert set() == world.found("/Observation", unrelated)

    def test_not_modifier_excludes_matches(self, world: World) -> None:
        """`:not` keeps the resources that lack the code."""
        expected = obs(2, 3, 4, 7, 8)

        assert expected == world.found("/Observation", {"patient": "pa", "code:not": f"{LOINC}|1111-1"})

    def test_escaped_comma_and_bar_are_part_of_the_code(self, world: World) -> None:
        r"""`\,` and `\|` stand for themselves, not for OR and the system separator."""
        assert obs(8) == world.found("/Observation", {"code": r"urn:example|a\,b\|c"})

    def test_status_and_identifier_are_tokens_too(self, world: World) -> None:
        """`status` and `identifier` work like `code`."""
        assert obs(1, 3, 7) == world.found("/Observation", {"patient": "pa", "status": "final"})
        assert {"Patient/pa"} == world.found("/Patient", {"identifier": f"{BSN}|111222333"})
        assert {"Patient/pa"} == world.found("/Patient", {"identifier": "|no-system-id"})

    def test_missing_modifier_finds_resources_without_the_element(self, world: World) -> None:
        """`date:missing=true` finds the Observations without an effective time."""
        assert obs(7, 8) == world.found("/Observation", {"patient": "pa", "date:missing": "true"})
        assert obs(1, 2, 3, 4) == world.found("/Observation", {"patient": "pa", "date:missing": "false"})

    def test_unsupported_modifier_is_refused(self, world: World) -> None:
        """A modifier the server cannot honour is a 400, not a silently wider result."""
        response = world.admin.get("/Observation", params={"code:text": "heart"})

        assert 400 == response.status_code
        assert "not-supported" == response.json()["issue"][0]["code"]

    def test_canonical_without_version_matches_every_version(self, world: World) -> None:
        """`questionnaire=url` matches `url|1.0`; `url|1.0` matches exactly; wildcards mean nothing."""
        url = "http://example.org/Questionnaire/acp"

        assert {"QuestionnaireResponse/qr-1"} == world.found("/QuestionnaireResponse", {"questionnaire": url})
        assert {"QuestionnaireResponse/qr-1"} == world.found("/QuestionnaireResponse",
                                                             {"questionnaire": f"{url}|1.0"})
        assert set() == world.found("/QuestionnaireResponse", {"questionnaire": f"{url}|2.0"})
        assert set() == world.found("/QuestionnaireResponse", {"questionnaire": "http://example.org/%"})
        assert set() == world.found("/QuestionnaireResponse", {"questionnaire": "http://example.org/Questionnaire/ac_"})


class TestReferenceParameters:
    """Reference values as Type/id, id, or an absolute URL."""

    @pytest.mark.parametrize("value", ["Patient/pa", "pa", "https://elsewhere.example/fhir/Patient/pa"])
    def test_patient_reference_in_every_form(self, world: World, value: str) -> None:
        """`patient` accepts Type/id, a bare id and an absolute URL ending in Type/id."""
        assert obs(1, 2, 3, 4, 7, 8) == world.found("/Observation", {"patient": value})

    def test_absolute_url_on_this_server(self, world: World) -> None:
        """A reference given as this server's own absolute URL matches."""
        own = f"{world.server.fhir}/Encounter/enc-1"

        assert {"Procedure/proc-acp"} == world.found("/Procedure", {"encounter": own})

    def test_absolute_reference_to_another_server(self, world: World) -> None:
        """A reference stored as another server's absolute URL is found by that URL."""
        assert {"Observation/obs-abs"} == world.found("/Observation",
                                                      {"subject": "https://other.example/fhir/Patient/pz"})

    def test_type_modifier_limits_the_target_type(self, world: World) -> None:
        """`subject:Patient=pa` matches; a reference of another type does not."""
        assert obs(6) == world.found("/Observation", {"subject:Patient": "pc"})
        assert set() == world.found("/Observation", {"subject": "Group/pc"})

    def test_comma_separated_references_are_or(self, world: World) -> None:
        """Two patients in one value give both patients' resources."""
        assert {"Observation/obs-5", "Observation/obs-6"} == world.found(
            "/Observation", {"patient": "Patient/pb,Patient/pc"})

    def test_other_reference_parameters(self, world: World) -> None:
        """`encounter`, `device` and Consent `actor` are references too."""
        assert {"Procedure/proc-acp"} == world.found("/Procedure", {"encounter": "Encounter/enc-1"})
        assert {"DeviceUseStatement/dus-2"} == world.found("/DeviceUseStatement", {"device": "dev-other"})
        assert {"Consent/cons-x"} == world.found("/Consent", {"actor": "Patient/pb"})


class TestDateParameters:
    """Dates with prefixes against dates, instants, periods and open periods.

    In the world, obs-1 is the day 2025-06-15, obs-2 the instant 2025-06-15T10:30:00Z, obs-3 the period
    2025-01-01..2025-01-31 and obs-4 a period open since 2025-09-01.
    """

    @pytest.mark.parametrize(("value", "expected"), [
        ("2025-06-15", {1, 2}),
        ("eq2025-06", {1, 2}),
        ("eq2025", {1, 2, 3}),
        ("ne2025", {4}),
        ("gt2025-06-15", {4}),
        ("ge2025-06-15", {1, 2, 4}),
        ("lt2025-06-15", {3}),
        ("le2025-06-15", {1, 2, 3}),
        ("sa2025-06-15", {4}),
        ("eb2025-06-15", {3}),
        ("2025-06-15T10:30:00Z", {2}),
        ("ge2025-06-15T10:30:00Z", {1, 2, 4}),
        ("gt2025-06-15T10:30:00Z", {1, 4}),
        ("2025-06-15T12:30:00+02:00", {2}),
        ("ge2026-01-01", {4}),
        ("ap2025-06-16", {1, 2}),
    ])
    def test_prefixes(self, world: World, value: str, expected: set[int]) -> None:
        """Each prefix compares the ranges the way FHIR R4 search describes."""
        assert obs(*expected) == world.found("/Observation", {"patient": "pa", "date": value})

    def test_comma_is_or_and_repetition_is_and(self, world: World) -> None:
        """`date=a,b` is either; `date=a&date=b` is both."""
        assert obs(1, 2, 3) == world.found("/Observation", {"patient": "pa", "date": "2025-01,2025-06-15"})
        assert obs(3) == world.found("/Observation", [("patient", "pa"), ("date", "ge2025-01-01"),
                                                      ("date", "lt2025-06-15")])

    def test_unencoded_plus_in_a_time_zone_is_understood(self, world: World) -> None:
        """A '+' that the query string turned into a space still means a time zone."""
        assert obs(2) == world.found("/Observation?patient=pa&date=2025-06-15T12:30:00+02:00")

    @pytest.mark.parametrize("value", ["15-06-2025", "2025-02-30", "xx2025", "2025-06-15T25:00:00Z", "today"])
    def test_a_value_that_is_not_a_date_is_a_400(self, world: World, value: str) -> None:
        """A malformed date is a client error that names the value."""
        response = world.admin.get("/Observation", params={"date": value})

        assert 400 == response.status_code
        assert value.removeprefix("xx") in response.json()["issue"][0]["diagnostics"]


class TestLastUpdated:
    """`_lastUpdated` against the server's write times, and `_sort`."""

    def test_prefixes_and_partial_dates(self, world: World) -> None:
        """All the world was written today: after yesterday, before tomorrow, in this year and month."""
        today = datetime.now(UTC).date()
        yesterday, tomorrow = today - timedelta(days=1), today + timedelta(days=1)
        everything = world.found("/Observation", {"patient": "pa"})

        assert everything == world.found("/Observation", {"patient": "pa", "_lastUpdated": f"gt{yesterday}"})
        assert everything == world.found("/Observation", [("patient", "pa"), ("_lastUpdated", f"ge{yesterday}"),
                                                          ("_lastUpdated", f"lt{tomorrow}")])
        assert everything == world.found("/Observation", {"patient": "pa", "_lastUpdated": f"sa{yesterday}"})
        assert set() == world.found("/Observation", {"patient": "pa", "_lastUpdated": f"eb{yesterday}"})
        assert set() == world.found("/Observation", {"patient": "pa", "_lastUpdated": "lt2020"})
        assert set() == world.found("/Observation", {"patient": "pa", "_lastUpdated": f"gt{tomorrow}"})

    def test_partial_dates_cover_their_whole_span(self, world: World) -> None:
        """`_lastUpdated=2026` style values match anything written within that year or month."""
        now = datetime.now(UTC)
        everything = world.found("/Observation", {"patient": "pa"})
        if now.day == 1 or (now.month == 12 and now.day == 31):  # keep the year/month spans clear of midnight
            pytest.skip("too close to a month boundary for a stable answer")

        assert everything == world.found("/Observation", {"patient": "pa", "_lastUpdated": f"{now:%Y}"})
        assert everything == world.found("/Observation", {"patient": "pa", "_lastUpdated": f"eq{now:%Y-%m}"})
        assert set() == world.found("/Observation", {"patient": "pa", "_lastUpdated": f"ne{now:%Y}"})

    def test_sort_descending_reverses_the_write_order(self, world: World) -> None:
        """`_sort=-_lastUpdated` gives the newest first; the default is oldest first."""
        oldest_first = [e["resource"]["id"] for e in world.bundle("/Observation", {"patient": "pp"})["entry"]]
        newest_first = [e["resource"]["id"] for e in
                        world.bundle("/Observation", {"patient": "pp", "_sort": "-_lastUpdated"})["entry"]]

        assert [f"page-{n:02d}" for n in range(PAGED)] == oldest_first
        assert list(reversed(oldest_first)) == newest_first

    def test_sort_by_id(self, world: World) -> None:
        """`_sort=_id` orders by id."""
        found = [e["resource"]["id"] for e in world.bundle("/Observation", {"patient": "pa", "_sort": "-_id"})["entry"]]

        assert sorted(found, reverse=True) == found

    def test_a_malformed_last_updated_is_a_400(self, world: World) -> None:
        """`_lastUpdated=2026-13` names the bad value."""
        response = world.admin.get("/Observation", params={"_lastUpdated": "ge2026-13"})

        assert 400 == response.status_code
        assert "2026-13" in response.json()["issue"][0]["diagnostics"]

    def test_id_parameter(self, world: World) -> None:
        """`_id` matches logical ids, comma-separated."""
        assert obs(1, 3) == world.found("/Observation", {"_id": "obs-1,obs-3"})


class TestChains:
    """Chained parameters, with and without a type modifier, several links deep."""

    def test_device_type_chain(self, world: World) -> None:
        """`device.type` finds the statements whose Device has that type."""
        assert {"DeviceUseStatement/dus-1"} == world.found("/DeviceUseStatement",
                                                            {"device.type": f"{SCT}|72506001,{SCT}|465460004"})

    def test_typed_chain_as_iknl_writes_it(self, world: World) -> None:
        """`reason-reference:Procedure.code` finds the Encounter of the ACP Procedure."""
        bundle = world.bundle("/Encounter", {"patient": "pa", "reason-reference:Procedure.code": f"{SCT}|713603004",
                                             "_include": "Encounter:reason-reference"})

        assert {"Encounter/enc-1"} == refs(bundle)
        assert {"Procedure/proc-acp"} == refs(bundle, "include")

    def test_untyped_chain(self, world: World) -> None:
        """Without a type modifier every target type that has the parameter is tried."""
        assert {"Encounter/enc-2"} == world.found("/Encounter", {"reason-reference.code": "999999"})

    def test_two_links_deep(self, world: World) -> None:
        """Encounter → Procedure → Patient → identifier."""
        found = world.found("/Encounter", {"reason-reference:Procedure.patient.identifier": f"{BSN}|111222333"})

        assert {"Encounter/enc-1", "Encounter/enc-2"} == found

    def test_chaining_a_token_parameter_is_a_400(self, world: World) -> None:
        """Only reference parameters can be chained."""
        assert 400 == world.admin.get("/Observation", params={"code.system": "x"}).status_code

    def test_an_untyped_link_before_another_link_is_a_400_naming_the_fix(self, world: World) -> None:
        """`subject.subject._id` would search every pair of types (found by the fuzz suite to hang the
        server): the caller is asked to type the first link."""
        response = world.admin.get("/Observation", params={"subject.subject._id": "x"})

        assert (400, "too-costly") == (response.status_code, response.json()["issue"][0]["code"])
        assert "subject:" in response.json()["issue"][0]["diagnostics"]

    def test_more_than_three_links_is_a_400(self, world: World) -> None:
        """Four links deep is refused, typed or not."""
        response = world.admin.get("/Encounter", params={
            "reason-reference:Procedure.patient:Patient.organization:Organization.partof._id": "x"})

        assert (400, "too-costly") == (response.status_code, response.json()["issue"][0]["code"])


class TestLimits:
    """A search that asks too much is a 400 (too-costly), never a 5xx (found by the fuzz suite)."""

    @pytest.mark.parametrize("params", [
        {"date": ",".join(f"ge2020-01-{d:02}" for d in range(1, 29)) * 5},
        {"code": ",".join(f"http://loinc.org|{n}" for n in range(101))},
        [("code", f"http://loinc.org|{n}") for n in range(101)],
    ], ids=["140 alternative dates", "101 alternative codes", "101 parameters"])
    def test_too_many_alternatives_or_parameters(self, world: World, params: Any) -> None:
        """At most 100 alternatives in a value and 100 parameters in a search."""
        response = world.admin.get("/Observation", params=params)

        assert (400, "too-costly") == (response.status_code, response.json()["issue"][0]["code"])

    def test_a_hundred_alternatives_are_fine(self, world: World) -> None:
        """The limit itself is allowed."""
        assert obs(1) == world.found("/Observation", {"_id": ",".join(["obs-1", *[f"none-{n}" for n in range(99)]])})

    def test_a_sort_without_keys_is_ignored_and_reported(self, world: World) -> None:
        """`_sort=,` names no key: lenient search reports it; strict search refuses it."""
        lenient = world.admin.get("/Observation", params={"_id": "obs-1", "_sort": ","})
        strict = world.admin.get("/Observation", params={"_sort": ","}, headers={"Prefer": "handling=strict"})

        assert 200 == lenient.status_code
        assert "names no sort key" in json.dumps(lenient.json())
        assert 400 == strict.status_code


class TestIncludes:
    """`_include`, `_include:iterate` and `_revinclude`."""

    def test_include_adds_the_referenced_resource_once(self, world: World) -> None:
        """`_include=Observation:patient` adds Patient/pa once however many matches point to it."""
        bundle = world.bundle("/Observation", {"_id": "obs-1,obs-2", "_include": "Observation:patient"})

        assert obs(1, 2) == refs(bundle)
        assert ["Patient/pa"] == [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle["entry"]
                                  if e["search"]["mode"] == "include"]
        assert 2 == bundle["total"]

    def test_include_with_a_target_type(self, world: World) -> None:
        """`Consent:actor:Patient` includes the Patient actors; `:Organization` finds none."""
        patients = world.bundle("/Consent", {"_id": "cons-x", "_include": "Consent:actor:Patient"})
        organisations = world.bundle("/Consent", {"_id": "cons-x", "_include": "Consent:actor:Organization"})

        assert {"Patient/pa", "Patient/pb"} == refs(patients, "include")
        assert set() == refs(organisations, "include")

    def test_include_iterate_follows_the_included(self, world: World) -> None:
        """`_include:iterate=Procedure:patient` also follows the Procedure that was included."""
        bundle = world.bundle("/Encounter", {"_id": "enc-1", "_include": "Encounter:reason-reference",
                                             "_include:iterate": "Procedure:patient"})

        assert {"Procedure/proc-acp", "Patient/pa"} == refs(bundle, "include")

    def test_revinclude(self, world: World) -> None:
        """`_revinclude=Encounter:patient` adds the Encounters that point to the Patient."""
        bundle = world.bundle("/Patient", {"_id": "pa", "_revinclude": "Encounter:patient"})

        assert {"Patient/pa"} == refs(bundle)
        assert {"Encounter/enc-1", "Encounter/enc-2"} == refs(bundle, "include")

    def test_malformed_include_is_a_400(self, world: World) -> None:
        """`_include=nonsense` is a client error."""
        assert 400 == world.admin.get("/Observation", params={"_include": "nonsense"}).status_code


class TestPaging:
    """`_count`, `_offset` and the links between pages."""

    def test_following_next_links_gives_every_result_once(self, world: World) -> None:
        """Pages of 5 over 23 results: 5 pages, absolute links that keep the query, no duplicates."""
        url: str | None = f"{world.server.fhir}/Observation?{urlencode({'patient': 'Patient/pp', '_count': 5})}"
        seen: list[str] = []
        pages = 0
        while url is not None:
            assert url.startswith(world.server.fhir + "/Observation?")
            assert "patient=Patient%2Fpp" in url
            bundle = world.bundle(url)
            pages += 1
            assert PAGED == bundle["total"]
            links = {link["relation"]: link["url"] for link in bundle["link"]}
            assert (pages > 1) == ("previous" in links)
            seen += [e["resource"]["id"] for e in bundle.get("entry", [])]
            url = links.get("next")

        assert 5 == pages
        assert PAGED == len(seen)
        assert {f"page-{n:02d}" for n in range(PAGED)} == set(seen)

    def test_offset_and_previous_link(self, world: World) -> None:
        """`_offset=20&_count=5` is the last three; previous points at offset 15."""
        bundle = world.bundle("/Observation", {"patient": "pp", "_count": 5, "_offset": 20})
        links = {link["relation"]: link["url"] for link in bundle["link"]}

        assert ["page-20", "page-21", "page-22"] == [e["resource"]["id"] for e in bundle["entry"]]
        assert "_offset=15" in links["previous"]
        assert "next" not in links

    def test_count_zero_and_summary_count_give_only_the_total(self, world: World) -> None:
        """`_count=0` and `_summary=count` answer the total without entries."""
        for params in ({"patient": "pp", "_count": 0}, {"patient": "pp", "_summary": "count"}):
            bundle = world.bundle("/Observation", params)

            assert PAGED == bundle["total"]
            assert "entry" not in bundle

    def test_count_is_capped(self, world: World) -> None:
        """`_count` above 1000 is served as 1000."""
        bundle = world.bundle("/Observation", {"patient": "pp", "_count": 5000})

        assert "_count=1000" in bundle["link"][0]["url"]
        assert PAGED == len(bundle["entry"])

    @pytest.mark.parametrize(("name", "value"), [("_count", "abc"), ("_count", "-1"), ("_offset", "x")])
    def test_bad_paging_values_are_400(self, world: World, name: str, value: str) -> None:
        """Paging values that are not whole numbers are refused with the name in the message."""
        response = world.admin.get("/Observation", params={name: value})

        assert 400 == response.status_code
        assert name in response.json()["issue"][0]["diagnostics"]

    def test_default_page_size_is_fifty(self, world: World) -> None:
        """Without `_count` a page holds at most 50 matches and says so in its links."""
        bundle = world.bundle("/Observation")

        assert min(50, bundle["total"]) == len(refs(bundle))
        assert "_count=50" in bundle["link"][0]["url"]


class TestElementsAndPost:
    """`_elements`, POST `_search` and deleted resources."""

    def test_elements_keeps_only_the_named_elements(self, world: World) -> None:
        """`_elements=status` drops `code` and marks the resource SUBSETTED."""
        resource = world.bundle("/Observation", {"_id": "obs-1", "_elements": "status"})["entry"][0]["resource"]

        assert "final" == resource["status"]
        assert "code" not in resource
        assert "SUBSETTED" in [t["code"] for t in resource["meta"]["tag"]]

    def test_post_search_reads_the_form(self, world: World) -> None:
        """POST [type]/_search takes its parameters from a form body."""
        response = world.admin.post("/Observation/_search", content=urlencode({"patient": "pa", "code": "100"}),
                                    headers={"Content-Type": "application/x-www-form-urlencoded"})

        assert 200 == response.status_code
        assert obs(1) == refs(response.json())

    def test_deleted_resources_are_not_found(self, world: World) -> None:
        """A deleted Observation no longer matches."""
        gone = _observation("obs-deleted", "pa", [{"system": "urn:gone", "code": "gone"}])
        assert world.admin.put("/Observation/obs-deleted", json=gone).status_code in (200, 201)
        assert {"Observation/obs-deleted"} == world.found("/Observation", {"code": "urn:gone|gone"})
        assert 204 == world.admin.delete("/Observation/obs-deleted").status_code

        assert set() == world.found("/Observation", {"code": "urn:gone|gone"})


class TestUnknownParameters:
    """Lenient by default, strict with `Prefer: handling=strict`."""

    def test_lenient_ignores_and_reports(self, world: World) -> None:
        """An unknown parameter is ignored and named in an OperationOutcome entry."""
        bundle = world.bundle("/Observation", {"patient": "pc", "colour": "blue"})
        outcomes = [e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "outcome"]

        assert obs(6) == refs(bundle)
        assert 1 == len(outcomes)
        assert "colour" in outcomes[0]["issue"][0]["diagnostics"]
        assert "colour" not in bundle["link"][0]["url"]

    def test_strict_refuses(self, world: World) -> None:
        """With `Prefer: handling=strict` the unknown parameter is a 400 not-supported."""
        response = world.admin.get("/Observation", params={"patient": "pc", "colour": "blue"},
                                   headers={"Prefer": "handling=strict"})

        assert 400 == response.status_code
        assert "not-supported" == response.json()["issue"][0]["code"]
        assert "colour" in response.json()["issue"][0]["diagnostics"]

    def test_explicit_lenient_is_lenient(self, world: World) -> None:
        """`Prefer: handling=lenient` behaves as the default."""
        bundle = world.bundle("/Observation", {"patient": "pc", "colour": "blue"}, Prefer="handling=lenient")

        assert obs(6) == refs(bundle)

    def test_unknown_chained_parameter_follows_the_same_rule(self, world: World) -> None:
        """`device.colour` is ignored leniently and refused strictly."""
        lenient = world.bundle("/DeviceUseStatement", {"patient": "pa", "device.colour": "red"})
        strict = world.admin.get("/DeviceUseStatement", params={"device.colour": "red"},
                                 headers={"Prefer": "handling=strict"})

        assert {"DeviceUseStatement/dus-1", "DeviceUseStatement/dus-2"} == refs(lenient)
        assert 400 == strict.status_code

    def test_every_advertised_parameter_is_understood(self, world: World) -> None:
        """Each searchParam in the CapabilityStatement is accepted by a strict search."""
        statement = world.admin.get("/metadata").json()
        refused = []
        for resource in statement["rest"][0]["resource"]:
            if resource["type"] in ("PlanDefinition", "AuditEvent"):
                continue
            for param in resource.get("searchParam", []):
                name, kind = param["name"], param["type"]
                query = {"_id": {"_id": "x"}, "_lastUpdated": {"_lastUpdated": "ge2000"}}.get(
                    name, {f"{name}:missing": "false"} if kind in ("token", "reference", "date") else {name: "x"})
                response = world.admin.get(f"/{resource['type']}", params={**query, "_count": 0},
                                           headers={"Prefer": "handling=strict"})
                if response.status_code != 200:
                    refused.append(f"{resource['type']}?{name}: {response.status_code}")

        assert [] == refused


class TestOrganisationScope:
    def test_a_chain_never_tests_a_resource_the_caller_cannot_see(self, world: World) -> None:
        """gp-b's Task points at gp-a's Observation: chaining through it reveals nothing about that Observation."""
        secret = _observation("obs-secret", "pa", [{"system": "urn:secret", "code": "diagnosis"}])
        assert world.admin.put("/Observation/obs-secret", json=secret).status_code in (200, 201)
        probe = {"resourceType": "Task", "id": "task-probe", "status": "requested", "intent": "order",
                 "for": {"reference": "Patient/pb"}, "focus": {"reference": "Observation/obs-secret"}}
        assert world.gp_b.put("/Task/task-probe", json=probe).status_code in (200, 201)

        query = {"focus:Observation.code": "urn:secret|diagnosis"}
        assert (set(), {"Task/task-probe"}) == (world.found("/Task", query, client=world.gp_b),
                                                world.found("/Task", query, client=world.admin))

    """An organisation's token finds only the resources of the patients it takes part in."""

    def test_patients_of_the_organisation_only(self, world: World) -> None:
        """gp-a finds pa and pc but never pb or pp."""
        assert {"Patient/pa", "Patient/pc"} == world.found("/Patient", client=world.gp_a)
        assert {"Patient/pb"} == world.found("/Patient", client=world.gp_b)

    def test_resources_of_other_patients_are_never_returned(self, world: World) -> None:
        """The same code search gives each organisation only its own patients' Observations."""
        query = {"code": f"{LOINC}|1111-1"}

        assert obs(1, 6) == world.found("/Observation", query, client=world.gp_a)
        assert obs(5) == world.found("/Observation", query, client=world.gp_b)
        assert set() == world.found("/Observation", {"patient": "pb"}, client=world.gp_a)

    def test_total_counts_only_what_is_visible(self, world: World) -> None:
        """`_summary=count` does not reveal other patients' resources."""
        bundle = world.bundle("/Observation", {"code": f"{LOINC}|1111-1", "_summary": "count"}, client=world.gp_b)

        assert 1 == bundle["total"]

    def test_included_resources_are_scope_checked(self, world: World) -> None:
        """cons-x (about pa) names pb as an actor: gp-a gets the Consent but not Patient/pb."""
        params = {"_id": "cons-x", "_include": "Consent:actor"}

        assert {"Patient/pa"} == refs(world.bundle("/Consent", params, client=world.gp_a), "include")
        assert {"Patient/pa", "Patient/pb"} == refs(world.bundle("/Consent", params), "include")

    def test_revincluded_resources_are_scope_checked(self, world: World) -> None:
        """gp-b cannot reach pa's Encounters by revincluding from its own directory resources."""
        bundle = world.bundle("/Organization", {"_id": "gp-a", "_revinclude": "Patient:general-practitioner"},
                              client=world.gp_b)

        everything = world.bundle("/Organization", {"_id": "gp-a", "_revinclude": "Patient:general-practitioner"})

        assert {"Organization/gp-a"} == refs(bundle)
        assert set() == refs(bundle, "include")
        assert {"Patient/pa", "Patient/pc"} == refs(everything, "include")

    def test_directory_resources_are_visible_to_all(self, world: World) -> None:
        """Devices belong to no patient, so any organisation finds them."""
        assert {"Device/dev-icd"} == world.found("/Device", {"type": f"{SCT}|72506001"}, client=world.gp_b)


class TestInjection:
    """Values are data, never SQL."""

    @pytest.mark.parametrize(("path", "name"), [
        ("/Observation", "code"), ("/Observation", "patient"), ("/Patient", "_id"), ("/Patient", "identifier"),
        ("/DeviceUseStatement", "device.type"), ("/QuestionnaireResponse", "questionnaire"),
    ])
    @pytest.mark.parametrize("value", ["' OR 1=1 --", "x'); DROP TABLE resource; --", "%", "\" OR \"\"=\""])
    def test_injection_looking_values_find_nothing(self, world: World, path: str, name: str, value: str) -> None:
        """Quotes, comments and wildcards match nothing and break nothing."""
        bundle = world.bundle(path, {name: value})

        assert 0 == bundle["total"]
        assert 200 == world.admin.get("/Patient/pa").status_code

    def test_a_very_long_reference_finds_nothing(self, world: World) -> None:
        """A reference far longer than any column is an empty result, not a database error."""
        assert 0 == world.bundle("/Observation", {"patient": "Patient/" + "x" * 5000})["total"]

    @pytest.mark.parametrize(("name", "value"), [
        ("code", "a\x00b"), ("_offset", "99999999999999999999"), ("date", "ap0001-01-01"), ("date", "9999-12-31T"),
    ])
    def test_hostile_values_are_400(self, world: World, name: str, value: str) -> None:
        """NUL characters, offsets beyond any integer and dates at the edge of time are client errors."""
        response = world.admin.get("/Observation", params={name: value})

        assert 400 == response.status_code
        assert name in response.json()["issue"][0]["diagnostics"]

    def test_the_last_day_there_is_can_be_searched(self, world: World) -> None:
        """`date=9999-12-31` is a valid (if empty) search."""
        assert 0 == world.bundle("/Observation", {"date": "9999-12-31"})["total"]


class TestAudit:
    """One audit row per search, and a read row per patient when several patients' data is returned."""

    @staticmethod
    def _rows(server: FHIRServer, entity: str) -> list[AuditEntry]:
        db = Database(server.db_url)
        try:
            return db.run(lambda s: list(s.exec(select(AuditEntry).where(AuditEntry.entity == entity)
                                                .order_by(col(AuditEntry.id))).all()))
        finally:
            db.dispose()

    def test_search_for_one_patient_names_that_patient(self, world: World) -> None:
        """gp-a searching pa's Procedures leaves one search row about Patient/pa."""
        world.bundle("/Procedure", {"patient": "Patient/pa", "status": "completed"}, client=world.gp_a)
        rows = self._rows(world.server, "Procedure?patient=Patient%2Fpa&status=completed")

        assert [("E", "search", "Patient/pa", "Organization/gp-a")] == [
            (r.action, r.what, r.patient, r.organisation) for r in rows]

    def test_search_over_several_patients_records_each_patient(self, world: World) -> None:
        """A code search returning data of pa, pb and pc adds a read row for each of them."""
        world.bundle("/Observation", {"code": f"{LOINC}|1111-1", "status": "final"})
        rows = self._rows(world.server, f"Observation?{urlencode({'code': f'{LOINC}|1111-1', 'status': 'final'})}")

        assert [("E", "search", None)] == [(r.action, r.what, r.patient) for r in rows if r.what == "search"]
        assert ["Patient/pa", "Patient/pb", "Patient/pc"] == [r.patient for r in rows if r.what == "read"]


class TestConditionalCreate:
    """If-None-Exist uses the same matching."""

    def test_existing_match_is_returned(self, world: World) -> None:
        """Creating a Patient whose BSN exists returns the existing one with 200."""
        response = world.admin.post("/Patient", json=_patient("ignored", "gp-a"),
                                    headers={"If-None-Exist": f"identifier={BSN}|111222333"})

        assert 200 == response.status_code
        assert "pa" == response.json()["id"]

    def test_unknown_criterion_is_refused(self, world: World) -> None:
        """An If-None-Exist criterion the server does not know is a 400, never a wrong match."""
        response = world.admin.post("/Patient", json=_patient("ignored", "gp-a"),
                                    headers={"If-None-Exist": "colour=blue"})

        assert 400 == response.status_code
