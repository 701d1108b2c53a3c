"""validate_resource's JSON type check, where its fast path reads the validated model instead of writing it out
as JSON: what the models coerce ("yes" -> true, "3" -> 3) is refused with the path of the value, wherever it sits
(nested lists, extensions, choice types, contained resources, bundle entries, `_x` primitive extensions), and
what FHIR JSON allows stays accepted. The shapes the fast path leaves to the written JSON (a complex element sent
as a JSON string, a lone surrogate, deep nesting, keys the model reads but does not write) give the same answers.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from zorgpad.fhir.outcomes import FHIRError
from zorgpad.fhir.validation import validate_resource

SYNTHEA = Path(__file__).resolve().parents[3] / "shared" / "corpora" / "synthea" / "R4"

JSON = dict[str, Any]


def observation(**elements: Any) -> JSON:
    return {"resourceType": "Observation", "status": "final", "code": {"text": "weight"}, **elements}


def refusal(resource: JSON) -> FHIRError:
    with pytest.raises(FHIRError) as caught:
        validate_resource(resource)
    assert 400 == caught.value.status
    return caught.value


def mismatch(path: str, expected: str, got: str, value: Any) -> JSON:
    return {"severity": "error", "code": "value", "expression": [path],
            "diagnostics": f"{path} must be a JSON {expected} (got a {got}: {value!r})"}


@pytest.mark.parametrize("value", [3, 3.25, 0, -1.5, 1e2, 10**30])
def test_a_decimal_sent_as_a_json_number_is_accepted(value: float) -> None:
    resource = observation(valueQuantity={"value": value, "unit": "kg"})
    assert resource == validate_resource(copy.deepcopy(resource))


def test_a_choice_type_decimal_sent_as_a_string_is_refused() -> None:
    error = refusal(observation(valueQuantity={"value": "3", "unit": "kg"}))
    assert [mismatch("Observation.valueQuantity.value", "number", "string", "3")] == error.issues
    assert "Observation.valueQuantity.value must be a JSON number (got a string: '3')" == error.diagnostics


def test_a_coerced_number_inside_nested_lists_is_refused_with_its_index() -> None:
    components = [{"code": {"text": "systolic"}, "valueQuantity": {"value": 120}},
                  {"code": {"text": "diastolic"}, "valueQuantity": {"value": "80"}}]
    error = refusal(observation(component=components))
    assert [mismatch("Observation.component[1].valueQuantity.value", "number", "string", "80")] == error.issues


def test_a_boolean_as_a_string_inside_a_nested_extension_is_refused() -> None:
    extension = {"url": "https://example.org/outer", "extension": [
        {"url": "https://example.org/a", "valueString": "fine"},
        {"url": "https://example.org/b", "valueBoolean": "true"},
    ]}
    error = refusal({"resourceType": "Patient", "extension": [extension]})
    assert [mismatch("Patient.extension[0].extension[1].valueBoolean", "boolean", "string", "true")] == error.issues


def test_an_integer_sent_as_a_whole_float_stays_accepted() -> None:
    # The model reads 3.0 as 3, which is still a JSON number: accepted before, accepted now.
    resource = {"resourceType": "Patient", "multipleBirthInteger": 3.0}
    assert resource == validate_resource(copy.deepcopy(resource))


@pytest.mark.parametrize(("element", "value", "expected", "got"), [
    ("multipleBirthInteger", True, "number", "boolean"),
    ("multipleBirthInteger", "2", "number", "string"),
    ("active", 1, "boolean", "number"),
    ("active", "yes", "boolean", "string"),
    ("birthDate", 0, "string", "number"),
])
def test_a_primitive_the_model_coerces_is_refused(element: str, value: Any, expected: str, got: str) -> None:
    error = refusal({"resourceType": "Patient", element: value})
    assert [mismatch(f"Patient.{element}", expected, got, value)] == error.issues


def test_primitive_list_nulls_and_their_extensions_are_accepted_and_checked() -> None:
    flag = {"url": "https://example.org/flag", "valueBoolean": True}
    name = {"given": ["Anna", None], "_given": [None, {"extension": [flag]}]}
    resource = {"resourceType": "Patient", "name": [name]}
    assert resource == validate_resource(copy.deepcopy(resource))

    flag["valueBoolean"] = "yes"
    error = refusal(resource)
    assert [mismatch("Patient.name[0]._given[1].extension[0].valueBoolean", "boolean", "string", "yes")] \
        == error.issues


def test_contained_resources_and_bundle_entries_are_checked_as_their_own_type() -> None:
    contained = observation(id="w", valueQuantity={"value": "70"})
    error = refusal({"resourceType": "Patient", "contained": [contained]})
    assert [mismatch("Patient.contained[0].valueQuantity.value", "number", "string", "70")] == error.issues

    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "active": True}},
        {"resource": {"resourceType": "Patient", "active": "false"}},
    ]}
    error = refusal(bundle)
    assert [mismatch("Bundle.entry[1].resource.active", "boolean", "string", "false")] == error.issues


def test_every_problem_is_named_type_mismatches_before_nul_characters() -> None:
    resource = {"resourceType": "Patient", "name": [{"family": "Jan\x00sen"}], "active": "true",
                "multipleBirthInteger": "2", "fhir_comments": ["a\x00comment"]}
    error = refusal(resource)
    assert ["Patient.active", "Patient.multipleBirthInteger", "Patient.name[0].family", "Patient.fhir_comments[0]"] \
        == [issue["expression"][0] for issue in error.issues]
    assert "Patient.active must be a JSON boolean (got a string: 'true')" == error.diagnostics
    assert error.issues[2]["diagnostics"].endswith("contains a NUL character, which FHIR strings may not contain")


def test_a_nul_character_under_a_null_or_unread_element_is_still_refused() -> None:
    error = refusal({"resourceType": "Patient", "name": [{"given": ["A\x00", None]}]})
    assert [["Patient.name[0].given[0]"]] == [issue["expression"] for issue in error.issues]


def test_a_complex_element_sent_as_a_json_string_is_refused() -> None:
    # The models parse a string holding JSON into the element; FHIR JSON does not.
    error = refusal({"resourceType": "Patient", "name": ['{"family": "Jansen"}']})
    assert [mismatch("Patient.name[0]", "object", "string", '{"family": "Jansen"}')] == error.issues


def test_an_element_given_by_its_python_name_stays_accepted() -> None:
    # populate_by_name: the model reads `class_fhir` as Encounter.class; accepted before, accepted now.
    resource = {"resourceType": "Encounter", "status": "planned", "class_fhir": {"code": "AMB"}}
    assert resource == validate_resource(copy.deepcopy(resource))


def test_a_lone_surrogate_the_json_writer_cannot_encode_is_refused() -> None:
    error = refusal({"resourceType": "Patient", "text": {"status": "generated", "div": "<div>\ud800</div>"}})
    assert "value" == error.issues[0]["code"]
    assert error.diagnostics.startswith("Patient: Error serializing to JSON")


def test_a_coerced_value_deep_down_is_refused_with_its_path() -> None:
    leaf: JSON = {"url": "https://example.org/leaf", "valueBoolean": "yes"}
    extension = leaf
    for _ in range(30):  # deeper than the fast path walks
        extension = {"url": "https://example.org/level", "extension": [extension]}
    error = refusal({"resourceType": "Patient", "extension": [extension]})
    path = "Patient.extension[0]" + ".extension[0]" * 30 + ".valueBoolean"
    assert [mismatch(path, "boolean", "string", "yes")] == error.issues


def test_a_huge_decimal_string_is_refused_as_a_string() -> None:
    error = refusal(observation(valueQuantity={"value": "1e400"}))
    assert [mismatch("Observation.valueQuantity.value", "number", "string", "1e400")] == error.issues


@pytest.mark.skipif(not SYNTHEA.is_dir(), reason="needs ../shared/corpora/synthea")
def test_every_synthea_resource_is_accepted_unchanged() -> None:
    for path in sorted(SYNTHEA.glob("*.json"))[:3]:
        for entry in json.loads(path.read_text(encoding="utf-8"))["entry"]:
            resource = entry["resource"]
            assert resource == validate_resource(copy.deepcopy(resource))
