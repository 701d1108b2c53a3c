"""Shared pieces of the fuzz suite: the server, two organisations with data, the checks every answer must
pass, and the Hypothesis settings.

Every answer is checked the same way (:meth:`World.check`): never a 5xx, never a hang, a 4xx is an
OperationOutcome in ``application/fhir+json``; the fuzz tallies (``faultcounts``) record what was tried
and what went wrong, also when nothing did.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
from faultcounts import count
from hypothesis import HealthCheck, Phase, settings
from sqlalchemy import create_engine, text

REPO = Path(__file__).resolve().parents[2]
FHIR_JSON = "application/fhir+json"
JSON_PATCH = "application/json-patch+json"
#: A request that takes longer than this counts as a hang (the whole fuzz run must stay under 90 s).
REQUEST_TIMEOUT = 10.0
#: Rows that bad input must never add to. The audit log and the inbox are left out on purpose: a refused
#: request is audited, and a refused message's answer is kept in the inbox so that a resend gets it again.
DATA_TABLES = ("resource", "resource_version", "search_token", "search_reference", "search_date", "enrolment",
               "step_run", "timer", "outbox")

#: For CI: the same inputs every run, no example database in the repo, no deadline (real HTTP is slow),
#: and no shrinking, so that a failure (or a hang, bounded by REQUEST_TIMEOUT) ends a property quickly;
#: the falsifying example is still printed.
FUZZ = settings(derandomize=True, database=None, deadline=None, print_blob=False,
                phases=(Phase.explicit, Phase.generate),
                suppress_health_check=(HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much, HealthCheck.large_base_example))


def uid() -> str:
    """A short unique suffix."""
    return uuid.uuid4().hex[:12]


def load_fhir_conftest() -> ModuleType:
    """tests/fhir/conftest.py (start_server, stop_server), loaded by path: tests/fhir is not a package."""
    name = "zorgpad_tests_fhir_server"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "tests" / "fhir" / "conftest.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


class FuzzPropertyError(AssertionError):
    """An answer that breaks a fuzz property (the message says which and shows the request)."""


@dataclass
class Organisation:
    """An organisation's token and the resources (``Type/id`` → version count) it made."""

    ref: str
    token: str
    patient: str = ""
    resources: dict[str, int] = field(default_factory=dict)


@dataclass
class World:
    """A running server with two organisations, A and B, each with a patient and some patient data."""

    server: Any
    a: Organisation
    b: Organisation
    http: httpx.Client
    tables: Any = None

    @property
    def fhir(self) -> str:
        """The FHIR base URL."""
        return str(self.server.fhir)

    def bearer(self, who: str) -> dict[str, str]:
        """The Authorization header for ``who`` (a, b, admin, none, invalid, malformed)."""
        value = {"a": f"Bearer {self.a.token}", "b": f"Bearer {self.b.token}",
                 "admin": f"Bearer {self.server.admin}", "invalid": "Bearer zp_fuzz-not-a-token",
                 "malformed": f"Token {self.a.token}", "none": ""}[who]
        return {"Authorization": value} if value else {}

    def stored(self) -> tuple[int, ...]:
        """Row counts of :data:`DATA_TABLES`."""
        if self.tables is None:
            self.tables = create_engine(self.server.db_url.replace("postgresql://", "postgresql+psycopg://", 1))
        query = "SELECT " + ", ".join(f"(SELECT count(*) FROM {t})" for t in DATA_TABLES)  # noqa: S608 (constants)
        with self.tables.connect() as connection:
            return tuple(connection.execute(text(query)).one())

    def send(self, method: str, path: str, *, who: str = "a", content: bytes | None = None,
             headers: dict[str, str] | None = None, params: Any = None) -> httpx.Response:
        """One request under /fhir; a timeout is a :class:`FuzzPropertyError` (tallied as a hang)."""
        sent = {"Accept": FHIR_JSON, **({"Content-Type": FHIR_JSON} if content is not None else {}),
                **self.bearer(who), **(headers or {})}
        try:
            return self.http.request(method, self.fhir + path, content=content, headers=sent, params=params)
        except httpx.TimeoutException:
            count("fuzz: requests that hung (> 10 s)")
            raise FuzzPropertyError(f"{method} {path} params={_short(params)} body={_short(content)} did not answer "
                              f"within {REQUEST_TIMEOUT} s") from None

    def check(self, response: httpx.Response, *, allow: tuple[int, ...] = ()) -> Any:
        """The checks every answer passes; returns the JSON body (or None)."""
        request = response.request
        where = f"{request.method} {request.url} body={_short(request.content)}"
        if response.status_code >= 500:
            count("fuzz: 5xx answers")
            raise FuzzPropertyError(f"{where} answered {response.status_code}: {response.text[:600]}")
        if allow and response.status_code not in allow:
            raise FuzzPropertyError(f"{where} answered {response.status_code}, expected one of {allow}: "
                              f"{response.text[:600]}")
        if response.status_code in (204, 304):
            return None
        try:
            body = response.json()
        except ValueError:
            raise FuzzPropertyError(f"{where} answered {response.status_code} with a body that is not JSON: "
                              f"{response.text[:300]!r}") from None
        if response.status_code >= 400:
            is_outcome = (response.headers.get("content-type", "").startswith(FHIR_JSON)
                          and isinstance(body, dict) and body.get("resourceType") == "OperationOutcome"
                          and any(i.get("severity") in ("error", "fatal") for i in body.get("issue", [])))
            if not is_outcome:
                count("fuzz: 4xx answers that are not an OperationOutcome")
                raise FuzzPropertyError(f"{where} answered {response.status_code} without an OperationOutcome: "
                                  f"{response.text[:600]}")
        return body

    def unchanged(self, before: tuple[int, ...], what: str) -> None:
        """Fail (and tally) when bad input stored something."""
        after = self.stored()
        if after != before:
            count("fuzz: stored by bad input")
            grown = {t: b - a for t, a, b in zip(DATA_TABLES, before, after, strict=True) if a != b}
            raise FuzzPropertyError(f"{what} changed the data tables: {grown}")


def _short(value: Any, limit: int = 300) -> str:
    text_ = value.decode("utf-8", "replace") if isinstance(value, bytes) else repr(value)
    return text_ if len(text_) <= limit else f"{text_[:limit]}… ({len(text_):,} characters)"


def seed(server: Any) -> World:
    """Organisations A and B, each with a patient, Observations, a Condition and an enrolment ($apply)."""
    http = httpx.Client(timeout=REQUEST_TIMEOUT)
    tag = uid()
    orgs = []
    for name in ("a", "b"):
        ref = f"Organization/fuzz-{name}-{tag}"
        org = Organisation(ref, server.token(ref))
        client = server.client(org.token)
        pid = f"fuzz{name}-pat-{tag}"
        org.patient = f"Patient/{pid}"
        writes: list[tuple[str, dict[str, Any]]] = [
            (org.patient, {"resourceType": "Patient", "id": pid, "name": [{"family": f"Fuzz{name.upper()}"}],
                           "generalPractitioner": [{"reference": ref}]}),
            *[(f"Observation/fuzz{name}-obs{i}-{tag}", {
                "resourceType": "Observation", "id": f"fuzz{name}-obs{i}-{tag}", "status": "final",
                "code": {"coding": [{"system": "http://snomed.info/sct", "code": "713636003"}], "text": "x"},
                "valueBoolean": False, "effectiveDateTime": f"2024-0{i + 1}-01",
                "subject": {"reference": org.patient}}) for i in range(3)],
            (f"Condition/fuzz{name}-cond-{tag}", {
                "resourceType": "Condition", "id": f"fuzz{name}-cond-{tag}", "code": {"text": "x"},
                "subject": {"reference": org.patient}}),
            (f"Encounter/fuzz{name}-enc-{tag}", {
                "resourceType": "Encounter", "id": f"fuzz{name}-enc-{tag}", "status": "finished",
                "class": {"code": "AMB"}, "subject": {"reference": org.patient}}),
        ]
        for ref_, body in writes:
            response = client.put(f"/{ref_}", json=body)
            assert response.status_code == 201, response.text
            org.resources[ref_] = 1
        # A second version, so that vread/history have more than one version to leak.
        observation = writes[1][1]
        assert client.put(f"/Observation/{observation['id']}", json={**observation, "status": "amended"}
                          ).status_code == 200
        org.resources[f"Observation/{observation['id']}"] = 2
        # The surprise-question Observation enrols the patient in example-acp (a CarePlan and Tasks); $apply
        # enrols it in a second pathway.
        plan = client.post("/PlanDefinition/palliative-acp/$apply", json={
            "resourceType": "Parameters", "parameter": [{"name": "subject",
                                                         "valueReference": {"reference": org.patient}}]})
        assert plan.status_code == 200, plan.text
        plans = client.get("/CarePlan", params={"subject": org.patient}).json()
        for entry in plans.get("entry", []):
            if entry["resource"]["resourceType"] == "CarePlan":
                org.resources[f"CarePlan/{entry['resource']['id']}"] = 1
        tasks = client.get("/Task", params={"patient": org.patient}).json()
        for entry in tasks.get("entry", []):
            if entry["resource"]["resourceType"] == "Task":
                org.resources[f"Task/{entry['resource']['id']}"] = 1
        client.get(f"/{org.patient}")
        audit = client.get("/AuditEvent", params={"patient": org.patient, "_count": "5"}).json()
        for entry in audit.get("entry", [])[:5]:
            org.resources[f"AuditEvent/{entry['resource']['id']}"] = 1
        orgs.append(org)
    return World(server, orgs[0], orgs[1], http)


@contextmanager
def seeded_server(database_url: str, *, kill: bool = False) -> Iterator[World]:
    """A `zorgpad serve` on ``database_url`` with organisations A and B seeded; stopped after (killed
    first with ``kill``, for a server that may be stuck in a request)."""
    servers = load_fhir_conftest()
    server = servers.start_server(database_url)
    try:
        built = seed(server)
        yield built
        built.http.close()
        if built.tables is not None:
            built.tables.dispose()
    finally:
        if kill:
            server.process.kill()
        servers.stop_server(server)


def leaks(world: World, bundle: Any) -> list[str]:
    """The entries of a search Bundle (as A) that are B's data: B's resources, or anything naming B's patient."""
    if not isinstance(bundle, dict):
        return []
    found = []
    secret = world.b.patient.split("/")[1]
    for entry in bundle.get("entry", []):
        resource = entry.get("resource") or {}
        rtype, rid = resource.get("resourceType"), resource.get("id")
        if rtype == "OperationOutcome":
            continue  # echoes the (fuzzed) parameters, which may name B's ids
        if f"{rtype}/{rid}" in world.b.resources:
            found.append(f"{rtype}/{rid}")
        elif secret in json.dumps(resource) and (rtype != "AuditEvent" or world.b.ref in json.dumps(resource)):
            # A's own AuditEvents may quote a (fuzzed) query naming B's id; B's AuditEvents, or any other
            # resource naming B's patient, leak.
            found.append(f"{rtype}/{rid} (names {world.b.patient})")
    return found
