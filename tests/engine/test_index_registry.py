"""The criteria index and the pathway registry: which pathway versions exist and which criteria a resource meets."""

from __future__ import annotations

import pytest
from example_pathway import ExampleAcp, ExampleAcpV2
from zorgpad.engine import (
    GP,
    Coding,
    Criterion,
    Pathway,
    PathwayError,
    Registry,
    Step,
    UnknownPathwayError,
    defn,
)
from zorgpad.engine._index import CriteriaIndex, Matches, Use

SCT = "http://snomed.info/sct"
MANY = 500


def observation(code: str, resource_id: str = "obs-1") -> dict[str, object]:
    """An Observation coded with one SNOMED code."""
    return {
        "resourceType": "Observation",
        "id": resource_id,
        "status": "final",
        "code": {"coding": [{"system": SCT, "code": code}]},
    }


def pathway(pathway_id: str, version: str, name: str = "P1", **attributes: object) -> type[Pathway]:
    """Declare a one-step pathway programmatically."""
    body: dict[str, object] = {"__doc__": "x", "s": Step("t", owner=GP)}
    body.update(attributes)
    return defn(id=pathway_id, version=version)(type(name, (Pathway,), body))


def coded(i: int) -> Criterion:
    """Criterion number ``i``, on an Observation with its own code."""
    return Criterion(f"code-{i}", "Observation", code=Coding(SCT, f"9000{i}"))


@pytest.fixture(scope="module")
def many() -> Registry:
    """A registry of 500 generated pathway versions, each enrolling on its own Observation code."""
    return Registry(pathway(f"generated-{i}", "1.0.0", enrol_when=coded(i)) for i in range(MANY))


SURPRISE = Criterion("surprise-question-no", "Observation", code=Coding(SCT, "713636003"), value=False)
ACP = Criterion("acp-recorded", "Procedure", code=Coding(SCT, "713603004"), status="completed")
ANY_CONSENT = Criterion("any-consent", "Consent")


class TestCriteriaIndex:
    """Criteria are found by (resourceType, code), not by scanning every pathway."""

    def test_candidates_for_one_code_are_only_the_criteria_with_that_code(self, many: Registry) -> None:
        """Among 500 pathway versions, a resource with code #250 has exactly one candidate."""
        candidates = many.index.candidates(observation("9000250"))

        expected = [Use(("generated-250", "1.0.0"), coded(250))]
        assert expected == candidates

    def test_a_resource_with_an_unknown_code_has_no_candidates(self, many: Registry) -> None:
        """No criterion uses the code, so nothing is even tried."""
        candidates = many.index.candidates(observation("12345"))

        expected: list[Use] = []
        assert expected == candidates

    def test_a_resource_of_an_unindexed_type_has_no_candidates(self, many: Registry) -> None:
        """A Procedure carrying an indexed Observation code is not a candidate."""
        procedure = {"resourceType": "Procedure", "id": "p", "code": observation("9000250")["code"]}

        expected: list[Use] = []
        assert expected == many.index.candidates(procedure)

    def test_every_generated_code_finds_its_own_pathway(self, many: Registry) -> None:
        """Each of the 500 codes leads to the one pathway declaring it."""
        found = {many.index.match(observation(f"9000{i}")).enrols for i in range(0, MANY, 50)}

        expected = {frozenset({(f"generated-{i}", "1.0.0")}) for i in range(0, MANY, 50)}
        assert expected == found

    def test_a_criterion_without_code_is_a_candidate_for_every_resource_of_its_type(self) -> None:
        """Code-less criteria are kept per resource type and always tried."""
        index = CriteriaIndex([pathway("consents", "1", enrol_when=ANY_CONSENT)])

        candidates = index.candidates({"resourceType": "Consent", "id": "c"})

        expected = [Use(("consents", "1"), ANY_CONSENT)]
        assert expected == candidates

    def test_a_criterion_at_another_path_is_found_by_the_code_at_that_path(self) -> None:
        """The index looks at provision.code for a criterion declared there."""
        cpr = Criterion("cpr", "Consent", code=Coding(SCT, "89666000"), path="provision.code")
        index = CriteriaIndex([pathway("cpr", "1", exit_when=cpr)])
        consent = {
            "resourceType": "Consent",
            "id": "c",
            "provision": {"code": [{"coding": [{"system": SCT, "code": "89666000"}]}]},
        }

        expected = Matches({("cpr", "1"): frozenset({"cpr"})}, frozenset())
        assert expected == index.match(consent)

    def test_match_keeps_only_criteria_the_resource_fully_meets(self) -> None:
        """A candidate with the right code but the wrong value does not match."""
        index = CriteriaIndex([pathway("sq", "1", enrol_when=SURPRISE)])
        answered_yes = {**observation("713636003"), "valueBoolean": True}

        candidates, matches = index.candidates(answered_yes), index.match(answered_yes)

        assert [Use(("sq", "1"), SURPRISE)] == candidates
        assert Matches({}, frozenset()) == matches

    def test_one_criterion_used_by_several_pathway_versions_is_matched_for_each(self) -> None:
        """Both versions of the example pathway know the ACP Procedure."""
        index = CriteriaIndex([ExampleAcp, ExampleAcpV2])
        procedure = {
            "resourceType": "Procedure",
            "id": "acp",
            "status": "completed",
            "code": {"coding": [{"system": SCT, "code": "713603004"}]},
        }

        expected = {
            ("example-acp", "1.0.0"): frozenset({"acp-recorded"}),
            ("example-acp", "1.1.0"): frozenset({"acp-recorded"}),
        }
        assert expected == index.match(procedure).by_pathway


class TestEnrols:
    """Matches.enrols names only pathways whose enrol_when the resource met."""

    def test_a_resource_meeting_enrol_when_enrols(self) -> None:
        """The surprise question answered 'no' enrols in the pathway that enrols on it."""
        index = CriteriaIndex([pathway("sq", "1", enrol_when=SURPRISE)])
        answered_no = {**observation("713636003"), "valueBoolean": False}

        expected = Matches({("sq", "1"): frozenset({"surprise-question-no"})}, frozenset({("sq", "1")}))
        assert expected == index.match(answered_no)

    def test_a_resource_meeting_only_another_criterion_does_not_enrol(self) -> None:
        """The same criterion used as done_when in another pathway matches there but enrols nobody there."""
        enrolling = pathway("enrolling", "1", enrol_when=SURPRISE)
        completing = pathway("completing", "1", s=Step("t", owner=GP, done_when=SURPRISE))
        index = CriteriaIndex([enrolling, completing])
        answered_no = {**observation("713636003"), "valueBoolean": False}

        matches = index.match(answered_no)

        assert {("enrolling", "1"), ("completing", "1")} == set(matches.by_pathway)
        assert frozenset({("enrolling", "1")}) == matches.enrols

    def test_a_resource_meeting_a_done_when_of_the_enrolling_pathway_does_not_enrol(self) -> None:
        """An ACP Procedure matches ExampleAcp's done_when, which is not its enrol_when."""
        index = CriteriaIndex([ExampleAcp])
        procedure = {
            "resourceType": "Procedure",
            "id": "acp",
            "status": "completed",
            "code": {"coding": [{"system": SCT, "code": "713603004"}]},
        }

        matches = index.match(procedure)

        assert {("example-acp", "1.0.0"): frozenset({"acp-recorded"})} == matches.by_pathway
        assert frozenset() == matches.enrols

    def test_any_member_of_an_any_of_enrol_when_enrols(self) -> None:
        """enrol_when = a | b enrols on b alone."""
        index = CriteriaIndex([pathway("either", "1", enrol_when=SURPRISE | ACP)])
        procedure = {
            "resourceType": "Procedure",
            "id": "acp",
            "status": "completed",
            "code": {"coding": [{"system": SCT, "code": "713603004"}]},
        }

        assert frozenset({("either", "1")}) == index.match(procedure).enrols


class TestRegistryVersions:
    """The registry keeps every version; new enrolments take the newest."""

    def test_the_newest_version_is_chosen_by_number_not_by_text(self) -> None:
        """1.10.0 is newer than 1.9.0, although '1.10.0' < '1.9.0' as strings."""
        old = pathway("versioned", "1.9.0", name="Old")
        new = pathway("versioned", "1.10.0", name="New")

        registry = Registry([new, old])

        assert new is registry.get("versioned")

    def test_an_older_version_is_found_by_its_version(self) -> None:
        """get(id, version) returns that exact version."""
        old = pathway("versioned", "1.9.0", name="Old")
        new = pathway("versioned", "1.10.0", name="New")

        registry = Registry([old, new])

        assert old is registry.get("versioned", "1.9.0")

    def test_a_release_is_newer_than_its_release_candidate(self) -> None:
        """2.0.0 beats 2.0.0-rc1 and 1.10.0."""
        candidate = pathway("versioned", "2.0.0-rc1", name="Candidate")
        release = pathway("versioned", "2.0.0", name="Release")
        older = pathway("versioned", "1.10.0", name="Older")

        registry = Registry([release, candidate, older])

        assert release is registry.get("versioned")

    def test_latest_lists_the_newest_version_of_each_id_sorted_by_id(self) -> None:
        """One entry per pathway id."""
        registry = Registry([ExampleAcpV2, ExampleAcp, pathway("alpha", "1"), pathway("alpha", "2", name="A2")])

        expected = [("alpha", "2"), ("example-acp", "1.1.0")]
        assert expected == [(p.id, p.version) for p in registry.latest()]

    def test_all_lists_every_version_oldest_first(self) -> None:
        """Versions are ordered numerically within an id."""
        registry = Registry(
            [pathway("v", "1.10.0", name="A"), pathway("v", "1.2.0", name="B"), pathway("v", "1.9.0", name="C")]
        )

        expected = ["1.2.0", "1.9.0", "1.10.0"]
        assert expected == [p.version for p in registry.all()]

    def test_registering_the_same_class_twice_is_harmless(self) -> None:
        """Adding a pathway again keeps one entry."""
        registry = Registry([ExampleAcp, ExampleAcp])

        registry.add(ExampleAcp)

        assert [ExampleAcp] == registry.all()

    def test_two_classes_claiming_one_id_and_version_are_refused(self) -> None:
        """A second, different class for example-acp|1.0.0 is an error naming both classes."""
        impostor = pathway("example-acp", "1.0.0", name="Impostor")
        registry = Registry([ExampleAcp])

        with pytest.raises(PathwayError) as exc_info:
            registry.add(impostor)

        expected = (
            "two different pathways claim example-acp|1.0.0: example_pathway.ExampleAcp and "
            f"{impostor.__module__}.Impostor"
        )
        assert expected == str(exc_info.value)

    def test_adding_a_pathway_after_the_index_was_built_reindexes(self) -> None:
        """The index is rebuilt, so the new pathway's criteria are found."""
        registry = Registry([ExampleAcp])
        answered_no = {**observation("713636003"), "valueBoolean": False}
        before = registry.index.match(answered_no).enrols

        registry.add(pathway("sq", "1", enrol_when=SURPRISE))

        after = registry.index.match(answered_no).enrols
        assert frozenset({("example-acp", "1.0.0")}) == before
        assert frozenset({("example-acp", "1.0.0"), ("sq", "1")}) == after


class TestUnknownPathway:
    """Asking for a pathway that is not registered names what is."""

    def test_an_unknown_id_lists_the_known_ids(self) -> None:
        """The message names the id asked for and every registered id, sorted."""
        registry = Registry([ExampleAcp, pathway("alpha", "1")])

        with pytest.raises(UnknownPathwayError) as exc_info:
            registry.get("nope")

        expected = "Unknown pathway 'nope' (known: alpha, example-acp)"
        assert expected == str(exc_info.value)

    def test_an_unknown_version_lists_the_known_versions(self) -> None:
        """The message names id|version and the versions there are."""
        registry = Registry([ExampleAcp, ExampleAcpV2])

        with pytest.raises(UnknownPathwayError) as exc_info:
            registry.get("example-acp", "9.9.9")

        expected = "Unknown pathway 'example-acp|9.9.9' (known: example-acp|1.0.0, example-acp|1.1.0)"
        assert expected == str(exc_info.value)

    def test_an_empty_registry_says_so(self) -> None:
        """With nothing registered the message says no pathways are registered."""
        with pytest.raises(UnknownPathwayError) as exc_info:
            Registry().get("anything")

        expected = "Unknown pathway 'anything' (no pathways are registered)"
        assert expected == str(exc_info.value)

    def test_the_error_is_a_lookup_error(self) -> None:
        """Callers may catch it as LookupError."""
        with pytest.raises(LookupError):
            Registry().get("anything")
