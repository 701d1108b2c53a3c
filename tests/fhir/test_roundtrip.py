"""Round trips of the HL7 R4 examples over real HTTP: every example of a type the server writes comes back
exactly as it was sent (apart from ``meta.versionId``/``meta.lastUpdated``); every other type is refused the way
the CapabilityStatement says it will be."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.slow

FHIR_JSON = "application/fhir+json"
CORPORA = Path(__file__).resolve().parents[3] / "shared" / "corpora"
EXAMPLES = sorted((CORPORA / "hl7-r4-examples" / "workflow-subset").glob("*.json"))
SERVER_META = ("versionId", "lastUpdated")
#: Elements the FHIR spec makes the server's to set: a client asks for a Subscription ("requested") and the
#: server decides its status (R4 subscription.html, "The server is responsible for setting the status").
SERVER_OWNED = {"Subscription": "status"}
SUBSCRIPTION_STATUSES = ("requested", "active", "error", "off")




@pytest.fixture(scope="module")
def supported(fhir_server: Any) -> dict[str, list[str]]:
    """The interactions the CapabilityStatement claims, by resource type."""
    statement = fhir_server.client("").get("/metadata").json()
    return {r["type"]: [i["code"] for i in r["interaction"]] for r in statement["rest"][0]["resource"]}


def load(path: Path) -> dict[str, Any]:
    """One example resource."""
    return dict(json.loads(path.read_text(encoding="utf-8")))


def without_server_meta(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource without the meta elements the server sets; meta itself goes if nothing else is left."""
    copy = dict(resource)
    meta = {k: v for k, v in (copy.pop("meta", None) or {}).items() if k not in SERVER_META}
    if meta:
        copy["meta"] = meta
    return copy


def is_outcome(response: httpx.Response) -> bool:
    """Whether a response is an OperationOutcome in the FHIR media type."""
    return (response.headers.get("content-type", "").startswith(FHIR_JSON)
            and response.json().get("resourceType") == "OperationOutcome")


def test_the_corpus_is_there() -> None:
    """The example corpus is present (otherwise the round trips below would silently test nothing)."""
    assert len(EXAMPLES) > 100


class TestRoundTrip:
    """PUT each example (update-as-create with its own id), then GET it back."""

    @pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
    def test_example_round_trips_or_is_refused_as_declared(self, fhir_server: Any, supported: dict[str, list[str]],
                                                            path: Path) -> None:
        """A writable type comes back equal to what was sent; a read-only type gets 405, an unknown type 404."""
        resource = load(path)
        rtype, rid = resource["resourceType"], resource["id"]
        client = fhir_server.client()

        response = client.put(f"/{rtype}/{rid}", json=resource)

        if rtype not in supported:
            assert (404, True) == (response.status_code, is_outcome(response)), response.text[:500]
            assert 404 == client.get(f"/{rtype}/{rid}").status_code
        elif "update" not in supported[rtype]:
            assert (405, True) == (response.status_code, is_outcome(response)), response.text[:500]
            assert 404 == client.get(f"/{rtype}/{rid}").status_code
        else:
            assert 201 == response.status_code, response.text[:500]
            read = client.get(f"/{rtype}/{rid}")
            assert 200 == read.status_code
            sent, got = without_server_meta(resource), without_server_meta(read.json())
            if rtype in SERVER_OWNED:
                assert got.pop(SERVER_OWNED[rtype]) in SUBSCRIPTION_STATUSES
                sent.pop(SERVER_OWNED[rtype])
            assert sent == got
            assert f'W/"{read.json()["meta"]["versionId"]}"' == read.headers["etag"]

    def test_an_update_of_an_example_round_trips_too(self, fhir_server: Any) -> None:
        """A second PUT of a changed example comes back as the change, version 2."""
        resource = load(CORPORA / "hl7-r4-examples" / "workflow-subset" / "Task-example1.json")
        resource["id"] = "roundtrip-update"
        client = fhir_server.client()
        client.put(f"/Task/{resource['id']}", json=resource)
        changed = {**resource, "status": "completed"}

        client.put(f"/Task/{resource['id']}", json=changed)

        read = client.get(f"/Task/{resource['id']}").json()
        assert without_server_meta(changed) == without_server_meta(read)
        assert "2" == read["meta"]["versionId"]
