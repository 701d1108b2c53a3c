"""Property-based fuzzing of every FHIR write with malformed bodies: create, conditional create, update,
patch, transaction and batch Bundles, $process-message and $apply, for every resource type the
CapabilityStatement lists. Each answer is a 4xx OperationOutcome (401 without a valid token), never a 5xx,
and the data tables are unchanged."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from faultcounts import count
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.fuzzkit import FHIR_JSON, FUZZ, JSON_PATCH, FuzzPropertyError, World, uid
from tests.fuzz.strategies import (
    bad_patch,
    bad_resource,
    deep_raw,
    encode,
    json_values,
    nasty_text,
    not_json,
    wrong_content_type,
)

pytestmark = pytest.mark.slow

MB = 1024 * 1024
#: Who sends: mostly organisation A, sometimes B, sometimes a caller without a valid token.
CALLERS = st.sampled_from(["a", "a", "a", "a", "b", "admin", "none", "invalid", "malformed"])
#: Header values a client can send at all (h11 refuses control characters and non-ASCII).
header_safe = nasty_text.filter(lambda v: all(32 <= ord(c) < 127 for c in v))


@pytest.fixture(scope="module")
def types(world: World) -> dict[str, list[str]]:
    """Resource type → interactions, as the CapabilityStatement at /fhir/metadata lists them."""
    statement = world.http.get(f"{world.fhir}/metadata").json()
    return {r["type"]: [i["code"] for i in r["interaction"]] for r in statement["rest"][0]["resource"]}


def expect_refusal(world: World, response: Any, who: str, what: str) -> Any:
    """401 for a caller without a valid token, else a 4xx; always an OperationOutcome."""
    if who in ("none", "invalid", "malformed"):
        return world.check(response, allow=(401,))
    body = world.check(response)
    if not 400 <= response.status_code < 500:
        raise FuzzPropertyError(f"{what}: bad input answered {response.status_code}: {response.text[:500]}")
    return body


@st.composite
def body_for(draw: st.DrawFn, resource_type: str, resource_id: str | None) -> tuple[bytes, dict[str, str], str]:
    """A bad body for ``resource_type`` with its headers, and a description for the failure message."""
    kind = draw(st.sampled_from(["mutated", "mutated", "mutated", "mutated", "deep", "not json", "content type"]))
    if kind == "mutated":
        body, names = draw(bad_resource(resource_type, resource_id))
        return encode(body, ascii_only=draw(st.booleans())), {}, ", ".join(names)
    if kind == "deep":
        return draw(deep_raw(resource_type)), {}, "raw deep nesting"
    if kind == "not json":
        return draw(not_json), {}, "not a JSON object"
    valid: dict[str, Any] = {"resourceType": resource_type, **({"id": resource_id} if resource_id else {})}
    return encode(valid), {"Content-Type": draw(wrong_content_type)}, "a valid body with a wrong Content-Type"


class TestBrokenResources:
    """Create, conditional create and update of every type with broken resources."""

    @FUZZ
    @given(data=st.data())
    def test_are_refused_and_store_nothing(self, world: World, types: dict[str, list[str]],
                                           data: st.DataObject) -> None:
        """Every interaction on every type answers a broken resource with a 4xx OperationOutcome, storing nothing."""
        count("fuzz create/update bodies: inputs tried")
        rtype = data.draw(st.sampled_from(sorted(types)), label="type")
        interaction = data.draw(st.sampled_from(["create", "conditional create", "update (new id)",
                                                 "update (existing)"]), label="interaction")
        who = data.draw(CALLERS, label="who")
        own = [r.split("/")[1] for r in world.a.resources if r.startswith(f"{rtype}/")]
        theirs = [r.split("/")[1] for r in world.b.resources if r.startswith(f"{rtype}/")]
        rid = None
        if interaction.startswith("update"):
            rid = data.draw(st.sampled_from(own + theirs) if interaction == "update (existing)" and own + theirs
                            else st.just(f"fuzz-{uid()}"), label="id")
        content, headers, what = data.draw(body_for(rtype, rid), label="body")
        if interaction == "conditional create":
            headers["If-None-Exist"] = data.draw(st.one_of(
                header_safe.map(lambda v: f"identifier={v}"), st.just(f"_id={world.b.patient.split('/')[1]}"),
                header_safe), label="If-None-Exist")
        before = world.stored()

        response = world.send("PUT" if rid else "POST", f"/{rtype}/{rid}" if rid else f"/{rtype}", who=who,
                              content=content, headers=headers)

        if headers.get("Content-Type") and who in ("a", "b", "admin"):
            world.check(response, allow=(404, 405, 415))
        else:
            expect_refusal(world, response, who, f"{interaction} {rtype} with {what}")
        world.unchanged(before, f"{interaction} {rtype} with {what}")


class TestBrokenPatches:
    """PATCH with JSON Patch documents that cannot be applied or give an invalid resource."""

    @FUZZ
    @given(data=st.data())
    def test_are_refused_and_change_nothing(self, world: World, data: st.DataObject) -> None:
        """A broken JSON Patch of A's or B's resources answers a 4xx OperationOutcome and stores nothing."""
        count("fuzz patch: inputs tried")
        target = data.draw(st.sampled_from(sorted(world.a.resources) + sorted(world.b.resources)), label="target")
        if target.startswith(("AuditEvent/", "CarePlan/", "Task/")):
            target = world.a.patient
        patch = data.draw(bad_patch(), label="patch")
        who = data.draw(CALLERS, label="who")
        content_type = data.draw(st.sampled_from([JSON_PATCH, JSON_PATCH, FHIR_JSON, "application/json"]))
        before = world.stored()

        response = world.send("PATCH", f"/{target}", who=who, content=encode(patch),
                              headers={"Content-Type": content_type})

        expect_refusal(world, response, who, f"PATCH {target} with {patch!r:.200}")
        world.unchanged(before, f"PATCH {target}")


def bundle_entry(data: st.DataObject, world: World, types: list[str], who: str) -> Any:
    """One entry that must fail: a broken resource, a bad request, or (for A) a write about B's patient.

    Kind ``no request`` is the broken resource without ``request``.
    """
    draw = data.draw
    rtype = draw(st.sampled_from(types))
    kinds = ["POST broken", "PUT broken", "bad method", "bad url", "no request", "not an object", "PATCH broken"]
    if who == "a":  # a write about B's patient is valid for B and the administrator
        kinds.append("about B's patient")
    kind = draw(st.sampled_from(kinds))
    if kind == "not an object":
        return draw(st.one_of(st.integers(), nasty_text, st.lists(st.integers(), max_size=2)))
    resource, _ = draw(bad_resource(rtype, "e1" if kind == "PUT broken" else None))
    entry: dict[str, Any] = {"fullUrl": f"urn:uuid:{uid()}", "resource": resource}
    if kind == "POST broken":
        entry["request"] = {"method": "POST", "url": rtype}
    elif kind == "PUT broken":
        entry["request"] = {"method": "PUT", "url": f"{rtype}/e1"}
    elif kind == "bad method":
        entry["request"] = {"method": draw(st.one_of(nasty_text, st.integers(), st.sampled_from(["TRACE", "HEAD"]))),
                            "url": rtype}
    elif kind == "bad url":
        entry["request"] = {"method": draw(st.sampled_from(["POST", "PUT", "DELETE", "PATCH"])),
                            "url": draw(st.one_of(nasty_text, st.integers(), st.sampled_from(
                                [f"{rtype}/$apply", f"{rtype}/x/_history", "http://evil.example/Patient/x",
                                 f"{rtype}?_id=x", "../admin", "", "Foo/x"])))}
    elif kind == "PATCH broken":
        patch = base64.b64encode(encode(draw(bad_patch()))).decode()
        entry["resource"] = {"resourceType": "Binary", "contentType": JSON_PATCH, "data": patch}
        entry["request"] = {"method": "PATCH", "url": world.a.patient}
    elif kind == "about B's patient":
        entry["resource"] = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                             "subject": {"reference": world.b.patient}}
        entry["request"] = {"method": "POST", "url": "Observation"}
    return entry


class TestBrokenBundles:
    """Transaction and batch Bundles whose every entry is bad, and Bundles broken at the top."""

    @FUZZ
    @given(data=st.data())
    def test_store_nothing(self, world: World, types: dict[str, list[str]], data: st.DataObject) -> None:
        """A transaction answers a 4xx OperationOutcome; a batch a 4xx, or 200 with a 4xx outcome per entry."""
        count("fuzz transaction/batch: inputs tried")
        writable = sorted(t for t, i in types.items() if "create" in i)
        kind = data.draw(st.sampled_from(["transaction", "batch"]), label="type")
        who = data.draw(CALLERS, label="who")
        bundle: dict[str, Any] = {"resourceType": "Bundle", "type": kind,
                                  "entry": [bundle_entry(data, world, writable, who)
                                            for _ in range(data.draw(st.integers(1, 3)))]}
        top = data.draw(st.sampled_from(["none", "none", "type", "entry", "unknown", "resourceType"]), label="top")
        if top == "type":
            bundle["type"] = data.draw(st.one_of(nasty_text, st.integers(), st.sampled_from(
                ["message", "document", "searchset", "collection", "Transaction"])))
        elif top == "entry":
            bundle["entry"] = data.draw(st.one_of(json_values.filter(lambda v: not isinstance(v, list)),
                                                  st.just([None])))
        elif top == "unknown":
            bundle["fuzzTop"] = data.draw(json_values)
        elif top == "resourceType":
            bundle["resourceType"] = data.draw(st.sampled_from(["Parameters", "Patient", "bundle", ""]))
        before = world.stored()

        response = world.send("POST", "", who=who, content=encode(bundle))

        if kind == "batch" and response.status_code == 200 and who in ("a", "b", "admin"):
            answer = world.check(response)
            statuses = [str((e.get("response") or {}).get("status", "")) for e in answer.get("entry", [])]
            if len(statuses) != len(bundle["entry"]) or not all(s[:1] == "4" for s in statuses):
                raise FuzzPropertyError(f"a batch of bad entries answered {statuses}: {json.dumps(answer)[:600]}")
        else:
            expect_refusal(world, response, who, f"{kind} Bundle {encode(bundle)[:300]!r}")
        world.unchanged(before, f"{kind} Bundle")


class TestBrokenMessages:
    """$process-message with what is not a message, or a message whose content is bad."""

    @FUZZ
    @given(data=st.data())
    def test_store_nothing(self, world: World, types: dict[str, list[str]], data: st.DataObject) -> None:
        """A bad message answers a 4xx OperationOutcome, or a response message with fatal-error; nothing stored."""
        count("fuzz $process-message: inputs tried")
        header: dict[str, Any] = {"resourceType": "MessageHeader", "id": uid(),
                                  "eventCoding": {"system": "https://zorgpad.nl/fhir/event", "code": "x"},
                                  "source": {"endpoint": "https://gp.example/fhir"}}
        breakage = data.draw(st.sampled_from(["header", "content", "content", "order", "wrapper"]), label="broken")
        entries: list[Any] = [{"fullUrl": f"urn:uuid:{uid()}", "resource": header}]
        if breakage == "header":
            key = data.draw(st.sampled_from(["id", "eventCoding", "source", "fuzz", "response", "focus"]))
            header[key] = data.draw(json_values)
            if key in ("id", "eventCoding", "source") and data.draw(st.booleans()):
                del header[key]
        else:
            rtype = data.draw(st.sampled_from(sorted(t for t, i in types.items() if "create" in i)))
            resource, _ = data.draw(bad_resource(rtype))
            entries.append({"fullUrl": f"urn:uuid:{uid()}", "resource": resource})
            if breakage == "order":
                entries.reverse()
        message: Any = {"resourceType": "Bundle", "id": uid(), "type": "message", "entry": entries}
        if breakage == "wrapper":
            message = {"resourceType": "Parameters", "parameter": [
                {"name": data.draw(st.sampled_from(["content", "async", "response-url", "fuzz"])),
                 **data.draw(st.sampled_from([{"resource": message}, {"valueBoolean": True},
                                              {"valueString": "x"}, {}]))}]}
        who = data.draw(CALLERS, label="who")
        before = world.stored()

        response = world.send("POST", "/$process-message", who=who, content=encode(message))

        if response.status_code == 200 and who in ("a", "b", "admin"):
            answer = world.check(response)
            codes = [(e.get("resource") or {}).get("response", {}).get("code") for e in answer.get("entry", [])[:1]]
            if codes != ["fatal-error"]:
                raise FuzzPropertyError(f"a bad message ({breakage}) answered 200 with {codes}: "
                                        f"{json.dumps(answer)[:600]}")
        else:
            expect_refusal(world, response, who, f"$process-message ({breakage})")
        world.unchanged(before, f"$process-message ({breakage})")


class TestBrokenApply:
    """$apply with broken Parameters, unknown pathways and other organisations' patients."""

    @FUZZ
    @given(data=st.data())
    def test_enrols_nobody(self, world: World, data: st.DataObject) -> None:
        """A bad $apply answers a 4xx OperationOutcome and enrols nobody."""
        count("fuzz $apply: inputs tried")
        pathway = data.draw(st.one_of(st.sampled_from(["example-acp", "palliative-acp", "dying-phase"]),
                                      header_safe.filter(lambda s: s.strip() and not set(s) & set("/?#%"))),
                                label="pathway")
        subject = data.draw(st.one_of(st.sampled_from([world.b.patient, "Patient/nobody", world.b.ref, "",
                                                       f"{world.fhir}/{world.b.patient}"]),
                                      nasty_text), label="subject")
        value = data.draw(st.sampled_from([{"valueReference": {"reference": subject}}, {"valueString": subject},
                                           {"valueReference": subject}, {"resource": {"resourceType": "Patient"}},
                                           {"valueReference": {"reference": subject, "fuzz": 1}}]))
        name = data.draw(st.sampled_from(["subject", "subject", "Subject", "patient", "version", ""]))
        body: Any = {"resourceType": "Parameters", "parameter": [{"name": name, **value}]}
        if data.draw(st.integers(0, 4)) == 0:
            body = data.draw(st.one_of(json_values, st.just({"resourceType": "Parameters", "parameter": {}})))
        method = data.draw(st.sampled_from(["POST", "POST", "GET"]))
        who = data.draw(CALLERS, label="who")
        before = world.stored()

        if method == "POST":
            response = world.send("POST", f"/PlanDefinition/{pathway}/$apply", who=who, content=encode(body))
        else:
            response = world.send("GET", f"/PlanDefinition/{pathway}/$apply", who=who, params={"subject": subject})

        expect_refusal(world, response, who, f"{method} $apply {pathway} {body!r:.200}")
        world.unchanged(before, f"$apply {pathway}")


class TestHugeBodies:
    """A couple of explicit multi-megabyte bodies (the properties keep theirs under a few hundred kB)."""

    @pytest.mark.parametrize(("name", "size"), [("5 MB string", 5), ("20 MB array", 20), ("51 MB", 51)])
    def test_are_refused_and_store_nothing(self, world: World, name: str, size: int) -> None:
        """A multi-MB invalid Patient (413 above 50 MB) and a multi-MB transaction answer 4xx, storing nothing."""
        count("fuzz huge bodies: inputs tried", 2)
        if name.endswith("string"):
            body = b'{"resourceType":"Patient","birthDate":"' + b"1" * (size * MB) + b'"}'
        else:
            body = (b'{"resourceType":"Patient","fuzz":[' + b'"xxxxxxxxxxxxxx",' * (size * MB // 17)
                    + b'"end"]}')
        bundle = (b'{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"POST",'
                  b'"url":"Patient"},"resource":' + body + b"}]}")
        before = world.stored()

        answers = [world.send("POST", "/Patient", content=body), world.send("POST", "", content=bundle)]

        assert [413 if size > 50 else 400] * 2 == [r.status_code for r in answers]
        for response in answers:
            world.check(response)
        world.unchanged(before, name)
