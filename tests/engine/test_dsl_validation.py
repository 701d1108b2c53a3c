"""The pathway DSL: what @defn fills in for a valid declaration, and how an invalid one is reported."""

from __future__ import annotations

from typing import Any

import pytest
from example_pathway import ACP_RECORDED, DECEASED, SHARING_CONSENT, SURPRISE_QUESTION_NO, ExampleAcp
from zorgpad.engine import (
    COORDINATOR,
    GP,
    OUT_OF_HOURS,
    STANDARD_ROLES,
    Coding,
    Criterion,
    Escalation,
    InvalidPathwayError,
    Pathway,
    PathwayError,
    Reminder,
    Role,
    Step,
    days,
    defn,
    months,
    validate,
    weeks,
)
from zorgpad.engine._dsl import RESERVED

SCT = "http://snomed.info/sct"
NURSE_X = Role("nurse-x", "Verpleegkundige X (a role nobody declared)")


@defn(id="other-pathway", version="1.0.0")
class OtherPathway(Pathway):
    """Another pathway, whose step another pathway may not borrow."""

    elsewhere = Step("A step of another pathway", owner=GP)


def declare(pathway_id: str = "p", pathway_version: str = "1.0.0", **attributes: Any) -> type[Pathway]:
    """Declare a pathway named P from keyword attributes (steps, roles, criteria)."""
    body: dict[str, Any] = {"__doc__": "A test pathway."}
    body.update(attributes)
    return defn(id=pathway_id, version=pathway_version)(type("P", (Pathway,), body))


def reasons_for(**attributes: Any) -> list[str]:
    """The reasons an invalid pathway P is refused for."""
    with pytest.raises(InvalidPathwayError) as exc_info:
        declare(**attributes)
    return exc_info.value.reasons


class TestValidDeclaration:
    """@defn fills in identity, steps and description from the class."""

    def test_id_version_and_url_come_from_defn(self) -> None:
        """The canonical URL is built from the id under the Zorgpad base URL."""
        expected = ("example-acp", "1.0.0", "https://zorgpad.nl/fhir/PlanDefinition/example-acp")

        assert expected == (ExampleAcp.id, ExampleAcp.version, ExampleAcp.url)

    def test_the_canonical_pins_url_and_version(self) -> None:
        """canonical() is url|version, what an enrolment stays on."""
        expected = "https://zorgpad.nl/fhir/PlanDefinition/example-acp|1.0.0"

        assert expected == ExampleAcp.canonical()

    def test_steps_are_the_step_attributes_in_declaration_order(self) -> None:
        """Only Step attributes become steps, in the order they were written."""
        expected = ["register", "conversation", "share", "review"]

        assert expected == [step.id for step in ExampleAcp.steps]

    def test_step_ids_are_the_attribute_names(self) -> None:
        """A step defined outside the class takes the name it is bound to."""
        shared = Step("Written elsewhere", owner=GP)

        pathway = declare(first_step=shared, second_step=Step("Second", owner=GP, after=shared))

        expected = ["first_step", "second_step"]
        assert expected == [step.id for step in pathway.steps]

    def test_the_description_is_the_docstring_and_the_title_its_first_line(self) -> None:
        """The title drops the docstring's final full stop."""
        expected = "Example proactive care planning pathway used by the engine tests."

        assert expected == ExampleAcp.description
        assert expected.rstrip(".") == ExampleAcp.title

    def test_title_and_url_may_be_given_explicitly(self) -> None:
        """defn(title=, url=) overrides the docstring and the default base URL."""
        cls = type("Named", (Pathway,), {"__doc__": "Docstring.", "only": Step("Only", owner=GP)})

        pathway = defn(id="named", version="2", title="Given title", url="https://example.org/pd/named")(cls)

        expected = ("Given title", "https://example.org/pd/named|2")
        assert expected == (pathway.title, pathway.canonical())

    def test_a_pathway_without_docstring_takes_its_class_name_as_title(self) -> None:
        """The title falls back to the class name; the description is empty."""
        pathway = defn(id="bare", version="1")(type("Bare", (Pathway,), {"only": Step("Only", owner=GP)}))

        expected = ("Bare", "")
        assert expected == (pathway.title, pathway.description)

    def test_step_looks_a_step_up_by_id(self) -> None:
        """Pathway.step(id) returns the very Step object declared."""
        result = ExampleAcp.step("share")

        assert ExampleAcp.share is result

    def test_step_with_an_unknown_id_names_the_steps_there_are(self) -> None:
        """A KeyError lists the pathway's steps."""
        with pytest.raises(
            KeyError,
            match="pathway example-acp has no step 'nope' "
            r"\(steps: register, conversation, share, review\)",
        ):
            ExampleAcp.step("nope")

    def test_predecessors_are_a_tuple_whether_after_was_one_step_or_several(self) -> None:
        """after=step and after=[a, b] both give tuples of steps."""
        first, second = Step("First", owner=GP), Step("Second", owner=GP)
        one = Step("One", owner=GP, after=first)
        many = Step("Many", owner=GP, after=[first, second])

        expected = ((first,), (first, second), ())
        assert expected == (one.predecessors, many.predecessors, first.predecessors)

    def test_the_assignee_of_a_handover_is_the_receiving_role(self) -> None:
        """A handover step's Task belongs to the receiver, other steps' to their owner."""
        expected = (OUT_OF_HOURS, GP)

        assert expected == (ExampleAcp.share.assignee, ExampleAcp.register.assignee)

    def test_criteria_lists_every_criterion_of_conditions_by_name(self) -> None:
        """enrol_when, exit_when, done_when and only_if criteria are all found."""
        expected = {
            "surprise-question-no": SURPRISE_QUESTION_NO,
            "deceased": DECEASED,
            "acp-recorded": ACP_RECORDED,
            "sharing-consent": SHARING_CONSENT,
        }

        assert expected == ExampleAcp.criteria()

    def test_validate_accepts_a_valid_pathway_quietly(self) -> None:
        """validate() returns None for a pathway without problems."""
        assert validate(ExampleAcp) is None


class TestPathwayIsADeclaration:
    """A pathway is a class to declare, never an object to make."""

    def test_a_declared_pathway_cannot_be_instantiated(self) -> None:
        """Calling the class raises a TypeError telling to use the class itself."""
        with pytest.raises(TypeError, match=r"^ExampleAcp is a pathway declaration; use the class itself$"):
            ExampleAcp()

    def test_the_base_class_cannot_be_instantiated(self) -> None:
        """Pathway() is refused too."""
        with pytest.raises(TypeError, match=r"^Pathway is a pathway declaration; use the class itself$"):
            Pathway()


class TestRoles:
    """Steps are owned by standard roles or by roles the pathway declares."""

    def test_a_pathway_may_declare_extra_roles(self) -> None:
        """With roles = (Role(...),) a step may be owned, reminded and escalated to that role."""
        pathway = declare(
            roles=(NURSE_X,),
            visit=Step(
                "Home visit",
                owner=NURSE_X,
                due=days(7),
                remind=Reminder(every=days(2), to=NURSE_X),
                escalate=Escalation(after=days(5), to=NURSE_X),
            ),
        )

        expected = (*STANDARD_ROLES, NURSE_X)
        assert expected == pathway.known_roles()

    def test_declaring_a_standard_role_again_does_not_list_it_twice(self) -> None:
        """known_roles() has each role once."""
        pathway = declare(roles=(GP, NURSE_X), visit=Step("Home visit", owner=NURSE_X))

        expected = (*STANDARD_ROLES, NURSE_X)
        assert expected == pathway.known_roles()

    def test_an_undeclared_role_as_reminder_or_escalation_target_is_refused(self) -> None:
        """remind.to and escalate.to must be known roles too."""
        reasons = reasons_for(
            visit=Step(
                "Home visit",
                owner=GP,
                due=days(7),
                remind=Reminder(every=days(1), to=NURSE_X),
                escalate=Escalation(after=days(3), to=NURSE_X),
            )
        )

        expected = [
            "step 'visit' has remind.to='nurse-x', which is not a known role",
            "step 'visit' has escalate.to='nurse-x', which is not a known role",
        ]
        assert expected == reasons

    def test_an_owner_given_as_a_string_is_refused(self) -> None:
        """owner='gp' is not the GP role object."""
        reasons = reasons_for(visit=Step("Home visit", owner="gp"))  # type: ignore[arg-type]

        expected = ["step 'visit' has owner= that is not a Role (got 'gp' that is a <class 'str'>)"]
        assert expected == reasons

    def test_roles_given_as_a_single_role_instead_of_a_tuple_is_reported(self) -> None:
        """roles = Role(...) (the tuple comma forgotten) is a declaration problem, not a crash."""
        with pytest.raises(InvalidPathwayError) as exc_info:
            declare(roles=NURSE_X, visit=Step("Home visit", owner=NURSE_X))

        assert any("roles" in reason for reason in exc_info.value.reasons)


@pytest.fixture(scope="module")
def broken_pathway_error() -> InvalidPathwayError:
    """The error raised for a pathway with eleven different problems."""
    dup_procedure = Criterion("dup", "Procedure", code=Coding(SCT, "713603004"))
    dup_observation = Criterion("dup", "Observation", code=Coding(SCT, "713636003"))

    with pytest.raises(InvalidPathwayError) as exc_info:

        @defn(id="broken pathway!", version="1.0.0")
        class Broken(Pathway):
            """A pathway with many problems."""

            first = Step("First", owner=GP)
            borrowed = Step("Borrows a step", owner=GP, after=OtherPathway.elsewhere)
            by_name = Step("Refers by name", owner=GP, after="first")  # type: ignore[arg-type]
            loop_a = Step("Loop A", owner=GP)
            loop_b = Step("Loop B", owner=GP, after=loop_a)
            loop_a.after = loop_b
            nursing = Step("Nursing", owner=NURSE_X)
            nagging = Step("Nags", owner=GP, remind=Reminder(every=weeks(1)))
            alarming = Step("Alarms", owner=GP, escalate=Escalation(after=days(3), to=COORDINATOR))
            late = Step(
                "Reminds too late",
                owner=GP,
                due=days(7),
                remind=Reminder(every=weeks(1), times=3),
                escalate=Escalation(after=weeks(2), to=COORDINATOR),
            )
            canonical = Step("Reserved name", owner=GP)
            done_a = Step("Done A", owner=GP, done_when=dup_procedure)
            done_b = Step("Done B", owner=GP, done_when=dup_observation)
            skipping = Step("Skips", owner=GP, otherwise="skip")

    return exc_info.value


class TestEveryProblemAtOnce:
    """An invalid pathway raises one InvalidPathwayError that lists every problem it has."""

    EXPECTED_REASONS = (
        "id must be a FHIR id of 1-64 letters, digits, '-' or '.' (got 'broken pathway!')",
        "step attribute 'canonical' is a reserved name",
        "step 'borrowed' has after='elsewhere', which is not a step of Broken",
        "step 'by_name' has after='first', which is not a Step (got 'first' that is a <class 'str'>)",
        "step 'nursing' has owner='nurse-x', which is not a known role",
        "step 'nagging' has reminders but no due= deadline",
        "step 'alarming' has an escalation but no due= deadline",
        "step 'late' reminds 2 weeks after due, which is not before its escalation 2 weeks after due",
        "step 'skipping' has otherwise='skip' but no only_if guard",
        "steps form a cycle: loop_a -> loop_b -> loop_a",
        "criterion name 'dup' names two different criteria",
    )

    def test_every_problem_is_counted(self, broken_pathway_error: InvalidPathwayError) -> None:
        """Eleven problems give eleven reasons, none hidden behind the first."""
        expected = len(self.EXPECTED_REASONS)

        assert expected == len(broken_pathway_error.reasons)

    @pytest.mark.parametrize("reason", EXPECTED_REASONS)
    def test_each_problem_is_named(self, broken_pathway_error: InvalidPathwayError, reason: str) -> None:
        """Each reason names the step, the setting and what is wrong with it."""
        assert reason in broken_pathway_error.reasons

    def test_the_reasons_come_in_declaration_order(self, broken_pathway_error: InvalidPathwayError) -> None:
        """Pathway-level problems first, then steps as declared, then the graph and the criteria."""
        expected = list(self.EXPECTED_REASONS)

        assert expected == broken_pathway_error.reasons

    def test_the_message_counts_and_joins_the_reasons(self, broken_pathway_error: InvalidPathwayError) -> None:
        """The message reads 'Invalid pathway X for N reasons: a; b; …'."""
        expected = f"Invalid pathway Broken for 11 reasons: {'; '.join(self.EXPECTED_REASONS)}"

        assert expected == str(broken_pathway_error)

    def test_the_error_names_the_pathway_class(self, broken_pathway_error: InvalidPathwayError) -> None:
        """broken_pathway_error.pathway is the class name."""
        expected = "Broken"

        assert expected == broken_pathway_error.pathway

    def test_the_error_is_a_value_error_and_a_pathway_error(self, broken_pathway_error: InvalidPathwayError) -> None:
        """Callers may catch it as either."""
        assert isinstance(broken_pathway_error, ValueError)
        assert isinstance(broken_pathway_error, PathwayError)

    def test_a_single_problem_is_one_reason_in_the_singular(self) -> None:
        """'for 1 reason', not 'for 1 reasons'."""
        with pytest.raises(InvalidPathwayError) as exc_info:
            declare(visit=Step("Home visit", owner=None))

        expected = "Invalid pathway P for 1 reason: step 'visit' has no owner"
        assert expected == str(exc_info.value)


class TestSingleProblems:
    """Each rule on its own, with the exact reason it gives."""

    @pytest.mark.parametrize("name", sorted(RESERVED))
    def test_a_step_may_not_take_a_reserved_name(self, name: str) -> None:
        """Every name the pathway itself uses (id, version, title, url, steps, …) is refused as a step name."""
        with pytest.raises(InvalidPathwayError) as exc_info:
            declare(ok=Step("Fine", owner=GP), **{name: Step("Clashes", owner=GP)})

        assert f"step attribute {name!r} is a reserved name" in exc_info.value.reasons

    def test_a_pathway_without_steps_is_refused(self) -> None:
        """A pathway needs at least one step."""
        expected = ["it has no steps"]

        assert expected == reasons_for()

    @pytest.mark.parametrize("version", ["", "1.0|2"])
    def test_the_version_must_be_non_empty_and_without_a_bar(self, version: str) -> None:
        """The bar separates url and version in a canonical."""
        with pytest.raises(InvalidPathwayError) as exc_info:
            declare(pathway_version=version, only=Step("Only", owner=GP))

        expected = [f"version must be a non-empty string without '|' (got {version!r})"]
        assert expected == exc_info.value.reasons

    def test_an_id_longer_than_64_characters_is_refused(self) -> None:
        """FHIR ids are at most 64 characters."""
        with pytest.raises(InvalidPathwayError, match="id must be a FHIR id"):
            declare(pathway_id="a" * 65, only=Step("Only", owner=GP))

    def test_a_64_character_id_is_accepted(self) -> None:
        """The limit itself is allowed."""
        expected = "a" * 64

        assert expected == declare(pathway_id=expected, only=Step("Only", owner=GP)).id

    def test_a_due_given_as_a_number_names_the_value_and_its_type(self) -> None:
        """due=28 is not 28 days."""
        expected = ["step 'talk': 'due' must be a Duration (got 28 that is a <class 'int'>)"]

        assert expected == reasons_for(talk=Step("Talk", owner=GP, due=28))  # type: ignore[arg-type]

    def test_a_step_repeating_every_zero_units_is_refused(self) -> None:
        """A zero repeat would loop forever."""
        expected = ["step 'review' repeats every 0 mo"]

        assert expected == reasons_for(review=Step("Review", owner=GP, repeat=months(0)))

    def test_a_step_after_itself_is_reported_once_and_not_as_a_cycle(self) -> None:
        """A self-reference has its own reason."""
        loop = Step("Loop", owner=GP)
        loop.after = loop

        expected = ["step 'loop' comes after itself"]
        assert expected == reasons_for(loop=loop)

    def test_a_three_step_cycle_is_reported_in_running_order(self) -> None:
        """a after c, b after a, c after b reads 'a -> b -> c -> a'."""
        a = Step("A", owner=GP)
        b = Step("B", owner=GP, after=a)
        c = Step("C", owner=GP, after=b)
        a.after = c

        expected = ["steps form a cycle: a -> b -> c -> a"]
        assert expected == reasons_for(a=a, b=b, c=c)

    def test_a_step_of_another_pathway_is_a_dangling_reference(self) -> None:
        """after= a step that another pathway declared names that step and this pathway."""
        expected = ["step 'first' has after='elsewhere', which is not a step of P"]

        assert expected == reasons_for(first=Step("First", owner=GP, after=OtherPathway.elsewhere))

    def test_a_foreign_step_sharing_an_id_with_a_successor_does_not_make_a_phantom_cycle(self) -> None:
        """A borrowed step whose id equals this pathway's 'second' is not 'second': no cycle is reported."""
        foreign = declare(pathway_id="foreign", second=Step("Foreign second", owner=GP)).step("second")
        first = Step("First", owner=GP, after=foreign)

        reasons = reasons_for(first=first, second=Step("Second", owner=GP, after=first))

        expected = ["step 'first' has after='second', which is not a step of P"]
        assert expected == reasons

    def test_one_step_object_under_two_names_is_refused(self) -> None:
        """The same Step bound to two attributes is one step declared twice."""
        twice = Step("Twice", owner=GP)

        expected = ["one step is declared twice, as 'a' and 'b'"]
        assert expected == reasons_for(a=twice, b=twice)

    def test_a_reminder_strictly_before_the_escalation_is_accepted(self) -> None:
        """Reminders at due and due + 1 week come before an escalation at due + 2 weeks."""
        pathway = declare(
            talk=Step(
                "Talk",
                owner=GP,
                due=days(7),
                remind=Reminder(every=weeks(1), times=2),
                escalate=Escalation(after=weeks(2), to=COORDINATOR),
            )
        )

        expected = ["talk"]
        assert expected == [step.id for step in pathway.steps]

    def test_a_reminder_that_falls_exactly_at_the_escalation_is_refused(self) -> None:
        """The last reminder must come before the escalation, compared in approximate time."""
        expected = ["step 'talk' reminds 14 days after due, which is not before its escalation 2 weeks after due"]

        assert expected == reasons_for(
            talk=Step(
                "Talk",
                owner=GP,
                due=days(7),
                remind=Reminder(every=days(7), times=3),
                escalate=Escalation(after=weeks(2), to=COORDINATOR),
            )
        )

    def test_a_reminder_with_zero_times_is_refused(self) -> None:
        """times must be at least one."""
        expected = ["step 'talk': reminder 'times' must be at least 1 (got 0)"]

        assert expected == reasons_for(
            talk=Step("Talk", owner=GP, due=days(7), remind=Reminder(every=days(1), times=0))
        )

    def test_enrol_when_must_be_a_criterion(self) -> None:
        """A FHIRPath string is not a Criterion."""
        expected = [
            "'enrol_when' must be a Criterion or criteria joined with | "
            "(got 'Observation.value = false' that is a <class 'str'>)"
        ]

        assert expected == reasons_for(enrol_when="Observation.value = false", only=Step("Only", owner=GP))

    def test_a_criterion_name_must_be_a_fhir_id(self) -> None:
        """Criterion names become ids in exported resources."""
        bad = Criterion("acp recorded", "Procedure")

        expected = ["criterion name must be a FHIR id (got 'acp recorded')"]
        assert expected == reasons_for(talk=Step("Talk", owner=GP, done_when=bad))

    def test_a_criterion_resource_type_must_look_like_a_fhir_type(self) -> None:
        """'procedure' in lower case is not a resource type."""
        bad = Criterion("acp-recorded", "procedure")

        expected = ["criterion 'acp-recorded' has resource type 'procedure', which is not a FHIR resource type"]
        assert expected == reasons_for(talk=Step("Talk", owner=GP, done_when=bad))

    def test_one_criterion_used_twice_is_not_a_duplicate(self) -> None:
        """Reusing the same criterion object (or an equal one) is fine."""
        pathway = declare(
            exit_when=DECEASED,
            enrol_when=SURPRISE_QUESTION_NO,
            talk=Step("Talk", owner=GP, done_when=ACP_RECORDED),
            share=Step("Share", owner=GP, only_if=ACP_RECORDED, otherwise="skip"),
        )

        expected = {"deceased", "surprise-question-no", "acp-recorded"}
        assert expected == set(pathway.criteria())

    def test_an_otherwise_other_than_wait_or_skip_is_refused(self) -> None:
        """otherwise is 'wait' or 'skip'."""
        expected = ["step 'share': 'otherwise' must be 'wait' or 'skip' (got 'drop')"]

        assert expected == reasons_for(share=Step("Share", owner=GP, only_if=ACP_RECORDED, otherwise="drop"))  # type: ignore[arg-type]
