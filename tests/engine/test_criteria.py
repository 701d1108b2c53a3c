"""Criteria: named, data-only tests on one FHIR resource, checked against real published examples."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from zorgpad.engine import AnyOf, Coding, Criterion

CORPORA = Path(__file__).resolve().parents[2].parent / "shared" / "corpora"
HL7 = CORPORA / "hl7-r4-examples" / "workflow-subset"
IKNL = CORPORA / "nictiz" / "pzp-acp" / "1.0.0-rc1" / "_reference" / "resources"

SCT = "http://snomed.info/sct"
_PLACEHOLDER = re.compile(r"\$\{[^}]*\}")


def load(path: Path) -> dict[str, Any]:
    """A corpus resource, with Touchstone placeholders such as ``${DATE, T, D, -450}`` made into a date."""
    return json.loads(_PLACEHOLDER.sub("2025-01-01", path.read_text(encoding="utf-8")))  # type: ignore[no-any-return]


ACP_RECORDED = Criterion("acp-recorded", "Procedure", code=Coding(SCT, "713603004"), status="completed")
CPR_DIRECTIVE = Criterion("cpr-directive", "Consent", code=Coding(SCT, "89666000"), path="provision.code")
TREATMENT_DIRECTIVE = Criterion("treatment-directive", "Consent", code=Coding(SCT, "129125009"), path="category")
DECEASED = Criterion("deceased", "Patient", present="deceased[x]")


def observation(**values: Any) -> dict[str, Any]:
    """A surprise-question Observation carrying the given ``value[x]`` elements."""
    return {
        "resourceType": "Observation",
        "id": "sq",
        "status": "final",
        "code": {"coding": [{"system": SCT, "code": "713636003"}]},
        **values,
    }


class TestCorpusFixtures:
    """The corpus files this module relies on are where it expects them."""

    def test_the_placeholders_of_the_iknl_fixtures_are_replaced_before_parsing(self) -> None:
        """A fixture with a Touchstone date placeholder parses into a resource with a plain date."""
        raw = (IKNL / "Consent-D1-ACP-TreatmentDirective-Cardiopulmonary-Resuscitation.json").read_text()

        consent = load(IKNL / "Consent-D1-ACP-TreatmentDirective-Cardiopulmonary-Resuscitation.json")

        expected = "2025-01-01"
        assert "${DATE" in raw
        assert expected == consent["dateTime"]


class TestMatchByType:
    """A criterion matches exactly one resource type."""

    def test_a_resource_of_another_type_never_matches_even_with_the_right_code(self) -> None:
        """A Consent carrying the ACP procedure code is still not a Procedure."""
        consent = {
            "resourceType": "Consent",
            "status": "completed",
            "code": {"coding": [{"system": SCT, "code": "713603004"}]},
        }

        assert not ACP_RECORDED.matches(consent)

    def test_a_criterion_without_code_matches_every_resource_of_its_type(self) -> None:
        """With no code, status or value, the type alone decides."""
        any_procedure = Criterion("any-procedure", "Procedure")

        results = [
            any_procedure.matches(load(HL7 / name))
            for name in ("Procedure-example.json", "Procedure-biopsy.json", "Patient-example.json")
        ]

        expected = [True, True, False]
        assert expected == results

    def test_a_resource_without_resource_type_never_matches(self) -> None:
        """Plain JSON that is not a FHIR resource is not matched."""
        assert not Criterion("anything", "Procedure").matches({"status": "completed"})


class TestMatchByCode:
    """Codes are matched as system and code at a dotted path, any coding of any CodeableConcept."""

    @pytest.mark.parametrize(
        "name",
        ["Procedure-D1-ACP-Procedure.json", "Procedure-D2-ACP-Procedure.json", "Procedure-D3-ACP-Procedure.json"],
    )
    def test_the_iknl_acp_procedures_are_recorded_acp_conversations(self, name: str) -> None:
        """Each IKNL ACP Procedure fixture carries SNOMED 713603004 with status completed."""
        assert ACP_RECORDED.matches(load(IKNL / name))

    def test_an_appendectomy_is_not_an_acp_conversation(self) -> None:
        """The HL7 example Procedure has another SNOMED code and so does not match."""
        procedure = load(HL7 / "Procedure-example.json")

        assert procedure["status"] in ACP_RECORDED.statuses
        assert not ACP_RECORDED.matches(procedure)

    def test_the_same_code_in_another_code_system_does_not_match(self) -> None:
        """A code is only the same code within the same system."""
        procedure = load(IKNL / "Procedure-D1-ACP-Procedure.json")
        procedure["code"]["coding"][0]["system"] = "http://loinc.org"

        assert not ACP_RECORDED.matches(procedure)

    def test_a_code_at_provision_code_matches_the_cpr_treatment_directive(self) -> None:
        """Consent.provision.code holds the treatment a directive is about (here resuscitation)."""
        consent = load(IKNL / "Consent-D1-ACP-TreatmentDirective-Cardiopulmonary-Resuscitation.json")

        assert CPR_DIRECTIVE.matches(consent)

    @pytest.mark.parametrize(
        "name",
        [
            "Consent-D2-ACP-TreatmentDirective-Antibiotic-Therapy.json",
            "Consent-D3-ACP-TreatmentDirective-ICD-Deactivation.json",
            "Consent-D3-ACP-AdvanceDirective.json",
        ],
    )
    def test_directives_about_other_treatments_do_not_match_the_cpr_criterion(self, name: str) -> None:
        """Other IKNL Consents have other provision codes."""
        assert not CPR_DIRECTIVE.matches(load(IKNL / name))

    def test_a_code_at_the_default_path_does_not_look_at_provision_code(self) -> None:
        """The path matters: the CPR code is under provision.code, not under code."""
        at_code = Criterion("cpr-at-code", "Consent", code=Coding(SCT, "89666000"))
        consent = load(IKNL / "Consent-D1-ACP-TreatmentDirective-Cardiopulmonary-Resuscitation.json")

        assert not at_code.matches(consent)

    def test_a_code_in_a_list_of_categories_matches(self) -> None:
        """Consent.category is a list of CodeableConcepts; any of them may carry the code."""
        names = sorted(p.name for p in IKNL.glob("Consent-*.json"))

        matching = [name for name in names if TREATMENT_DIRECTIVE.matches(load(IKNL / name))]

        assert [name for name in names if "TreatmentDirective" in name] == matching
        assert "Consent-D3-ACP-AdvanceDirective.json" not in matching

    def test_any_coding_of_a_concept_with_several_codings_matches(self) -> None:
        """The HL7 example Condition's category has two codings; the second one is found."""
        diagnosis = Criterion("diagnosis", "Condition", code=Coding(SCT, "439401001"), path="category")

        assert diagnosis.matches(load(HL7 / "Condition-example.json"))

    def test_a_bare_coding_at_the_path_matches(self) -> None:
        """MessageHeader.eventCoding is a Coding, not a CodeableConcept."""
        event = Criterion(
            "admin-notify",
            "MessageHeader",
            path="eventCoding",
            code=Coding("http://example.org/fhir/message-events", "admin-notify"),
        )

        assert event.matches(load(HL7 / "MessageHeader-1cbdfb97-5859-48a4-8301-d54eab818d68.json"))

    def test_any_of_several_codes_matches(self) -> None:
        """code=(a, b) accepts either code."""
        either = Criterion("acp-or-appendectomy", "Procedure", code=(Coding(SCT, "0"), Coding(SCT, "80146002")))

        assert either.matches(load(HL7 / "Procedure-example.json"))

    def test_a_concept_with_only_text_does_not_match_a_code(self) -> None:
        """Text is not a code: the HL7 example Task's code has text only."""
        task = load(HL7 / "Task-example1.json")
        lipid = Criterion("lipid", "Task", code=Coding(SCT, "0"))

        assert "coding" not in task["code"]
        assert not lipid.matches(task)


class TestMatchByStatus:
    """Statuses narrow a criterion to resources in one of the listed states."""

    def test_a_consent_in_another_status_does_not_match(self) -> None:
        """An active CPR directive does not meet a criterion for an inactive one."""
        inactive = Criterion(
            "cpr-inactive", "Consent", code=Coding(SCT, "89666000"), path="provision.code", status="inactive"
        )
        consent = load(IKNL / "Consent-D1-ACP-TreatmentDirective-Cardiopulmonary-Resuscitation.json")

        assert not inactive.matches(consent)

    def test_any_of_several_statuses_matches(self) -> None:
        """status=(a, b) accepts either status."""
        active_or_draft = Criterion(
            "cpr", "Consent", code=Coding(SCT, "89666000"), path="provision.code", status=("draft", "active")
        )
        consent = load(IKNL / "Consent-D1-ACP-TreatmentDirective-Cardiopulmonary-Resuscitation.json")

        assert active_or_draft.matches(consent)

    def test_a_procedure_that_is_not_completed_does_not_match(self) -> None:
        """A planned ACP conversation is not a recorded one."""
        procedure = load(IKNL / "Procedure-D1-ACP-Procedure.json")
        procedure["status"] = "preparation"

        assert not ACP_RECORDED.matches(procedure)


class TestMatchByValue:
    """``value`` compares against the resource's ``value[x]``, whatever its type."""

    def test_a_boolean_value_matches_value_boolean(self) -> None:
        """The surprise question answered 'no' is valueBoolean false."""
        sq_no = Criterion("sq-no", "Observation", code=Coding(SCT, "713636003"), value=False)

        results = [sq_no.matches(observation(valueBoolean=False)), sq_no.matches(observation(valueBoolean=True))]

        expected = [True, False]
        assert expected == results

    def test_a_missing_value_does_not_match_false(self) -> None:
        """An Observation without any value[x] has not been answered 'no'."""
        sq_no = Criterion("sq-no", "Observation", value=False)

        assert not sq_no.matches(observation())

    def test_a_false_boolean_does_not_match_the_number_zero(self) -> None:
        """Booleans and numbers are different: valueInteger 0 is not valueBoolean false."""
        sq_no = Criterion("sq-no", "Observation", value=False)

        assert not sq_no.matches(observation(valueInteger=0))

    def test_a_number_does_not_match_a_true_boolean(self) -> None:
        """value=1 is not met by valueBoolean true."""
        one = Criterion("one", "Observation", value=1)

        assert not one.matches(observation(valueBoolean=True))

    def test_a_coding_value_matches_value_codeable_concept_in_a_real_observation(self) -> None:
        """The IKNL euthanasia-position Observation's answer is a SNOMED coded concept."""
        wishes_none = Criterion("no-euthanasia", "Observation", value=Coding(SCT, "340201000146103"))
        wishes_other = Criterion("other-answer", "Observation", value=Coding(SCT, "340191000146104"))
        resource = load(IKNL / "Observation-D2-ACP-PositionRegardingEuthanasia.json")

        results = [wishes_none.matches(resource), wishes_other.matches(resource)]

        expected = [True, False]
        assert expected == results

    def test_a_coding_value_matches_a_bare_value_coding(self) -> None:
        """valueCoding (a Coding, not a concept) is matched too."""
        coded = Criterion("coded", "Observation", value=Coding(SCT, "373066001"))

        assert coded.matches(observation(valueCoding={"system": SCT, "code": "373066001"}))

    def test_a_number_matches_the_value_of_a_quantity(self) -> None:
        """value=3 is met by valueQuantity.value 3, not 4."""
        three = Criterion("three", "Observation", value=3)

        results = [
            three.matches(observation(valueQuantity={"value": 3, "unit": "mo"})),
            three.matches(observation(valueQuantity={"value": 4, "unit": "mo"})),
        ]

        expected = [True, False]
        assert expected == results

    def test_a_number_matches_value_integer(self) -> None:
        """value=3 is met by valueInteger 3."""
        assert Criterion("three", "Observation", value=3).matches(observation(valueInteger=3))

    def test_a_string_value_matches_value_string_exactly(self) -> None:
        """The IKNL specific-wishes Observation carries free text in valueString."""
        resource = load(IKNL / "Observation-D2-ACP-SpecificWishes.json")
        exact = Criterion("wish", "Observation", value=resource["valueString"])
        prefix = Criterion("wish-prefix", "Observation", value=resource["valueString"][:20])

        results = [exact.matches(resource), prefix.matches(resource)]

        expected = [True, False]
        assert expected == results

    def test_a_string_value_does_not_match_a_number(self) -> None:
        """'3' is not 3."""
        assert not Criterion("three", "Observation", value="3").matches(observation(valueInteger=3))

    def test_elements_that_merely_start_with_value_are_not_value_x(self) -> None:
        """'valueset' is not a choice of 'value[x]': the letter after 'value' must be upper case."""
        sq_no = Criterion("sq-no", "Observation", value=False)

        assert not sq_no.matches(observation(valueset=False))


class TestPresent:
    """``present`` requires an element to be there and not false."""

    @pytest.mark.parametrize(
        ("name", "expected"),
        [
            ("Patient-pat4.json", True),  # deceasedBoolean true
            ("Patient-pat3.json", True),  # deceasedDateTime
            ("Patient-example.json", False),  # deceasedBoolean false
            ("Patient-pat1.json", False),  # no deceased[x]
        ],
    )
    def test_deceased_x_is_present_only_for_patients_who_died(self, name: str, expected: bool) -> None:
        """deceasedBoolean true or a deceasedDateTime mean death; false or nothing do not."""
        result = DECEASED.matches(load(HL7 / name))

        assert expected is result

    @pytest.mark.parametrize(
        "name", ["Patient-D1-ACP-Patient.json", "Patient-D2-ACP-Patient.json", "Patient-D3-ACP-Patient.json"]
    )
    def test_the_iknl_patients_are_alive(self, name: str) -> None:
        """Booleans inside extensions do not count as deceased[x]."""
        assert not DECEASED.matches(load(IKNL / name))

    def test_a_plain_element_name_must_be_present_and_not_empty(self) -> None:
        """present='note' needs a non-empty note."""
        with_note = Criterion("with-note", "Procedure", present="note")

        results = [
            with_note.matches({"resourceType": "Procedure", "note": [{"text": "x"}]}),
            with_note.matches({"resourceType": "Procedure", "note": []}),
            with_note.matches({"resourceType": "Procedure"}),
        ]

        expected = [True, False, False]
        assert expected == results


class TestAnyOf:
    """``a | b`` builds an AnyOf that matches when any of its criteria does."""

    def test_or_of_two_criteria_is_an_any_of_them(self) -> None:
        """The result keeps both criteria, in order."""
        either = DECEASED | ACP_RECORDED

        assert AnyOf((DECEASED, ACP_RECORDED)) == either

    def test_or_chains_flatten_into_one_any_of(self) -> None:
        """(a | b) | c and a | (b | c) both give one flat AnyOf of three."""
        left = (DECEASED | ACP_RECORDED) | CPR_DIRECTIVE
        right = DECEASED | (ACP_RECORDED | CPR_DIRECTIVE)

        expected = (DECEASED, ACP_RECORDED, CPR_DIRECTIVE)
        assert expected == left.leaves()
        assert left == right

    def test_any_of_two_any_ofs_flattens_too(self) -> None:
        """(a | b) | (c | d) has four leaves."""
        combined = (DECEASED | ACP_RECORDED) | (CPR_DIRECTIVE | TREATMENT_DIRECTIVE)

        expected = (DECEASED, ACP_RECORDED, CPR_DIRECTIVE, TREATMENT_DIRECTIVE)
        assert expected == combined.leaves()

    def test_any_of_matches_a_resource_that_any_member_matches(self) -> None:
        """A deceased patient and a recorded ACP both meet DECEASED | ACP_RECORDED; a living patient does not."""
        either = DECEASED | ACP_RECORDED

        results = [
            either.matches(load(HL7 / "Patient-pat4.json")),
            either.matches(load(IKNL / "Procedure-D2-ACP-Procedure.json")),
            either.matches(load(HL7 / "Patient-example.json")),
        ]

        expected = [True, True, False]
        assert expected == results

    def test_str_of_any_of_names_its_criteria(self) -> None:
        """str() joins the criterion names with ' | '."""
        result = str(DECEASED | ACP_RECORDED | CPR_DIRECTIVE)

        expected = "deceased | acp-recorded | cpr-directive"
        assert expected == result

    def test_a_single_criterion_is_its_own_only_leaf(self) -> None:
        """leaves() of a Criterion is just that criterion."""
        expected = (DECEASED,)
        assert expected == DECEASED.leaves()


class TestCoding:
    """Codings are compared by system and code only."""

    def test_the_display_text_does_not_change_equality(self) -> None:
        """Two codings differing only in display are the same code."""
        assert Coding(SCT, "713603004", "ACP") == Coding(SCT, "713603004")

    def test_str_is_system_bar_code(self) -> None:
        """str() is the FHIR token form system|code."""
        result = str(Coding(SCT, "713603004"))

        expected = "http://snomed.info/sct|713603004"
        assert expected == result
