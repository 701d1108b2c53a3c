"""The IKNL PZP (ACP) consulter queries against the Nictiz rc1 test fixtures, over real HTTP.

All 64 fixtures are loaded the way the ``_LoadResources`` TestScript does it (an update-create PUT per
fixture, in its order, each answered 200 or 201), after resolving the Touchstone date placeholders.
The Touchstone ``$purge`` set-up is not needed: the module's server starts on an empty database.
Then every consulter query of DOMAIN.md §1.1 runs as written, for patients D1, D2 and D3.

The rc1 fixtures predate parts of the rc2 queries; the expectations below say so where it matters:

* all three Patients carry the same BSN (999998298);
* Encounter D3 has no ``subject``, so a patient search cannot find it;
* the CommunicationRequests of D2 and D3 have ``subject`` Patient/D1;
* the Goals have no ``category`` yet (rc2 adds 713603004), so the rc2 Goal query finds none; the rc1
  query on ``description`` finds them;
* the QuestionnaireResponses have no ``subject`` and name the canonical
  ``https://fhir.iknl.nl/fhir/Questionnaire/ACP-zib2020|0.1.3-beta3``, not the api.iknl.nl one.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from fhirpy import SyncFHIRClient

from tests.fhir.touchstone import resolve, resolve_text, shift

if TYPE_CHECKING:
    from tests.fhir.conftest import FHIRServer

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "corpora" / "nictiz" / "pzp-acp" / "1.0.0-rc1"
LOAD_SCRIPT = FIXTURES / "_LoadResources" / "resources-purgecreateupdate-json.json"
SCT = "http://snomed.info/sct"
BSN = "999998298"
PATIENTS = ("D1", "D2", "D3")

#: The consulter queries of DOMAIN.md §1.1 (IKNL PZP rc2 TestScripts), with the patient and BSN to fill in.
QUERIES = {
    "patient": "Patient?identifier=http://fhir.nl/fhir/NamingSystem/bsn|{bsn}",
    "procedure": "Procedure?patient=Patient/{patient}&code=http://snomed.info/sct|713603004"
                 "&_include=Procedure:encounter",
    "encounter": "Encounter?patient=Patient/{patient}&reason-reference:Procedure.code=http://snomed.info/sct|713603004"
                 "&_include=Encounter:reason-reference",
    "treatment-directive": "Consent?patient=Patient/{patient}"
                           "&scope=http://terminology.hl7.org/CodeSystem/consentscope|treatment"
                           "&category=http://snomed.info/sct|129125009&_include=Consent:actor",
    "advance-directive": "Consent?patient=Patient/{patient}&scope=http://terminology.hl7.org/CodeSystem/consentscope|adr"
                         "&category=http://terminology.hl7.org/CodeSystem/consentcategorycodes|acd"
                         "&_include=Consent:actor",
    "goal": "Goal?patient=Patient/{patient}&category=http://snomed.info/sct|713603004",
    "observation": "Observation?patient=Patient/{patient}"
                   "&code=http://snomed.info/sct|153851000146100,395091006,340171000146104,247751003,570801000146104",
    "device": "DeviceUseStatement?patient=Patient/{patient}"
              "&device.type=http://snomed.info/sct|72506001,465460004,468542000,704707009,1263462004,1236894001"
              "&_include=DeviceUseStatement:device",
    "inform-relatives": "CommunicationRequest?patient=Patient/{patient}&category=http://snomed.info/sct|223449006",
    "questionnaire-response": "QuestionnaireResponse?patient=Patient/{patient}"
                              "&questionnaire=https://api.iknl.nl/docs/pzp/r4/Questionnaire/ACP-zib2020",
}
#: The rc1 form of the Goal query, which the rc1 fixtures answer.
RC1_GOAL_QUERY = "Goal?patient=Patient/{patient}&description=http://snomed.info/sct|385987000,1351964001,713148004"

_TREATMENTS = ("Antibiotic-Therapy", "Artificial-Ventilation", "Blood-Product-Administration",
               "Cardiopulmonary-Resuscitation", "Hospital-Admission", "ICD-Deactivation", "ITU-Admission")
_WISHES = ("OrganDonationChoiceRegistration", "PositionRegardingEuthanasia", "PreferredPlaceOfDeath",
           "SenseOfPurpose", "SpecificWishes")


def _agreement_parties(d: str) -> set[str]:
    return {f"Patient/{d}-ACP-Patient", f"PractitionerRole/{d}-ACP-HealthProfessional-PractitionerRole"}


#: (query, patient) → (the matches, the included resources), as ``Type/id``.
EXPECTED: dict[tuple[str, str], tuple[set[str], set[str]]] = {
    **{("patient", d): ({"Patient/D1-ACP-Patient", "Patient/D2-ACP-Patient", "Patient/D3-ACP-Patient"}, set())
       for d in PATIENTS},
    **{("procedure", d): ({f"Procedure/{d}-ACP-Procedure"}, {f"Encounter/{d}-ACP-Encounter"}) for d in PATIENTS},
    ("encounter", "D1"): ({"Encounter/D1-ACP-Encounter"}, {"Procedure/D1-ACP-Procedure"}),
    ("encounter", "D2"): ({"Encounter/D2-ACP-Encounter"}, {"Procedure/D2-ACP-Procedure"}),
    ("encounter", "D3"): (set(), set()),
    ("treatment-directive", "D1"): ({"Consent/D1-ACP-TreatmentDirective-Cardiopulmonary-Resuscitation"},
                                    _agreement_parties("D1")),
    ("treatment-directive", "D2"): ({f"Consent/D2-ACP-TreatmentDirective-{t}" for t in _TREATMENTS},
                                    _agreement_parties("D2")),
    ("treatment-directive", "D3"): ({f"Consent/D3-ACP-TreatmentDirective-{t}" for t in (*_TREATMENTS, "other")},
                                    _agreement_parties("D3")),
    ("advance-directive", "D1"): (set(), set()),
    ("advance-directive", "D2"): (set(), set()),
    ("advance-directive", "D3"): ({"Consent/D3-ACP-AdvanceDirective"},
                                  {"RelatedPerson/D3-ACP-ContactPerson-LegalRepresentative"}),
    **{("goal", d): (set(), set()) for d in PATIENTS},
    ("observation", "D1"): ({"Observation/D1-ACP-PreferredPlaceOfDeath"}, set()),
    ("observation", "D2"): ({f"Observation/D2-ACP-{w}" for w in _WISHES}, set()),
    ("observation", "D3"): ({f"Observation/D3-ACP-{w}" for w in _WISHES}, set()),
    ("device", "D1"): (set(), set()),
    ("device", "D2"): ({"DeviceUseStatement/D2-ACP-MedicalDevice-ICD"}, {"Device/D2-ACP-MedicalDevice-Product-ICD"}),
    ("device", "D3"): ({"DeviceUseStatement/D3-ACP-MedicalDevice-ICD"}, {"Device/D3-ACP-MedicalDevice-Product-ICD"}),
    ("inform-relatives", "D1"): ({f"CommunicationRequest/{d}-ACP-InformRelativesRequest" for d in PATIENTS}, set()),
    ("inform-relatives", "D2"): (set(), set()),
    ("inform-relatives", "D3"): (set(), set()),
    **{("questionnaire-response", d): (set(), set()) for d in PATIENTS},
}


@dataclass
class Loaded:
    """The server after the load script, with the status of every PUT in script order."""

    server: FHIRServer
    admin: httpx.Client
    statuses: list[tuple[str, int]]
    today: date

    def search(self, query: str) -> dict[str, Any]:
        """Run a query (relative to the FHIR base) that must succeed; its Bundle."""
        response = self.admin.get(f"/{query}")
        assert 200 == response.status_code, response.text
        body: dict[str, Any] = response.json()
        return body


def refs(bundle: dict[str, Any], mode: str) -> set[str]:
    """``Type/id`` of the entries of a Bundle in one search mode."""
    return {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle.get("entry", [])
            if e["search"]["mode"] == mode}


def _fixture_id(source: Path) -> str:
    """The id of a fixture resource (what the script's ``Type.id`` variables evaluate to)."""
    return str(json.loads(source.read_text())["id"])


def load_actions(script: dict[str, Any]) -> list[tuple[str, Path, set[int]]]:
    """The load script's update-create operations: (PUT path, fixture file, accepted statuses)."""
    fixtures = {f["id"]: (LOAD_SCRIPT.parent / f["resource"]["reference"]).resolve() for f in script["fixture"]}
    # ``T`` (the date the data is relative to, ${CURRENTDATE}) is the one variable without a fixture.
    variables = {v["name"]: v["sourceId"] for v in script["variable"] if "sourceId" in v}
    actions: list[tuple[str, Path, set[int]]] = []
    for action in script["test"][0]["action"]:
        if "operation" in action:
            operation = action["operation"]
            assert "updateCreate" == operation["type"]["code"]
            source = fixtures[operation["sourceId"]]
            path = re.sub(r"\$\{([^}]+)\}", lambda m: _fixture_id(fixtures[variables[m.group(1)]]),
                          operation["params"])
            actions.append((f"/{operation['resource']}{path}", source, set()))
        elif "assert" in action:
            codes = {int(c) for c in action["assert"]["responseCode"].split(",")}
            actions[-1] = (*actions[-1][:2], codes)
    return actions




@pytest.fixture(scope="module")
def loaded(fhir_server: FHIRServer) -> Loaded:
    """The module's server with every PZP fixture loaded by the load script's PUTs."""
    today = datetime.now().astimezone().date()  # the harness's "today" is local
    admin = fhir_server.client()
    statuses = []
    for path, source, accepted in load_actions(json.loads(LOAD_SCRIPT.read_text())):
        response = admin.put(path, json=resolve(json.loads(source.read_text()), today))
        assert response.status_code in accepted, f"{path}: {response.status_code} {response.text}"
        statuses.append((path, response.status_code))
    return Loaded(fhir_server, admin, statuses, today)


class TestTouchstonePlaceholders:
    """The placeholder resolution the fixtures need."""

    def test_days_months_and_years_before_today(self) -> None:
        """`${DATE, T, D, -450}` and friends are dates relative to today."""
        today = date(2026, 3, 31)

        assert "2024-12-06" == resolve_text("${DATE, T, D, -480}", today)
        assert "2026-02-28" == resolve_text("${DATE, T, M, -1}", today)
        assert "2027-03-31" == resolve_text("${DATE, T, Y, +1}", today)
        assert "on 2026-03-31" == resolve_text("on ${CURRENTDATE}", today)

    def test_month_shift_clamps_to_the_last_day(self) -> None:
        """One month before 31 March 2024 is 29 February."""
        assert date(2024, 2, 29) == shift(date(2024, 3, 31), "M", -1)

    def test_unknown_placeholder_is_an_error(self) -> None:
        """A placeholder this helper does not know is never sent on half-resolved."""
        with pytest.raises(ValueError, match="TIME"):
            resolve_text("${TIME, T, H, -1}", date(2026, 1, 1))


class TestLoadResources:
    """The `_LoadResources` TestScript against this server."""

    def test_every_fixture_is_created_by_update(self, loaded: Loaded) -> None:
        """All 64 PUTs to client-chosen ids create their resource (201)."""
        assert 64 == len(loaded.statuses)
        assert [201] * 64 == [status for _, status in loaded.statuses]

    def test_placeholders_became_dates_relative_to_today(self, loaded: Loaded) -> None:
        """Procedure D1 was performed 400 days before the load."""
        procedure = loaded.admin.get("/Procedure/D1-ACP-Procedure").json()

        assert (loaded.today - timedelta(days=400)).isoformat() == procedure["performedPeriod"]["start"]

    def test_dates_are_searchable(self, loaded: Loaded) -> None:
        """The substituted dates are indexed: D3's conversation (25 days ago) is the only one this year-ish."""
        recent = loaded.search(f"Procedure?date=ge{loaded.today - timedelta(days=30)}")

        assert {"Procedure/D3-ACP-Procedure"} == refs(recent, "match")


class TestConsulterQueries:
    """Each consulter query of the IKNL PZP IG, run as written, per patient."""

    @pytest.mark.parametrize("patient", PATIENTS)
    @pytest.mark.parametrize("query", sorted(QUERIES))
    def test_query(self, loaded: Loaded, query: str, patient: str) -> None:
        """The query finds the patient's resources, and `_include` adds what they point to."""
        bundle = loaded.search(QUERIES[query].format(patient=f"{patient}-ACP-Patient", bsn=BSN))
        matches, included = EXPECTED[(query, patient)]

        assert matches == refs(bundle, "match")
        assert included == refs(bundle, "include")
        assert len(matches) == bundle["total"]
        assert [] == [e for e in bundle.get("entry", []) if e["search"]["mode"] == "outcome"]

    @pytest.mark.parametrize("patient", PATIENTS)
    def test_rc1_goal_query_finds_the_medical_policy_goal(self, loaded: Loaded, patient: str) -> None:
        """The rc1 Goal query (on `description`) finds each patient's Goal."""
        bundle = loaded.search(RC1_GOAL_QUERY.format(patient=f"{patient}-ACP-Patient"))

        assert {f"Goal/{patient}-ACP-Medical-Policy-Goal"} == refs(bundle, "match")

    def test_questionnaire_responses_are_found_by_their_own_canonical(self, loaded: Loaded) -> None:
        """The fixtures' versioned canonical matches a search on the canonical without version."""
        bundle = loaded.search("QuestionnaireResponse?questionnaire=https://fhir.iknl.nl/fhir/Questionnaire/ACP-zib2020")

        assert {f"QuestionnaireResponse/C{n}-ACP-zib2020" for n in (1, 2, 3)} == refs(bundle, "match")

    def test_queries_pass_strict_handling(self, loaded: Loaded) -> None:
        """Every parameter of every query is understood: none is refused under `handling=strict`."""
        refused = []
        for name, query in QUERIES.items():
            response = loaded.admin.get(f"/{query.format(patient='D2-ACP-Patient', bsn=BSN)}",
                                        headers={"Prefer": "handling=strict"})
            if response.status_code != 200:
                refused.append(f"{name}: {response.status_code} {response.text}")

        assert [] == refused

    def test_an_organisation_not_involved_sees_nothing(self, loaded: Loaded) -> None:
        """The fixtures name no GP organisation, so an organisation's token finds none of their data."""
        outsider = loaded.server.client(loaded.server.token("gp-outsider"))
        response = outsider.get("/" + QUERIES["treatment-directive"].format(patient="D2-ACP-Patient"))

        assert 200 == response.status_code
        assert 0 == response.json()["total"]
        assert 0 == outsider.get("/" + QUERIES["patient"].format(bsn=BSN)).json()["total"]


    def test_an_outsider_cannot_list_clinical_resources_that_name_no_patient(self, loaded: Loaded) -> None:
        """The ACP forms (no subject in rc1) and Encounter D3 (no subject) are not for every organisation."""
        outsider = loaded.server.client(loaded.server.token("gp-nosy"))

        assert 0 == outsider.get("/QuestionnaireResponse").json()["total"]
        assert 0 == outsider.get("/Encounter").json()["total"]


class TestGPSystemWithFhirpy:
    """A GP system using the fhir-py client library: searches, includes and paging as it does them."""

    @pytest.fixture
    def client(self, loaded: Loaded) -> SyncFHIRClient:
        """fhir-py on the server's FHIR base with the administrator token."""
        return SyncFHIRClient(loaded.server.fhir, authorization=f"Bearer {loaded.server.admin}")

    def test_procedure_search(self, client: SyncFHIRClient) -> None:
        """`resources("Procedure").search(patient=…, code=…)` finds the ACP conversation."""
        found = client.resources("Procedure").search(patient="Patient/D2-ACP-Patient",
                                                     code=f"{SCT}|713603004").fetch_all()

        assert ["D2-ACP-Procedure"] == [p.id for p in found]

    def test_fetch_all_follows_the_pages(self, client: SyncFHIRClient) -> None:
        """With pages of 2, fetch_all follows the next links to all five wishes of D3."""
        found = (client.resources("Observation")
                 .search(patient="Patient/D3-ACP-Patient",
                         code=f"{SCT}|153851000146100,395091006,340171000146104,247751003,570801000146104")
                 .limit(2).fetch_all())

        assert sorted(f"D3-ACP-{w}" for w in _WISHES) == sorted(o.id for o in found)

    def test_include_through_fetch_raw(self, client: SyncFHIRClient) -> None:
        """`.include("Consent", "actor")` brings the agreement parties along."""
        bundle = (client.resources("Consent")
                  .search(patient="Patient/D1-ACP-Patient",
                          scope="http://terminology.hl7.org/CodeSystem/consentscope|treatment",
                          category=f"{SCT}|129125009")
                  .include("Consent", "actor").fetch_raw())
        kinds = {(e["search"]["mode"], e["resource"]["resourceType"]) for e in bundle["entry"]}

        assert {("match", "Consent"), ("include", "Patient"), ("include", "PractitionerRole")} == kinds

    def test_count(self, client: SyncFHIRClient) -> None:
        """`count()` reads the total: three Patients share the fixtures' BSN."""
        assert 3 == client.resources("Patient").search(identifier=f"http://fhir.nl/fhir/NamingSystem/bsn|{BSN}").count()
