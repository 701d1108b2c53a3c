"""Hypothesis strategies for hostile FHIR input: resources broken in one or more ways, broken JSON Patches,
Bundles, messages and $apply Parameters, and search parameters full of injection strings.

Every body drawn here is invalid (or sent in a way the server must refuse), so storing anything from it is
a bug; the ``mutations`` name what was broken, for the failure message.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

JSON = dict[str, Any]

#: Minimal valid resources, so that a mutation is the only thing wrong; the other types need nothing.
BASES: dict[str, JSON] = {
    "Observation": {"status": "final", "code": {"text": "x"}},
    "Task": {"status": "requested", "intent": "order"},
    "CarePlan": {"status": "active", "intent": "plan"},
    "Condition": {"code": {"text": "x"}},
    "CareTeam": {"status": "active"},
    "Consent": {"status": "active", "scope": {"text": "x"}, "category": [{"text": "x"}]},
    "Encounter": {"status": "finished", "class": {"code": "AMB"}},
    "Procedure": {"status": "completed"},
    "Communication": {"status": "completed"},
    "CommunicationRequest": {"status": "active"},
    "QuestionnaireResponse": {"status": "completed"},
    "Questionnaire": {"status": "active"},
    "Subscription": {"status": "requested", "reason": "x", "criteria": "Patient",
                     "channel": {"type": "rest-hook", "endpoint": "https://example.org/hook"}},
    "Provenance": {"target": [{"reference": "Patient/x"}], "recorded": "2024-01-01T00:00:00Z",
                   "agent": [{"who": {"reference": "Organization/x"}}]},
    "Goal": {"lifecycleStatus": "active", "description": {"text": "x"}, "subject": {"reference": "Patient/x"}},
    "Endpoint": {"status": "active", "connectionType": {"code": "hl7-fhir-rest"}, "payloadType": [{"text": "x"}],
                 "address": "https://example.org/fhir"},
    "List": {"status": "current", "mode": "working"},
    "DocumentReference": {"status": "current", "content": [{"attachment": {"contentType": "text/plain"}}]},
    "Composition": {"status": "final", "type": {"text": "x"}, "date": "2024-01-01", "author": [{"display": "x"}],
                    "title": "x"},
    "MessageHeader": {"eventCoding": {"code": "x"}, "source": {"endpoint": "https://example.org"}},
    "Bundle": {"type": "collection"},
    "Binary": {"contentType": "text/plain"},
    "DiagnosticReport": {"status": "final", "code": {"text": "x"}},
    "Immunization": {"status": "completed", "vaccineCode": {"text": "x"}, "patient": {"reference": "Patient/x"},
                     "occurrenceDateTime": "2024-01-01"},
    "MedicationRequest": {"status": "active", "intent": "order", "subject": {"reference": "Patient/x"},
                          "medicationCodeableConcept": {"text": "x"}},
    "MedicationAdministration": {"status": "completed", "subject": {"reference": "Patient/x"},
                                 "medicationCodeableConcept": {"text": "x"}, "effectiveDateTime": "2024-01-01"},
    "DeviceUseStatement": {"status": "active", "subject": {"reference": "Patient/x"},
                           "device": {"reference": "Device/x"}},
    "AllergyIntolerance": {"patient": {"reference": "Patient/x"}},
    "ImagingStudy": {"status": "available", "subject": {"reference": "Patient/x"}},
    "Claim": {"status": "active", "type": {"text": "x"}, "use": "claim", "patient": {"reference": "Patient/x"},
              "created": "2024-01-01", "provider": {"reference": "Organization/x"}, "priority": {"text": "x"},
              "insurance": [{"sequence": 1, "focal": True, "coverage": {"reference": "Coverage/x"}}]},
    "ExplanationOfBenefit": {"status": "active", "type": {"text": "x"}, "use": "claim",
                             "patient": {"reference": "Patient/x"}, "created": "2024-01-01",
                             "insurer": {"reference": "Organization/x"}, "provider": {"reference": "Organization/x"},
                             "outcome": "complete"},
}

INJECTIONS = ["' OR 1=1 --", "' OR '1'='1", "\" OR \"\"=\"", "1; DROP TABLE resource; --", "'; SELECT pg_sleep(5); --",
              "%", "%%", "_", "\\", "\\\\", "\\,", "\\|", "|", "||", "|||", ",", ",,", "$", "*", "%00", "\x00",
              "' UNION SELECT id, content FROM resource --", "\" ; --", "`", "${7*7}", "{{7*7}}", "../../etc/passwd",
              "<script>alert(1)</script>", "Robert'); DROP TABLE Students;--", "\u202e\u0000\ufeff",
              "\uff21\uff22\uff23", "\ud7ff\ue000\U0010ffff", "é", "x" * 5000, "0x7fffffff", "-1", "1e400", "NaN",
              "null", "[]", "{}", "true", " ", "\t\n\r", "/", "Patient/", "Patient/../Patient", "http://",
              "urn:uuid:", "eq", "ap", "ge9999-12-31T23:59:59+14:00", "le0001-01-01T00:00:00-14:00", "ap0001",
              "2024-02-30", "9999", "0000", "2024-13", "2024-01-01T24:00:00Z"]

#: Text with the characters that break parsers: quotes, escapes, wildcards, controls, NUL, RTL, astral.
nasty_text = st.one_of(
    st.sampled_from(INJECTIONS),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=40),
    st.text(alphabet="'\"\\%_|,$*:.?&=#\x00\x01\x1f\x7f\u2028\ufeff ", max_size=30),
    st.builds(lambda a, b: a + b, st.sampled_from(INJECTIONS), st.text(max_size=10)),
)

json_leaves = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                        st.floats(allow_nan=False, allow_infinity=False), nasty_text)
json_values = st.recursive(json_leaves, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(nasty_text, inner, max_size=4), max_leaves=12)


def nested(depth: int, kind: str) -> Any:
    """A value nested ``depth`` levels deep in lists, objects or extensions."""
    value: Any = {"url": "https://example.org/leaf", "valueString": "leaf"}
    for _ in range(depth):
        if kind == "list":
            value = [value]
        elif kind == "object":
            value = {"a": value}
        else:
            value = {"url": "https://example.org/level", "extension": [value]}
    return value


def _wrong_type(kind: str) -> st.SearchStrategy[Any]:
    """A JSON value that is not of ``kind`` (string, object, array, boolean)."""
    others = {"string": st.one_of(st.integers(), st.booleans(), st.lists(st.text(max_size=3), max_size=2),
                                  st.just({"value": "x"})),
              "object": st.one_of(st.text(max_size=5), st.integers(), st.booleans(), st.just([{}])),
              "array": st.one_of(st.text(max_size=5), st.integers(), st.just({"url": "x"})),
              "boolean": st.one_of(st.text(min_size=1, max_size=5), st.integers(0, 1), st.just([True]))}
    return others[kind]


#: Elements every resource has, with their JSON type.
COMMON = {"meta": "object", "text": "object", "extension": "array", "modifierExtension": "array",
          "contained": "array", "implicitRules": "string", "language": "string"}

MUTATIONS: dict[str, Any] = {
    "an unknown element": st.tuples(st.text(min_size=1, max_size=20).map(lambda s: "fuzz" + s), json_values).map(
        lambda kv: {kv[0]: kv[1]}),
    "a known element of the wrong JSON type": st.sampled_from(sorted(COMMON)).flatmap(
        lambda name: _wrong_type(COMMON[name]).map(lambda v: {name: v})),
    "meta.lastUpdated that is no instant": nasty_text.filter(lambda s: s.strip()).map(
        lambda s: {"meta": {"lastUpdated": s}}),
    "an extension without a url": json_leaves.map(lambda v: {"extension": [{"valueString": "x", "fuzz": v}]}),
    "an invalid reference": st.one_of(st.integers(), st.booleans(), st.just([]), st.just({"x": 1})).map(
        lambda v: {"extension": [{"url": "https://example.org/r", "valueReference": {"reference": v}}]}),
    "an unknown element in a reference": nasty_text.map(
        lambda v: {"extension": [{"url": "https://example.org/r", "valueReference": {"reference": "Patient/x",
                                                                                     "fuzzWhere": v}}]}),
    "a NUL character in a string": st.tuples(st.text(max_size=10), st.text(max_size=10)).map(
        lambda ab: {"extension": [{"url": "https://example.org/s", "valueString": ab[0] + "\x00" + ab[1]}]}),
    "a control character in an element name": st.sampled_from("\x00\x01\x08\x1b\x7f").map(
        lambda c: {f"lang{c}uage": "en"}),
    "a lone surrogate": st.sampled_from(["\ud800", "a\udfff", "\udbff\ud800"]).map(
        lambda s: {"extension": [{"url": "https://example.org/s", "valueString": s}]}),
    "a huge string in a date": st.integers(1_000, 300_000).map(lambda n: {"meta": {"lastUpdated": "9" * n}}),
    "a huge array with one bad item": st.integers(100, 5_000).map(
        lambda n: {"extension": [{"url": "https://example.org/ok", "valueString": "x"}] * n + [{"url": 5}]}),
    # json.dumps recurses; deeper nesting is sent as raw bytes (deep_raw).
    "deep nesting": st.tuples(st.integers(30, 300), st.sampled_from(["list", "object", "extension"])).map(
        lambda dk: {"extension": [nested(*dk)]} if dk[1] == "extension" else {"fuzzDeep": nested(*dk)}),
    "a number out of range": st.sampled_from([10**30, -(10**30), 1e308, 2**63]).map(
        lambda n: {"extension": [{"url": "https://example.org/i", "valueInteger": n}]}),
    "a wrong resourceType": st.one_of(st.none(), st.integers(), st.just(""), st.just([]), st.just({}),
                                      st.sampled_from(["patient", "Foo", "OperationOutcome", "Patient\x00",
                                                       " Patient", "Parameters"])).map(
        lambda v: {"resourceType": v}),
    "a contained resource that is invalid": json_values.map(
        lambda v: {"contained": [{"resourceType": "Patient", "id": "c1", "fuzzInside": v}]}),
}


@st.composite
def bad_resource(draw: st.DrawFn, resource_type: str, resource_id: str | None = None) -> tuple[JSON, list[str]]:
    """A resource of ``resource_type`` broken by one to three mutations; and the names of the mutations."""
    body: JSON = {"resourceType": resource_type, **json.loads(json.dumps(BASES.get(resource_type, {})))}
    if resource_id is not None:
        body["id"] = resource_id
    names = draw(st.lists(st.sampled_from(sorted(MUTATIONS)), min_size=1, max_size=3, unique=True))
    for name in names:
        for key, value in draw(MUTATIONS[name]).items():
            body[key] = value
    return body, names


def encode(body: Any, *, ascii_only: bool = True) -> bytes:
    """JSON bytes, keeping lone surrogates and NULs as escapes (as a hostile client would send them)."""
    return json.dumps(body, ensure_ascii=ascii_only, allow_nan=False).encode("utf-8", "surrogatepass")


not_json = st.one_of(
    st.binary(min_size=1, max_size=200).filter(lambda b: _not_object(b)),
    st.sampled_from([b"{", b"}", b'{"resourceType": "Patient",}', b"{'resourceType': 'Patient'}",
                     b'{"resourceType": "Patient"} trailing', b'\xef\xbb\xbf{"resourceType": "Patient"}',
                     b'{"resourceType": "Patient", "resourceType": 5}', b"NaN", b"[]", b"[{}]", b"\x00",
                     b'{"a":' * 3000 + b"1" + b"}" * 3000, b"[" * 50_000 + b"]" * 50_000,
                     b'{"resourceType": "Patient", "active": tru}', b"<Patient/>", b"resourceType=Patient"]),
)


def _not_object(raw: bytes) -> bool:
    try:
        return not isinstance(json.loads(raw), dict)
    except (ValueError, RecursionError):
        return True


wrong_content_type = st.one_of(
    st.sampled_from(["text/plain", "application/xml", "application/fhir+xml", "text/html", "multipart/form-data",
                     "application/x-www-form-urlencoded", "application/octet-stream", "application/fhir+json5",
                     "application/jsonx", "json", "*/*", "application/*", "text/json"]),
    st.from_regex(r"\A[a-z]{1,10}/[a-z0-9+.\-]{1,15}\Z").filter(
        lambda t: t not in ("application/fhir+json", "application/json", "application/json-patch+json")),
)

bad_patch_ops = st.one_of(
    st.builds(lambda op: {"op": op, "path": "/active", "value": True},
              st.one_of(st.sampled_from(["ADD", "append", "", "delete", "merge"]), st.integers(), st.none())),
    st.builds(lambda p: {"op": "add", "path": p, "value": "x"},
              st.one_of(nasty_text.filter(lambda s: not s.startswith("/")), st.integers(),
                        st.sampled_from(["/name/999999999999999999999", "/name/-2", "/name/01", "/~2", "/a/b/c/d"]))),
    st.sampled_from([{"op": "add"}, {"path": "/active"}, {"op": "remove", "path": "/resourceType"},
                     {"op": "replace", "path": "/resourceType", "value": 5},
                     {"op": "replace", "path": "/resourceType", "value": "Observation"},
                     {"op": "replace", "path": "/id", "value": "another-id"},
                     {"op": "add", "path": "/fuzzUnknown", "value": 1},
                     {"op": "add", "path": "/birthDate", "value": "soon"},
                     {"op": "add", "path": "/active", "value": "yes"},
                     {"op": "test", "path": "/id", "value": "not-this-one"},
                     {"op": "move", "from": "/nowhere", "path": "/x"},
                     {"op": "copy", "from": "/id", "path": "/id/x"},
                     {"op": "add", "path": "/meta/lastUpdated", "value": "never"},
                     {"op": "add", "path": "/extension", "value": [{"valueString": "no url"}]},
                     {"op": "add", "path": "/name/0/family", "value": "a\x00b"},
                     {"op": "add", "path": "/fuzzDeep", "value": nested(300, "list")}]),
    json_leaves, st.lists(json_leaves, max_size=2),
)


@st.composite
def bad_patch(draw: st.DrawFn) -> Any:
    """A JSON Patch document the server must refuse: not a list, or a list with at least one bad operation."""
    if draw(st.booleans()):
        return draw(st.one_of(json_leaves, st.dictionaries(nasty_text, json_leaves, max_size=3)))
    good = st.just({"op": "add", "path": "/gender", "value": "other"})
    ops = draw(st.lists(st.one_of(good, bad_patch_ops), max_size=3))
    ops.insert(draw(st.integers(0, len(ops))), draw(bad_patch_ops))
    return ops


@st.composite
def deep_raw(draw: st.DrawFn, resource_type: str) -> bytes:
    """A resource whose extension is nested up to 200,000 levels deep, written as raw JSON."""
    depth = draw(st.integers(1_000, 200_000))
    kind = draw(st.sampled_from(["list", "object", "extension"]))
    head = b'{"resourceType":"' + resource_type.encode() + b'","extension":'
    if kind == "list":
        return head + b"[" * depth + b"]" * depth + b"}"
    if kind == "object":
        return head + b'[{"url":"u","a":' * depth + b"1" + b"}]" * depth + b"}"
    return head + b'[{"url":"u","extension":' * depth + b"[]" + b"}]" * depth + b"}"
