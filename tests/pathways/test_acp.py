"""palliative-acp over simulated months: identification, invitation letter, the PZP conversation with its
reminders and escalation, the 'not ready yet' branch, sharing only with consent, re-sharing changed
directives, periodic and admission-driven review, PaTz listing, and the exits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import timedelta
from typing import Any

import pytest
from zorgpad.engine import EnrolmentStatus, StepState, days, months, weeks
from zorgpad.engine.testing import PathwayHarness
from zorgpad.pathways import REGISTRY, settings
from zorgpad.pathways import terminology as t
from zorgpad.pathways.acp import AdvanceCarePlanning

from tests.pathways.region import (
    AMBULANCE_ORG,
    COORDINATOR_ORG,
    GP_ORG,
    HOME_CARE_ORG,
    HOSPITAL_ORG,
    OUT_OF_HOURS_ORG,
    PATIENT,
    PATIENT_NAME,
    START,
    acp_procedure,
    admission,
    complete,
    cpr_directive,
    deceased,
    due,
    harness_with_region,
    icu_directive,
    inputs,
    instant,
    narrative,
    owner,
    palliative_condition,
    patient,
    sent,
    sharing_consent,
    sharing_form,
    spict,
    step_of,
    summary,
    surprise_question,
    treatment_directive,
    withdrawal,
)

ACP = "palliative-acp"
SHARE_STEPS = ("share_ambulance", "share_home_care", "share_hospital", "share_out_of_hours")
RECEIVER_OF = {"share_ambulance": AMBULANCE_ORG, "share_home_care": HOME_CARE_ORG,
               "share_hospital": HOSPITAL_ORG, "share_out_of_hours": OUT_OF_HOURS_ORG}
JSON = dict[str, Any]
SNOMED_ACP = {"system": t.SNOMED, "code": "713603004"}

MARKED = START + timedelta(days=2)  # the GP marks the patient in the palliative register
INVITED = START + timedelta(days=3)  # the GP sends the invitation letter: the conversation Task opens
CONVERSATION_DUE = days(settings.CONVERSATION_DAYS).after(INVITED)
HELD = INVITED + timedelta(weeks=2)  # the PZP conversation is held and recorded
CONSENTED = HELD + timedelta(days=1)  # the patient agrees to share the agreements
SHARE_DUE = days(settings.SHARE_DAYS).after(CONSENTED)


def codes(task: JSON) -> list[dict[str, str]]:
    """The system and code of each coding of a Task's code."""
    return [{"system": c["system"], "code": c["code"]} for c in task["code"].get("coding", [])]




@pytest.fixture
def identified(harness: PathwayHarness) -> PathwayHarness:
    """The GP would not be surprised if Maria died within a year: she is enrolled at START."""
    harness.add(surprise_question(False))
    return harness


@pytest.fixture
def invited(identified: PathwayHarness) -> PathwayHarness:
    """The GP marks Maria on day 2 and sends the invitation on day 3: the conversation Task is open."""
    identified.advance_to(MARKED)
    complete(identified, ACP, "mark")
    identified.advance_to(INVITED)
    complete(identified, ACP, "invite")
    return identified


@pytest.fixture
def held(invited: PathwayHarness) -> PathwayHarness:
    """Two weeks later the conversation is held: 'niet reanimeren', no ICU; no sharing consent yet."""
    invited.advance_to(HELD)
    invited.add(cpr_directive(resuscitate=False))
    invited.add(icu_directive(admit=False))
    invited.add(acp_procedure(when=HELD))
    return invited


@pytest.fixture
def shared(held: PathwayHarness) -> PathwayHarness:
    """A day after the conversation Maria agrees to share the agreements: four handover Tasks open."""
    held.advance_to(CONSENTED)
    held.add(sharing_consent())
    return held


class TestIdentification:
    """A marked palliative phase enrols the patient; the GP's first Task is to mark her in the register."""

    def test_the_surprise_question_answered_no_enrols_the_patient(self, harness: PathwayHarness) -> None:
        """'Would I be surprised if she died within 12 months?' answered no enrols Maria at once."""
        result = harness.add(surprise_question(False))

        enrolment = harness.enrolment(ACP)
        assert ([enrolment.id], PATIENT, START) == (result.enrolled, enrolment.patient, enrolment.enrolled_at)

    def test_a_positive_spict_enrols_the_patient(self, harness: PathwayHarness) -> None:
        """A positive SPICT-NL screening enrols Maria."""
        result = harness.add(spict(True))

        assert [harness.enrolment(ACP).id] == result.enrolled

    def test_a_palliative_phase_condition_enrols_the_patient(self, harness: PathwayHarness) -> None:
        """A Condition 767503006 'limited life expectancy of approximately one year' enrols Maria."""
        result = harness.add(palliative_condition())

        assert [harness.enrolment(ACP).id] == result.enrolled

    def test_the_gp_can_enrol_the_patient_explicitly(self, harness: PathwayHarness) -> None:
        """Without any identifying finding the GP enrols Maria by hand; the mark Task opens the same way."""
        enrolment = harness.enrol(ACP, PATIENT)

        (task,) = harness.tasks("mark")
        assert (EnrolmentStatus.ACTIVE, GP_ORG) == (enrolment.status, owner(task))

    @pytest.mark.parametrize("finding", [
        surprise_question(True),
        spict(False),
        {**surprise_question(False), "status": "preliminary"},
    ], ids=["would-be-surprised", "spict-negative", "preliminary-answer"])
    def test_findings_that_do_not_mark_the_palliative_phase_enrol_nobody(
        self, harness: PathwayHarness, finding: dict[str, object]
    ) -> None:
        """'Would be surprised', a negative SPICT or a preliminary answer enrols nobody."""
        result = harness.add(finding)

        assert ([], []) == (result.enrolled, harness.enrolments())

    def test_a_second_finding_does_not_enrol_the_patient_twice(self, identified: PathwayHarness) -> None:
        """A positive SPICT a week after the Surprise Question leaves Maria with one enrolment."""
        identified.advance(weeks(1))

        result = identified.add(spict(True))

        assert ([], 1) == (result.enrolled, len(identified.enrolments()))

    def test_the_first_task_is_the_gp_marking_the_patient_in_the_register(self, identified: PathwayHarness) -> None:
        """The only Task is 'mark', requested of the GP practice with MARK_DAYS to do it."""
        (task,) = identified.tasks()

        assert ("mark", "requested", GP_ORG, instant(days(settings.MARK_DAYS).after(START))) == (
            step_of(task), task["status"], owner(task), due(task))


class TestInvitation:
    """Marking opens the invitation, whose letter is prepared in Dutch for Maria and her daughter."""

    def test_marking_opens_the_invitation_and_the_patz_listing(self, identified: PathwayHarness) -> None:
        """Once marked, the GP gets 'invite' (a week) and 'patz' (two weeks)."""
        identified.advance_to(MARKED)

        complete(identified, ACP, "mark")

        (invite,) = identified.tasks("invite")
        (patz,) = identified.tasks("patz")
        assert [(GP_ORG, instant(MARKED + timedelta(days=7))), (GP_ORG, instant(MARKED + timedelta(days=14)))] == [
            (owner(invite), due(invite)), (owner(patz), due(patz))]

    def test_the_invitation_letter_is_prepared_for_the_patient_and_her_relatives(
        self, identified: PathwayHarness
    ) -> None:
        """The letter is a Communication in preparation to Maria and her daughter, about the invite Task."""
        identified.advance_to(MARKED)
        complete(identified, ACP, "mark")

        (letter,) = [c for c in identified.resources("Communication")
                     if c["category"][0]["coding"][0]["code"] == "letter"]

        (invite,) = identified.tasks("invite")
        assert ("preparation", ["Patient/p1", "RelatedPerson/rp-daughter"], [f"Task/{invite['id']}"]) == (
            letter["status"], [r["reference"] for r in letter["recipient"]],
            [a["reference"] for a in letter["about"]])
        assert [f"Communication/{letter['id']}"] == inputs(invite)

    def test_the_letter_is_in_dutch_and_names_the_patient_and_her_gp(self, identified: PathwayHarness) -> None:
        """The text greets Maria by name, explains proactieve zorgplanning and names the GP practice's phone."""
        identified.advance_to(MARKED)
        complete(identified, ACP, "mark")

        (notice,) = identified.notices("letter")

        text = notice.text
        assert f"Beste {PATIENT_NAME}," == text.splitlines()[0]
        assert [] == [part for part in ("proactieve zorgplanning", "Huisartsenpraktijk De Baandert via 046-4512345",
                                        "Met vriendelijke groet") if part not in text]

    def test_no_letter_is_written_before_the_patient_is_marked(self, identified: PathwayHarness) -> None:
        """While 'mark' is open, no letter exists and the invite step waits."""
        identified.advance(days(10))

        assert ([], StepState.PENDING) == (identified.notices("letter"), identified.step("invite").state)


class TestConversation:
    """The GP holds the PZP conversation: Task 713603004, reminded at due and a week later, then escalated."""

    def test_sending_the_invitation_opens_the_conversation_for_the_gp(self, invited: PathwayHarness) -> None:
        """The conversation Task carries SNOMED 713603004, is the GP's, and is due CONVERSATION_DAYS on."""
        (task,) = invited.tasks("conversation")

        assert ([SNOMED_ACP], GP_ORG, instant(CONVERSATION_DUE), "requested") == (
            codes(task), owner(task), due(task), task["status"])

    def test_reminders_go_to_the_gp_and_the_escalation_to_the_coordinator(self, invited: PathwayHarness) -> None:
        """Over eight weeks: reminders to the GP at due and due + 1 week, escalation to TOPAT at due + 3 weeks."""
        invited.advance(weeks(8))

        assert [
            (CONVERSATION_DUE, "reminder", "conversation", GP_ORG),
            (CONVERSATION_DUE + timedelta(weeks=1), "reminder", "conversation", GP_ORG),
            (CONVERSATION_DUE + timedelta(weeks=3), "escalation", "conversation", COORDINATOR_ORG),
        ] == sent(invited)

    def test_nothing_is_sent_a_minute_before_the_deadline(self, invited: PathwayHarness) -> None:
        """Up to a minute before the deadline the GP has had no reminder and the Task is not overdue."""
        invited.advance_to(CONVERSATION_DUE - timedelta(minutes=1))

        assert ([], None) == (sent(invited), invited.step("conversation").business_status)

    def test_the_escalated_task_says_so(self, invited: PathwayHarness) -> None:
        """After the escalation the GP's Task has business status 'escalated' and is still requested."""
        invited.advance_to(CONVERSATION_DUE + timedelta(weeks=3))

        (task,) = invited.tasks("conversation")
        assert ("requested", "escalated") == (task["status"], task["businessStatus"]["text"])

    def test_recording_the_conversation_completes_it_and_stops_the_notices(self, invited: PathwayHarness) -> None:
        """An ACP Procedure recorded after the first reminder completes the Task; nothing else is sent."""
        invited.advance_to(CONVERSATION_DUE + timedelta(days=1))
        invited.add(acp_procedure())

        invited.advance(weeks(6))

        (task,) = invited.tasks("conversation")
        assert ("completed", [(CONVERSATION_DUE, "reminder", "conversation", GP_ORG)]) == (
            task["status"], sent(invited, steps=("conversation",)))


class TestNotReadyYet:
    """A not-done ACP Procedure records that Maria is not ready; the conversation is offered again later."""

    @pytest.fixture
    def not_ready(self, invited: PathwayHarness) -> PathwayHarness:
        """At the conversation Maria says she is not ready yet (Procedure 713603004, status not-done)."""
        invited.advance_to(HELD)
        invited.add(acp_procedure(done=False))
        return invited

    def test_not_ready_closes_the_first_conversation(self, not_ready: PathwayHarness) -> None:
        """The conversation step is completed by the not-done Procedure, and no Task is open to offer again."""
        assert (StepState.COMPLETED, StepState.PENDING, []) == (
            not_ready.step("conversation").state, not_ready.step("offer_again").state, not_ready.tasks("offer_again"))

    def test_the_conversation_is_offered_again_after_reoffer_months(self, not_ready: PathwayHarness) -> None:
        """Exactly REOFFER_MONTHS after 'not ready' the GP gets a new conversation Task (713603004)."""
        moment = months(settings.REOFFER_MONTHS).after(HELD)
        not_ready.advance_to(moment - timedelta(minutes=1))
        before = not_ready.tasks("offer_again")

        not_ready.advance_to(moment)

        (task,) = not_ready.tasks("offer_again")
        assert ([], [SNOMED_ACP], GP_ORG, instant(moment)) == (before, codes(task), owner(task), task["authoredOn"])

    def test_the_second_offer_is_reminded_and_escalated_like_the_first(self, not_ready: PathwayHarness) -> None:
        """The re-offered conversation is reminded to the GP at due and a week later, escalated at 3 weeks."""
        reoffer_due = days(settings.CONVERSATION_DAYS).after(months(settings.REOFFER_MONTHS).after(HELD))

        not_ready.advance_to(reoffer_due + timedelta(weeks=4))

        assert [
            (reoffer_due, "reminder", "offer_again", GP_ORG),
            (reoffer_due + timedelta(weeks=1), "reminder", "offer_again", GP_ORG),
            (reoffer_due + timedelta(weeks=3), "escalation", "offer_again", COORDINATOR_ORG),
        ] == sent(not_ready, steps=("offer_again",))

    def test_a_conversation_held_later_completes_the_second_offer(self, not_ready: PathwayHarness) -> None:
        """When Maria is ready and the conversation is recorded, the re-offer Task is completed."""
        not_ready.advance(months(settings.REOFFER_MONTHS) + weeks(1))

        not_ready.add(acp_procedure(resource_id="acp-2"))

        (task,) = not_ready.tasks("offer_again")
        assert "completed" == task["status"]

    def test_a_patient_who_held_the_conversation_is_not_offered_it_again(self, held: PathwayHarness) -> None:
        """After a recorded conversation, the re-offer step is skipped and never makes a Task."""
        held.advance(months(settings.REOFFER_MONTHS) + weeks(1))

        assert (StepState.SKIPPED, []) == (held.step("offer_again").state, held.tasks("offer_again"))

    def test_not_ready_again_closes_the_second_offer_and_plans_a_third(self, not_ready: PathwayHarness) -> None:
        """Still not ready at the second offer: that Task completes, and REOFFER_MONTHS later a third one opens."""
        second = months(settings.REOFFER_MONTHS).after(HELD)
        not_ready.advance_to(second + timedelta(weeks=1))
        not_ready.add(acp_procedure(done=False, resource_id="acp-2"))
        third = months(settings.REOFFER_MONTHS).after(second + timedelta(weeks=1))
        not_ready.advance_to(third - timedelta(minutes=1))
        between = [task["status"] for task in not_ready.tasks("offer_again")]

        not_ready.advance_to(third)

        tasks = not_ready.tasks("offer_again")
        assert (["completed"], ["completed", "requested"], instant(third)) == (
            between, [task["status"] for task in tasks], tasks[-1]["authoredOn"])

    def test_a_conversation_held_before_the_next_offer_drops_it(self, not_ready: PathwayHarness) -> None:
        """Not ready twice, then the conversation is held after all: no third offer is made."""
        not_ready.advance(months(settings.REOFFER_MONTHS) + weeks(1))
        not_ready.add(acp_procedure(done=False, resource_id="acp-2"))
        not_ready.advance(weeks(2))
        not_ready.add(acp_procedure(resource_id="acp-3"))
        not_ready.advance(months(2 * settings.REOFFER_MONTHS))

        assert (StepState.SKIPPED, ["completed"]) == (
            not_ready.step("offer_again").state, [task["status"] for task in not_ready.tasks("offer_again")])

    def test_an_enrolment_on_version_1_0_0_keeps_its_second_offer_open(self) -> None:
        """Enrolments that started on 1.0.0 keep its rules: not ready again leaves the second offer open."""
        harness = harness_with_region(pathways=[p for p in REGISTRY if p is not AdvanceCarePlanning])
        try:
            harness.add(surprise_question(False))
            for at, step in ((MARKED, "mark"), (INVITED, "invite")):
                harness.advance_to(at)
                complete(harness, ACP, step)
            harness.advance_to(HELD)
            harness.add(acp_procedure(done=False))
            harness.advance(months(settings.REOFFER_MONTHS) + weeks(1))
            harness.add(acp_procedure(done=False, resource_id="acp-2"))

            assert ("1.0.0", StepState.READY, ["requested"]) == (
                harness.enrolment().version, harness.step("offer_again").state,
                [task["status"] for task in harness.tasks("offer_again")])
        finally:
            harness.close()

    def test_nothing_is_shared_while_the_patient_is_not_ready(self, not_ready: PathwayHarness) -> None:
        """Even with sharing consent, a not-done conversation has no agreements to share: no handover Task."""
        not_ready.add(sharing_consent())

        assert ([], []) == ([t for s in SHARE_STEPS for t in not_ready.tasks(s)], sent(not_ready, "handover"))


class TestSharingWithoutConsent:
    """Without the patient's sharing consent no agreement leaves the GP practice."""

    def test_the_share_steps_wait_for_consent(self, held: PathwayHarness) -> None:
        """Every share step stays pending with business status waiting-for-condition."""
        assert dict.fromkeys(SHARE_STEPS, (StepState.PENDING, "waiting-for-condition")) == {
            s: (held.step(s).state, held.step(s).business_status) for s in SHARE_STEPS}

    def test_no_handover_task_or_notice_is_made_in_months(self, held: PathwayHarness) -> None:
        """Five months on there is still no handover Task, no handover notice and no Composition."""
        held.advance(months(5))

        assert ([], [], []) == ([t for s in SHARE_STEPS for t in held.tasks(s)], sent(held, "handover"),
                                held.resources("Composition"))

    @pytest.mark.parametrize("refusal", [sharing_form(agreed=False), sharing_consent(status="inactive")],
                             ids=["form-answered-niet-akkoord", "inactive-privacy-consent"])
    def test_a_refusal_or_an_inactive_consent_does_not_count(self, held: PathwayHarness,
                                                             refusal: dict[str, object]) -> None:
        """Item 1201 answered 'niet akkoord', or a privacy Consent that is not active, shares nothing."""
        held.add(refusal)

        assert [] == [t for s in SHARE_STEPS for t in held.tasks(s)]

    def test_the_iknl_form_answer_akkoord_is_consent(self, held: PathwayHarness) -> None:
        """The IKNL ACP form with 441898007 'Akkoord' at item 1201 opens the four handover Tasks."""
        held.add(sharing_form())

        assert sorted(RECEIVER_OF.values()) == sorted(str(owner(t)) for s in SHARE_STEPS for t in held.tasks(s))

    def test_consent_given_before_the_conversation_shares_right_after_it(self, invited: PathwayHarness) -> None:
        """Consent recorded early: the handover Tasks open the moment the conversation is recorded."""
        invited.add(sharing_consent())
        invited.advance_to(HELD)

        invited.add(acp_procedure())

        assert {instant(HELD)} == {t["authoredOn"] for s in SHARE_STEPS for t in invited.tasks(s)}


class TestSharingWithConsent:
    """With consent, each receiving organisation gets its own handover Task with the agreements."""

    def test_each_receiver_gets_one_task_requested_by_the_gp(self, shared: PathwayHarness) -> None:
        """Four Tasks, owned by the HAP, ambulance, hospital and home care, requested by the GP, due in 2 days."""
        found = {s: [(owner(t), t["requester"]["reference"], due(t), t["status"]) for t in shared.tasks(s)]
                 for s in SHARE_STEPS}

        assert {s: [(RECEIVER_OF[s], GP_ORG, instant(SHARE_DUE), "requested")] for s in SHARE_STEPS} == found

    def test_each_receiver_gets_a_handover_notice(self, shared: PathwayHarness) -> None:
        """One handover notice per receiver, at the moment consent was recorded."""
        assert sorted((CONSENTED, "handover", s, RECEIVER_OF[s]) for s in SHARE_STEPS) == sorted(
            sent(shared, "handover"))

    def test_the_task_input_is_the_current_directives_and_a_summary(self, held: PathwayHarness) -> None:
        """Task.input names the active directives (not a withdrawn one, not the privacy consent) and the summary."""
        held.add(treatment_directive(t.BLOOD_PRODUCTS, permit=False, resource_id="blood-1", status="inactive"))
        held.advance_to(CONSENTED)
        held.add(sharing_consent())

        (task,) = held.tasks("share_hospital")
        refs = inputs(task)
        assert (["Consent/cpr-1", "Consent/icu-1"], 1) == (
            [r for r in refs if r.startswith("Consent/")], len([r for r in refs if r.startswith("Composition/")]))

    def test_the_summary_says_niet_reanimeren(self, shared: PathwayHarness) -> None:
        """The Composition's narrative has the resuscitation row 'niet reanimeren' and ICU 'niet'."""
        (task,) = shared.tasks("share_out_of_hours")

        div = narrative(shared, task)
        assert [] == [row for row in ("<tr><th>Reanimatie</th><td>niet reanimeren</td></tr>",
                                      "<tr><th>IC-opname</th><td>niet</td></tr>", PATIENT_NAME) if row not in div]

    def test_the_summary_is_the_gps_document_about_the_patient(self, shared: PathwayHarness) -> None:
        """The Composition is final, about Maria, authored by the GP practice, its section listing the directives."""
        (task,) = shared.tasks("share_ambulance")

        composition = summary(shared, task)
        assert ("final", PATIENT, [{"reference": GP_ORG}], ["Consent/cpr-1", "Consent/icu-1"]) == (
            composition["status"], composition["subject"]["reference"], composition["author"],
            [e["reference"] for e in composition["section"][0]["entry"]])

    def test_a_late_receiver_is_escalated_to_the_coordinator(self, shared: PathwayHarness) -> None:
        """Three receivers accept in time; the ambulance service does not and TOPAT is told a day after due."""
        shared.advance(days(1))
        for step in ("share_home_care", "share_hospital", "share_out_of_hours"):
            complete(shared, ACP, step)

        shared.advance(days(5))

        assert [(SHARE_DUE + timedelta(days=1), "escalation", "share_ambulance", COORDINATOR_ORG)] == sent(
            shared, "escalation")


class TestResharing:
    """A changed emergency agreement is handed over again to every receiver."""

    @pytest.fixture
    def accepted(self, shared: PathwayHarness) -> PathwayHarness:
        """Every receiver accepts its handover the day after consent."""
        shared.advance(days(1))
        for step in SHARE_STEPS:
            complete(shared, ACP, step)
        return shared

    def test_a_changed_cpr_directive_opens_a_new_round_of_every_share_step(self, accepted: PathwayHarness) -> None:
        """Maria now wants to be resuscitated: each share step has a second, new Task for the same receiver."""
        accepted.advance(weeks(3))
        changed_at = accepted.now

        accepted.add(cpr_directive(resuscitate=True))

        found = {s: [(t["status"], owner(t), t["authoredOn"]) for t in accepted.tasks(s)] for s in SHARE_STEPS}
        assert {s: [("completed", RECEIVER_OF[s], instant(CONSENTED)),
                    ("requested", RECEIVER_OF[s], instant(changed_at))] for s in SHARE_STEPS} == found

    def test_the_new_summary_reflects_the_change(self, accepted: PathwayHarness) -> None:
        """The new round's summary says 'wel reanimeren'; the first round's still says 'niet reanimeren'."""
        accepted.advance(weeks(3))

        accepted.add(cpr_directive(resuscitate=True))

        first, second = accepted.tasks("share_out_of_hours")
        assert (True, False, True, False) == (
            "niet reanimeren" in narrative(accepted, first), "wel reanimeren" in narrative(accepted, first),
            "wel reanimeren" in narrative(accepted, second), "niet reanimeren" in narrative(accepted, second))

    def test_every_receiver_is_notified_again(self, accepted: PathwayHarness) -> None:
        """The change sends a second handover notice to each receiver."""
        accepted.advance(weeks(3))
        changed_at = accepted.now

        accepted.add(cpr_directive(resuscitate=True))

        assert sorted((changed_at, "handover", s, RECEIVER_OF[s]) for s in SHARE_STEPS) == sorted(
            n for n in sent(accepted, "handover") if n[0] == changed_at)

    def test_an_unrelated_resource_shares_nothing_again(self, accepted: PathwayHarness) -> None:
        """A positive SPICT recorded later is not an agreement: no new share round."""
        accepted.advance(weeks(3))

        accepted.add(spict(True))

        assert [1, 1, 1, 1] == [len(accepted.tasks(s)) for s in SHARE_STEPS]

    def test_a_change_while_the_handover_is_open_still_reaches_the_receiver(self, shared: PathwayHarness) -> None:
        """The CPR directive changes before the hospital accepted: after accepting, its newest summary is current."""
        shared.advance(days(1))
        shared.add(cpr_directive(resuscitate=True))
        shared.advance(days(1))
        complete(shared, ACP, "share_hospital")

        shared.advance(days(1))

        newest = shared.tasks("share_hospital")[-1]
        assert (True, False) == ("wel reanimeren" in narrative(shared, newest),
                                 "niet reanimeren" in narrative(shared, newest))


class TestReview:
    """The PZP is reviewed every REVIEW_MONTHS and after a hospital admission."""

    def test_the_first_review_opens_review_months_after_the_conversation(self, held: PathwayHarness) -> None:
        """The GP gets a review Task (713603004) exactly REVIEW_MONTHS after the conversation, due in 28 days."""
        moment = months(settings.REVIEW_MONTHS).after(HELD)
        held.advance_to(moment - timedelta(minutes=1))
        before = held.tasks("review")

        held.advance_to(moment)

        (task,) = held.tasks("review")
        assert ([], [SNOMED_ACP], GP_ORG, instant(days(settings.CONVERSATION_DAYS).after(moment))) == (
            before, codes(task), owner(task), due(task))

    def test_a_follow_up_conversation_completes_the_review_and_plans_the_next(self, held: PathwayHarness) -> None:
        """A new ACP Procedure closes the review; the next one opens REVIEW_MONTHS after that."""
        held.advance_to(months(settings.REVIEW_MONTHS).after(HELD) + timedelta(days=10))
        reviewed = held.now
        held.add(acp_procedure(resource_id="acp-review-1"))

        held.advance_to(months(settings.REVIEW_MONTHS).after(reviewed))

        first, second = held.tasks("review")
        assert ("completed", "requested", instant(months(settings.REVIEW_MONTHS).after(reviewed))) == (
            first["status"], second["status"], second["authoredOn"])

    def test_an_earlier_procedure_does_not_complete_a_later_review(self, held: PathwayHarness) -> None:
        """The conversation's own Procedure, recorded months before, does not count as the review."""
        held.advance_to(months(settings.REVIEW_MONTHS).after(HELD))

        assert StepState.READY == held.step("review").state

    def test_a_late_review_is_reminded_to_the_gp(self, held: PathwayHarness) -> None:
        """An unheld review is reminded to the GP at due and a week later (the review has no escalation)."""
        review_due = days(settings.CONVERSATION_DAYS).after(months(settings.REVIEW_MONTHS).after(HELD))

        held.advance_to(review_due + timedelta(weeks=4))

        assert [(review_due, "reminder", "review", GP_ORG),
                (review_due + timedelta(weeks=1), "reminder", "review", GP_ORG)] == sent(held, steps=("review",))

    def test_a_hospital_admission_brings_the_first_review_forward(self, held: PathwayHarness) -> None:
        """Admitted two months after the conversation, Maria's PZP is reviewed now, not four months later."""
        held.advance(months(2))
        admitted = held.now

        held.add(admission(start=admitted))

        assert [instant(admitted)] == [task["authoredOn"] for task in held.tasks("review")]

    def test_a_hospital_admission_brings_a_later_review_forward(self, held: PathwayHarness) -> None:
        """After a first review, an admission a month later opens the next review at once."""
        held.advance_to(months(settings.REVIEW_MONTHS).after(HELD))
        held.add(acp_procedure(resource_id="acp-review-1"))
        held.advance(months(1))
        admitted = held.now

        held.add(admission(start=admitted))

        assert ["completed", "requested"] == [task["status"] for task in held.tasks("review")]
        assert instant(admitted) == held.tasks("review")[-1]["authoredOn"]

    def test_an_admission_while_a_review_is_open_adds_no_second_review(self, held: PathwayHarness) -> None:
        """With a review Task open, an admission leaves it as it is."""
        held.advance_to(months(settings.REVIEW_MONTHS).after(HELD) + timedelta(days=1))

        held.add(admission(start=held.now))

        assert 1 == len(held.tasks("review"))


class TestPatz:
    """Maria is listed for the PaTz meeting of GPs and district nurses every PATZ_MONTHS (six times a year)."""

    def test_the_patient_is_listed_six_times_in_a_year(self, identified: PathwayHarness) -> None:
        """The GP completes each listing the day it opens; the next opens PATZ_MONTHS later."""
        identified.advance_to(MARKED)
        complete(identified, ACP, "mark")
        for _ in range(5):
            complete(identified, ACP, "patz")
            identified.advance(months(settings.PATZ_MONTHS))

        expected = [MARKED]
        for _ in range(5):
            expected.append(months(settings.PATZ_MONTHS).after(expected[-1]))
        assert [instant(m) for m in expected] == [task["authoredOn"] for task in identified.tasks("patz")]

    def test_an_unlisted_patient_is_not_listed_again(self, identified: PathwayHarness) -> None:
        """A listing the GP never completes stays one overdue Task; no second listing piles up."""
        identified.advance_to(MARKED)
        complete(identified, ACP, "mark")

        identified.advance(months(6))

        (task,) = identified.tasks("patz")
        assert ("requested", "overdue") == (task["status"], task["businessStatus"]["text"])


class TestExit:
    """The enrolment ends when the patient dies or withdraws; nothing is sent for it afterwards."""

    def test_a_withdrawal_ends_the_enrolment_and_cancels_open_tasks(self, held: PathwayHarness) -> None:
        """Maria withdraws: the enrolment exits, the open PaTz Task is cancelled and the GP told."""
        held.advance(weeks(1))
        withdrawn_at = held.now

        held.add(withdrawal())

        enrolment = held.enrolment(ACP)
        (patz,) = held.tasks("patz")
        assert (EnrolmentStatus.EXITED, withdrawn_at, "cancelled") == (
            enrolment.status, enrolment.ended_at, patz["status"])
        assert "exit criterion pathway-withdrawn met by Observation/withdrawn-1" == enrolment.end_reason
        assert [(withdrawn_at, "cancelled", "patz", GP_ORG)] == sent(held, "cancelled")

    def test_nothing_is_sent_after_a_withdrawal(self, held: PathwayHarness) -> None:
        """A year after the withdrawal no review, reminder, escalation or handover has been made."""
        held.add(withdrawal())
        before = sent(held)

        held.advance(months(12))

        assert (before, [], []) == (sent(held), held.tasks("review"), held.tasks("offer_again"))

    def test_a_withdrawal_observation_that_is_false_changes_nothing(self, held: PathwayHarness) -> None:
        """pathway-withdrawn with valueBoolean false leaves the enrolment active."""
        held.add({**withdrawal(), "valueBoolean": False})

        assert EnrolmentStatus.ACTIVE == held.enrolment(ACP).status

    def test_death_ends_the_enrolment(self, held: PathwayHarness) -> None:
        """Patient.deceasedDateTime ends the enrolment with the reason 'deceased'."""
        held.advance(weeks(1))

        held.add(deceased(held.now))

        enrolment = held.enrolment(ACP)
        assert (EnrolmentStatus.EXITED, "exit criterion deceased met by Patient/p1") == (enrolment.status,
                                                                                       enrolment.end_reason)

    def test_a_deceased_patient_is_not_enrolled(self, harness: PathwayHarness) -> None:
        """A Surprise Question for a patient already recorded as deceased ends at once, with no Task."""
        harness.add(patient(deceased=instant(START - timedelta(days=1))))

        harness.add(surprise_question(False))

        assert (EnrolmentStatus.EXITED, []) == (harness.enrolment(ACP).status, harness.tasks("mark"))


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter of this virtualenv with only the given ZORGPAD_* settings."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ZORGPAD_")}
    clean.update(env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=clean, capture_output=True,
                          text=True, timeout=120, check=False)


_REVIEW_JOURNEY = """
    import json
    from datetime import UTC, datetime
    from zorgpad.engine import months
    from zorgpad.engine.testing import PathwayHarness
    from zorgpad.pathways import REGISTRY
    from zorgpad.pathways.acp import AdvanceCarePlanning

    review = AdvanceCarePlanning.step("review")
    start = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    harness = PathwayHarness(REGISTRY, start=start)
    harness.add({"resourceType": "Patient", "id": "p1"})
    enrolment = harness.enrol("palliative-acp", "Patient/p1")
    for step in ("mark", "invite"):
        harness.engine.task_status(enrolment.id, step, "completed")
    harness.add({"resourceType": "Procedure", "id": "acp-1", "status": "completed",
                 "subject": {"reference": "Patient/p1"},
                 "code": {"coding": [{"system": "http://snomed.info/sct", "code": "713603004"}]}})
    harness.advance(months(12))
    print(json.dumps({"repeat": [review.repeat.value, review.repeat.unit],
                      "offset": [review.offset.value, review.offset.unit],
                      "opened": [t["authoredOn"] for t in harness.tasks("review")]}))
"""


class TestConfigurableIntervals:
    """Intervals the guideline leaves open come from ZORGPAD_* environment variables, checked at import."""

    @pytest.mark.slow
    def test_review_months_from_the_environment_sets_the_review_interval(self) -> None:
        """ZORGPAD_REVIEW_MONTHS=3: the review repeats every 3 months and first opens 3 months after the talk."""
        result = _python(_REVIEW_JOURNEY, ZORGPAD_REVIEW_MONTHS="3")

        assert 0 == result.returncode, result.stderr
        assert {"repeat": [3, "mo"], "offset": [3, "mo"], "opened": ["2026-06-02T09:00:00Z"]} == json.loads(
            result.stdout)

    @pytest.mark.slow
    def test_a_bad_review_months_is_a_clear_value_error(self) -> None:
        """ZORGPAD_REVIEW_MONTHS=abc stops the import with a ValueError naming the variable and the value."""
        result = _python("import zorgpad.pathways", ZORGPAD_REVIEW_MONTHS="abc")

        assert 1 == result.returncode
        assert ("ValueError: ZORGPAD_REVIEW_MONTHS must be a positive whole number (got 'abc')"
                == result.stderr.strip().splitlines()[-1])

    @pytest.mark.parametrize("bad", ["0", "-2", "2.5", "", " 3"])
    def test_other_values_that_are_not_positive_whole_numbers_are_refused(
        self, monkeypatch: pytest.MonkeyPatch, bad: str
    ) -> None:
        """Zero, negative, fractional, empty or padded values are refused with the same message."""
        monkeypatch.setenv("ZORGPAD_REVIEW_MONTHS", bad)

        with pytest.raises(ValueError, match="positive whole number") as raised:
            settings._setting("REVIEW_MONTHS", 6)

        assert f"ZORGPAD_REVIEW_MONTHS must be a positive whole number (got {bad!r})" == str(raised.value)

    @pytest.mark.slow
    def test_the_defaults_are_the_documented_numbers(self) -> None:
        """Defaults: mark 14 d, talk 28 d, re-offer 3 mo, review 6 mo, share 2 d, PaTz 2 mo, 48/12/24/4 h, 4 h, 6 wk."""
        result = _python("""
            from zorgpad.pathways import settings as s
            print([s.MARK_DAYS, s.CONVERSATION_DAYS, s.REOFFER_MONTHS, s.REVIEW_MONTHS, s.SHARE_DAYS,
                   s.PATZ_MONTHS, s.HANDOVER_START_HOURS, s.DISCHARGE_TALK_HOURS, s.TRANSFER_HOURS,
                   s.ACCEPT_HOURS, s.DYING_EVALUATION_HOURS, s.BEREAVEMENT_WEEKS])
        """)

        assert "[14, 28, 3, 6, 2, 2, 48, 12, 24, 4, 4, 6]" == result.stdout.strip(), result.stderr

