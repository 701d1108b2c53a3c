"""Property-based fuzzing of search and of organisation scope: injection strings, chains, _include, _sort and
_count extremes never answer 5xx and never show organisation A anything of organisation B's patient; reads,
vreads and history of B's resources answer A as if they did not exist, and 401 without a valid token."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from faultcounts import count
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.fuzzkit import FUZZ, FuzzPropertyError, World, leaks, seeded_server
from tests.fuzz.strategies import INJECTIONS, nasty_text

pytestmark = pytest.mark.slow

#: Parameters worth aiming at, besides what the CapabilityStatement lists.
RESULT = ["_count", "_offset", "_sort", "_include", "_revinclude", "_include:iterate", "_summary", "_elements",
          "_total", "_format", "_id", "_lastUpdated", "_has:Observation:subject:code", "_content", "_filter"]
#: Chains whose every link names its type (cheap to evaluate); untyped multi-link chains: TestSearchCost.
CHAINS = ["subject:Patient.name", "subject:Patient._id", "subject:Patient.general-practitioner",
          "subject:Patient.general-practitioner:Organization._id", "patient:Patient.identifier", "subject._id",
          "patient._id", "subject.name", "encounter._id", "based-on:CarePlan.subject:Patient._id"]


@pytest.fixture(scope="module")
def params(world: World) -> dict[str, list[str]]:
    """Resource type → search parameter names, from the CapabilityStatement."""
    statement = world.http.get(f"{world.fhir}/metadata").json()
    return {r["type"]: [p["name"] for p in r.get("searchParam", [])] for r in statement["rest"][0]["resource"]}


def values(world: World) -> st.SearchStrategy[str]:
    """Values aimed at B's data (its ids, in every shape) and at the parser (injection strings)."""
    b_ids = sorted(world.b.resources)
    aimed = st.sampled_from(b_ids).flatmap(lambda ref: st.sampled_from([
        ref, ref.split("/")[1], f"{world.fhir}/{ref}", f"{ref},{world.a.patient}", f"{ref}/_history/1",
        ref.split("/")[1][:8] + "%", ref.replace("-", "_"), ref.upper()]))
    modifiers = st.sampled_from(["", "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"]).flatmap(
        lambda p: st.sampled_from(["2024", "2024-01-01", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.9999999Z",
                                   "2024-01-01T00:00:00+14:00", "99999"]).map(lambda d: p + d))
    return st.one_of(aimed, nasty_text, modifiers, st.sampled_from(["0", "1", "1000", "1001", "2147483647",
                                                                    "2147483648", "-1", "1e3", "*", "Patient:*",
                                                                    "Observation:subject",
                                                                    "Observation:subject:Patient",
                                                                    "-_lastUpdated,_id", "_id,-foo"]),
                     st.lists(nasty_text, min_size=2, max_size=6).map(",".join))


class TestSearchInjection:
    """Search of every type by organisation A, with hostile parameters."""

    @pytest.mark.parametrize("name", ["code", "subject", "_id", "date", "subject:Patient.name", "_include",
                                      "_sort", "_count"])
    def test_every_listed_injection_string_once(self, world: World, name: str) -> None:
        """Each listed injection string as the value of a token, reference, date, chain and result parameter."""
        count("fuzz search injection: inputs tried", len(INJECTIONS))

        for value in INJECTIONS:
            self.search(world, "Observation", [(name, value)], "GET")

    @FUZZ
    @given(data=st.data())
    def test_never_5xx_and_never_shows_b(self, world: World, params: dict[str, list[str]],
                                         data: st.DataObject) -> None:
        """GET and POST _search as A answer 2xx/4xx and no entry is B's data."""
        count("fuzz search injection: inputs tried")
        rtype = data.draw(st.sampled_from(sorted(params)), label="type")
        names = st.one_of(st.sampled_from(params[rtype] or ["_id"]), st.sampled_from(RESULT), st.sampled_from(CHAINS),
                          st.sampled_from(params[rtype] or ["_id"]).flatmap(lambda n: st.sampled_from(
                              [f"{n}:missing", f"{n}:not", f"{n}:exact", f"{n}:Patient", f"{n}:contains",
                               f"{n}:below", f"{n}:{{}}", f"{n}:"])),
                          nasty_text.filter(lambda s: "\x00" not in s))
        query = data.draw(st.lists(st.tuples(names, values(world)), min_size=1, max_size=5), label="query")
        self.search(world, rtype, query, data.draw(st.sampled_from(["GET", "GET", "POST"]), label="method"))

    def search(self, world: World, rtype: str, query: list[tuple[str, str]], method: str) -> None:
        """One search as A, checked for 5xx and for B's data."""
        if method == "GET":
            response = world.send("GET", f"/{rtype}", params=query)
        else:
            response = world.send("POST", f"/{rtype}/_search", content=_form(query),
                                  headers={"Content-Type": "application/x-www-form-urlencoded"})
        body = world.check(response)
        found = leaks(world, body) if response.status_code == 200 else []
        if found:
            count("fuzz: cross-organisation leaks", len(found))
            raise FuzzPropertyError(f"{method} {rtype} {query!r:.300} as A showed B's data: {found}")

    @FUZZ
    @given(who=st.sampled_from(["none", "invalid", "malformed"]), rtype=st.sampled_from(["Patient", "Observation",
                                                                                          "AuditEvent", "Task"]),
           value=nasty_text)
    def test_without_a_valid_token_is_401(self, world: World, who: str, rtype: str, value: str) -> None:
        """Every search without a valid token answers 401 with an OperationOutcome."""
        count("fuzz search without token: inputs tried")

        world.check(world.send("GET", f"/{rtype}", who=who, params={"_id": value, "subject": value}), allow=(401,))


def _form(query: list[tuple[str, str]]) -> bytes:
    from urllib.parse import urlencode

    return urlencode(query).encode()


class TestOtherOrganisationsResources:
    """Reads, vreads and history of B's resources as A, and without a token."""

    @FUZZ
    @given(data=st.data())
    def test_answer_as_if_they_did_not_exist(self, world: World, data: st.DataObject) -> None:
        """A gets for B's resource exactly what it gets for a missing one (404 for read/history); no token: 401."""
        count("fuzz cross-organisation reads: inputs tried")
        ref = data.draw(st.sampled_from(sorted(world.b.resources)), label="B's resource")
        rtype, rid = ref.split("/")
        version = data.draw(st.one_of(st.sampled_from(["1", "2", "3", "0", "-1", "01", "1.0", "x", "1" * 30,
                                                       "%20", "999999999999999999999"]),
                                      nasty_text.filter(lambda s: s.strip() and s.isprintable()
                                                        and not set(s) & set("/?#%\\"))), label="version")
        kind = data.draw(st.sampled_from(["read", "vread", "history"]), label="interaction")
        suffix = {"read": "", "vread": f"/_history/{version}", "history": "/_history"}[kind]
        who = data.draw(st.sampled_from(["a", "a", "a", "none", "invalid", "malformed"]), label="who")
        headers = data.draw(st.sampled_from([{}, {"If-None-Match": 'W/"1"'}, {"Prefer": "return=minimal"},
                                             {"Accept": "*/*"}]))

        response = world.send("GET", f"/{ref}{suffix}", who=who, headers=headers)

        if who != "a":
            world.check(response, allow=(401,))
            return
        world.check(response)
        twin = world.send("GET", f"/{rtype}/fuzz-missing-{rid[-12:]}{suffix}", who="a", headers=headers)
        same = (response.status_code == twin.status_code
                and [i.get("code") for i in response.json().get("issue", [])]
                == [i.get("code") for i in twin.json().get("issue", [])])
        # Unsupported interactions (history of an AuditEvent) answer alike for B's ids and missing ones.
        if response.status_code < 400 or not same or (kind == "read" and response.status_code != 404):
            count("fuzz: cross-organisation leaks")
            raise FuzzPropertyError(f"GET {ref}{suffix} as A answered {response.status_code} "
                                    f"{response.text[:300]}; a missing id answered {twin.status_code} "
                                    f"{twin.text[:300]}")

    @FUZZ
    @given(data=st.data())
    def test_cannot_be_reached_by_writing_oneself_into_the_care_of_b_s_patient(self, world: World,
                                                                              data: st.DataObject) -> None:
        """A's writes that would make A take part in B's patient's care are refused, and B's patient stays 404."""
        count("fuzz cross-organisation writes: inputs tried")
        patient = data.draw(st.sampled_from([world.b.patient, f"{world.fhir}/{world.b.patient}",
                                             world.b.patient + "/_history/1", world.b.patient.lower(),
                                             world.b.patient.split("/")[1]]), label="patient")
        me = {"reference": world.a.ref}
        body = data.draw(st.sampled_from([
            {"resourceType": "CareTeam", "status": "active", "subject": {"reference": patient},
             "participant": [{"member": me}]},
            {"resourceType": "Task", "status": "requested", "intent": "order", "for": {"reference": patient},
             "owner": me},
            {"resourceType": "Task", "status": "requested", "intent": "order", "for": {"reference": patient},
             "requester": me},
            {"resourceType": "Patient", "id": world.b.patient.split("/")[1], "generalPractitioner": [me]},
            {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
             "subject": {"reference": patient}},
            {"resourceType": "Consent", "status": "active", "scope": {"text": "x"}, "category": [{"text": "x"}],
             "patient": {"reference": patient}, "organization": [me]},
        ]), label="body")
        how = data.draw(st.sampled_from(["create", "transaction", "batch"]), label="how")
        before = world.stored()

        if how == "create" and body["resourceType"] == "Patient":
            response = world.send("PUT", f"/{world.b.patient}", content=_json(body))
        elif how == "create":
            response = world.send("POST", f"/{body['resourceType']}", content=_json(body))
        else:
            url = world.b.patient if body["resourceType"] == "Patient" else body["resourceType"]
            method = "PUT" if body["resourceType"] == "Patient" else "POST"
            response = world.send("POST", "", content=_json({"resourceType": "Bundle", "type": how, "entry": [
                {"resource": body, "request": {"method": method, "url": url}}]}))
        world.check(response)
        read = world.send("GET", f"/{world.b.patient}")

        if read.status_code != 404 or world.stored() != before:
            count("fuzz: cross-organisation leaks")
            raise FuzzPropertyError(f"{how} of {body} as A answered {response.status_code} {response.text[:300]}; "
                                    f"then A's read of B's patient answered {read.status_code}")


def _json(body: Any) -> bytes:
    import json

    return json.dumps(body).encode()


@pytest.fixture(scope="class")
def own_server(database_factory: Callable[[], str]) -> Iterator[World]:
    """A server of its own: a search that hangs must not stall the other tests (killed, not waited for)."""
    with seeded_server(database_factory(), kill=True) as built:
        yield built


class TestSearchCost:
    """Searches that cost the server a lot for the client little: each is answered, 2xx or 4xx, within 10 s."""

    @pytest.mark.parametrize("query", [
        pytest.param({"date": ",".join(f"ge2020-01-{i % 28 + 1:02d}" for i in range(1200))},
                     id="1200 alternative dates"),
        pytest.param({"code": ",".join(f"http://snomed.info/sct|{i}" for i in range(1200))},
                     id="1200 alternative codes"),
        # Last: it keeps the server busy long after the client gave up.
        pytest.param({"subject.subject.subject._id": "x"}, id="a chain of three untyped links"),
    ])
    def test_is_answered_promptly_without_a_5xx(self, own_server: World, query: dict[str, str]) -> None:
        """The search answers within 10 s with 2xx or a 4xx OperationOutcome (a refusal of the cost is fine)."""
        count("fuzz search cost: inputs tried")
        started = time.monotonic()

        response = own_server.send("POST", "/Observation/_search", content=_form(list(query.items())),
                                   headers={"Content-Type": "application/x-www-form-urlencoded"})

        own_server.check(response)
        assert time.monotonic() - started < 10
