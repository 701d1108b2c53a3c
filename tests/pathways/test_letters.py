"""The pathway letters and the engine's notices, in Dutch and English: every template renders from a realistic
context, a missing variable is an error, and the handover summary is well-formed XHTML."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jinja2
import pytest
from zorgpad.engine import NoticeKind, days
from zorgpad.engine._letters import letter_context
from zorgpad.engine.render.letters import LANGUAGES, render_letter
from zorgpad.engine.render.messages import render_notice
from zorgpad.engine.testing import PathwayHarness
from zorgpad.pathways import terminology as t
from zorgpad.pathways.acp import LETTERS, AdvanceCarePlanning
from zorgpad.pathways.transmural import TransmuralDischarge

from tests.pathways.region import (
    GP_ORG,
    PATIENT_NAME,
    acp_procedure,
    advance_directive,
    care_wish,
    complete,
    cpr_directive,
    harness_with_region,
    icu_directive,
    narrative,
    place_of_death,
    policy_goal,
    sharing_consent,
    surprise_question,
    treatment_directive,
)

XHTML = "{http://www.w3.org/1999/xhtml}"
JSON = dict[str, Any]
#: Every letter template the pathways ship: (name, language, html).
TEMPLATES = [(name, lang, html) for name, html in (("pzp_invitation", False), ("handover_summary", True))
             for lang in LANGUAGES]


def parse(html: str) -> ET.Element:
    """An XHTML fragment as an element tree (strict XML: not well-formed raises)."""
    return ET.fromstring(html)  # noqa: S314 - our own rendered letters, not untrusted input


def rows(html: str) -> dict[str, str]:
    """The treatment agreements table of a summary: heading -> answer."""
    div = parse(html)
    return {"".join(tr.find(f"{XHTML}th").itertext()): "".join(tr.find(f"{XHTML}td").itertext())  # type: ignore[union-attr]
            for tr in div.iter(f"{XHTML}tr")}


def text_of(html: str) -> str:
    """All text of an XHTML fragment."""
    return "".join(parse(html).itertext())


@pytest.fixture(scope="module")
def context() -> Iterator[JSON]:
    """The context the engine gives the hospital's share step for Maria after a full PZP conversation: CPR and ICU
    refused, hospital admission wanted, a policy goal, place of death at home, a wish, a written NR declaration,
    her daughter, and the GP practice as lead clinician."""
    harness = harness_with_region()
    harness.add(surprise_question(False))
    for resource in (cpr_directive(resuscitate=False), icu_directive(admit=False),
                     treatment_directive(t.HOSPITAL_ADMISSION, permit=True, resource_id="hosp-1"), policy_goal(),
                     place_of_death(), care_wish("Thuis blijven, met mijn kat"), advance_directive(),
                     acp_procedure()):
        harness.add(resource)
    state = harness.enrolment("palliative-acp")
    step = AdvanceCarePlanning.step("share_hospital")
    found = harness.db.run(lambda session: letter_context(session, AdvanceCarePlanning, state, step, harness.now))
    yield found
    harness.close()


def without(context: JSON, key: str) -> JSON:
    """The context with one variable left out."""
    return {k: v for k, v in context.items() if k != key}


class TestEveryTemplate:
    """Each template in pathways/letters renders in Dutch and in English."""

    def test_the_templates_are_the_invitation_and_the_summary_in_both_languages(self) -> None:
        """The folder holds exactly the templates these tests render (shared macros aside)."""
        found = sorted(p.name for p in Path(LETTERS).glob("*.j2") if not p.name.startswith("_"))

        assert sorted(f"{name}.{lang}.{'html' if html else 'txt'}.j2" for name, lang, html in TEMPLATES) == found

    def test_both_palliative_pathways_with_letters_use_this_folder(self) -> None:
        """palliative-acp and transmural-discharge take their letters from pathways/letters."""
        assert (LETTERS, LETTERS) == (AdvanceCarePlanning.letters, TransmuralDischarge.letters)

    @pytest.mark.parametrize(("name", "lang", "html"), TEMPLATES)
    def test_the_template_renders_with_the_patients_name(self, context: JSON, name: str, lang: str,
                                                         html: bool) -> None:
        """Rendered from the engine's context, each letter names Maria and her GP practice."""
        text = render_letter(LETTERS, name, context, lang=lang, html=html)

        assert [] == [part for part in (PATIENT_NAME, "Huisartsenpraktijk De Baandert") if part not in text]

    @pytest.mark.parametrize(("name", "lang", "html"), TEMPLATES)
    @pytest.mark.parametrize("missing", ["patient_name", "organisations"])
    def test_a_missing_variable_is_an_error(self, context: JSON, name: str, lang: str, html: bool,
                                            missing: str) -> None:
        """Strict undefined: a letter without the patient's name or the organisations is not written."""
        with pytest.raises(jinja2.UndefinedError, match=missing):
            render_letter(LETTERS, name, without(context, missing), lang=lang, html=html)

    def test_an_unknown_language_is_refused(self, context: JSON) -> None:
        """German is not one of the letter languages."""
        with pytest.raises(ValueError, match="language must be one of nl, en") as raised:
            render_letter(LETTERS, "pzp_invitation", context, lang="de")

        assert "language must be one of nl, en (got 'de')" == str(raised.value)


class TestInvitationLetter:
    """The invitation to the PZP conversation, to Maria and her daughter."""

    def test_the_dutch_letter(self, context: JSON) -> None:
        """Greets Maria, explains proactieve zorgplanning, asks her to call the GP practice, signs off."""
        text = render_letter(LETTERS, "pzp_invitation", context, lang="nl")

        assert f"Beste {PATIENT_NAME}," == text.splitlines()[0]
        assert [] == [part for part in (
            "Dit heet proactieve zorgplanning.", "Neem gerust iemand mee die u vertrouwt.",
            "Wilt u een afspraak maken met Huisartsenpraktijk De Baandert via 046-4512345?",
            "Met vriendelijke groet,\nHuisartsenpraktijk De Baandert\n") if part not in text]

    def test_the_english_letter(self, context: JSON) -> None:
        """The same letter in English."""
        text = render_letter(LETTERS, "pzp_invitation", context, lang="en")

        assert f"Dear {PATIENT_NAME}," == text.splitlines()[0]
        assert [] == [part for part in (
            "This is called advance care planning.",
            "Would you make an appointment with Huisartsenpraktijk De Baandert on 046-4512345?",
            "Kind regards,\nHuisartsenpraktijk De Baandert\n") if part not in text]

    @pytest.mark.parametrize(("lang", "expected"), [("nl", "Wilt u een afspraak maken met uw huisarts?"),
                                                    ("en", "Would you make an appointment with your GP?")])
    def test_without_a_known_gp_practice_the_letter_says_your_gp(self, context: JSON, lang: str,
                                                                 expected: str) -> None:
        """No organisation fills the GP role: the letter speaks of 'uw huisarts' / 'your GP'."""
        organisations = {**context["organisations"], "gp": {"reference": "", "name": "", "telecom": ""}}

        text = render_letter(LETTERS, "pzp_invitation", {**context, "organisations": organisations}, lang=lang)

        assert [expected] == [line for line in text.splitlines() if line.endswith("?")]

    def test_plain_text_is_not_html_escaped(self, context: JSON) -> None:
        """A name with an apostrophe stays as written in the plain-text letter."""
        text = render_letter(LETTERS, "pzp_invitation", {**context, "patient_name": "Anne-Marie d'Hondt"}, lang="nl")

        assert "Beste Anne-Marie d'Hondt," == text.splitlines()[0]


class TestHandoverSummary:
    """The summary that travels with every handover is an XHTML div stating the agreements unambiguously."""

    @pytest.mark.parametrize("lang", LANGUAGES)
    def test_the_summary_is_a_well_formed_xhtml_div(self, context: JSON, lang: str) -> None:
        """It parses as XML and its root is a div in the XHTML namespace (FHIR Narrative)."""
        html = render_letter(LETTERS, "handover_summary", context, lang=lang, html=True)

        assert f"{XHTML}div" == parse(html).tag

    def test_the_dutch_agreements(self, context: JSON) -> None:
        """Niet reanimeren, no ICU, hospital admission wanted, nothing agreed on the rest."""
        html = render_letter(LETTERS, "handover_summary", context, lang="nl", html=True)

        assert {"Reanimatie": "niet reanimeren", "IC-opname": "niet", "Ziekenhuisopname": "wel",
                "Beademing": "geen afspraak", "Antibiotica": "geen afspraak",
                "Bloedproducten": "geen afspraak"} == rows(html)

    def test_the_english_agreements(self, context: JSON) -> None:
        """Do not resuscitate, no ICU, hospital admission wanted, nothing agreed on the rest."""
        html = render_letter(LETTERS, "handover_summary", context, lang="en", html=True)

        assert {"Resuscitation": "do not resuscitate", "ICU admission": "no", "Hospital admission": "yes",
                "Ventilation": "no agreement", "Antibiotics": "no agreement",
                "Blood products": "no agreement"} == rows(html)

    def test_the_dutch_summary_has_goal_wishes_directive_relatives_and_lead(self, context: JSON) -> None:
        """Goal, place of death, the wish, the NR declaration, the daughter and the GP practice are all there."""
        text = text_of(render_letter(LETTERS, "handover_summary", context, lang="nl", html=True))

        assert [] == [part for part in (
            f"Overdracht proactieve zorgplanning: {PATIENT_NAME}", "Geboortedatum: 1941-07-14",
            "Palliatief: symptoomverlichting, geen levensverlenging", "Voorkeursplaats van overlijden: Thuis",
            "specific care wishes: Thuis blijven, met mijn kat", "Niet-reanimerenverklaring",
            "Els Janssen (daughter): 06-12345678", "Huisartsenpraktijk De Baandert, bereikbaar via 046-4512345",
        ) if part not in text]

    def test_the_english_summary_has_the_same_sections(self, context: JSON) -> None:
        """The English headings and fixed phrases."""
        text = text_of(render_letter(LETTERS, "handover_summary", context, lang="en", html=True))

        assert [] == [part for part in (
            f"Advance care planning handover: {PATIENT_NAME}", "Preferred place of death: Thuis",
            "Position on euthanasia: not recorded", "Huisartsenpraktijk De Baandert, reachable on 046-4512345",
        ) if part not in text]

    @pytest.mark.parametrize(("lang", "heading"), [("nl", "Overdracht proactieve zorgplanning: "),
                                                   ("en", "Advance care planning handover: ")])
    def test_names_with_markup_characters_are_escaped(self, context: JSON, lang: str, heading: str) -> None:
        """A name with '&', '<' and an apostrophe still gives well-formed XHTML that reads as written."""
        name = "M. d'Hondt & Zn <jr>"

        html = render_letter(LETTERS, "handover_summary", {**context, "patient_name": name}, lang=lang, html=True)

        assert heading + name == "".join(parse(html).find(f"{XHTML}h1").itertext())  # type: ignore[union-attr]

    def test_a_summary_without_agreements_says_so(self, context: JSON) -> None:
        """With nothing recorded every row says 'geen afspraak' and goal and directives 'not recorded'."""
        empty = {**context, "resources": {name: [] for name in context["resources"]}, "related_persons": []}

        html = render_letter(LETTERS, "handover_summary", empty, lang="nl", html=True)

        assert {"geen afspraak"} == set(rows(html).values())
        assert [] == [part for part in ("Niet vastgelegd.", "Geen.", "Geen vastgelegd.") if part not in text_of(html)]

    def test_a_missing_resource_list_is_an_error(self, context: JSON) -> None:
        """Strict undefined reaches inside: a context without the policy-goal list is refused."""
        resources = {k: v for k, v in context["resources"].items() if k != "policy-goal"}

        with pytest.raises(jinja2.UndefinedError, match="policy-goal"):
            render_letter(LETTERS, "handover_summary", {**context, "resources": resources}, lang="nl", html=True)


class TestLettersTheEngineWrites:
    """The engine stores the rendered letters: summaries as XHTML narratives, letters in the chosen language."""

    @pytest.fixture
    def harness(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[PathwayHarness]:
        """The region with every palliative pathway, no language chosen."""
        monkeypatch.delenv("ZORGPAD_LANGUAGE", raising=False)
        harness = harness_with_region()
        yield harness
        harness.close()

    def test_the_stored_summary_is_an_xhtml_narrative(self, harness: PathwayHarness) -> None:
        """The Composition of a share Task has a generated narrative: an XHTML div stating 'niet reanimeren'."""
        harness.add(surprise_question(False))
        harness.add(cpr_directive(resuscitate=False))
        harness.add(acp_procedure())
        complete(harness, "palliative-acp", "mark")
        complete(harness, "palliative-acp", "invite")

        harness.add(sharing_consent())

        (task,) = harness.tasks("share_ambulance")
        div = narrative(harness, task)
        assert (f"{XHTML}div", "niet reanimeren") == (parse(div).tag, rows(div)["Reanimatie"])

    def test_with_language_en_the_invitation_and_notices_are_english(self, harness: PathwayHarness,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
        """ZORGPAD_LANGUAGE=en: the invitation letter (language en) and the GP's reminder are in English."""
        monkeypatch.setenv("ZORGPAD_LANGUAGE", "en")
        harness.add(surprise_question(False))
        complete(harness, "palliative-acp", "mark")
        complete(harness, "palliative-acp", "invite")

        harness.advance(days(30))

        (letter,) = [c for c in harness.resources("Communication") if c["category"][0]["coding"][0]["code"] == "letter"]
        (reminder,) = harness.notices("reminder")
        assert (True, "en") == (letter["payload"][0]["contentString"].startswith(f"Dear {PATIENT_NAME},"),
                                letter["extension"][1]["valueCode"])
        assert (reminder.recipient, True) == (GP_ORG, reminder.text.startswith("Reminder: "))


VALUES = {"step": "PZP-gesprek voeren", "patient": PATIENT_NAME, "pathway": "Proactieve zorgplanning",
          "due": "2026-03-30T09:00:00Z", "owner": GP_ORG, "reason": "exit criterion deceased met by Patient/p1"}
KINDS = [kind.value for kind in NoticeKind]


class TestNotices:
    """Every kind of notice renders in Dutch and English and never with a gap."""

    @pytest.mark.parametrize("lang", LANGUAGES)
    @pytest.mark.parametrize("kind", KINDS)
    def test_every_notice_names_the_step_the_patient_and_the_pathway(self, kind: str, lang: str) -> None:
        """Each rendered notice contains the step, the patient and the pathway, with nothing left unfilled."""
        text = render_notice(kind, lang, **VALUES)

        assert ([], False) == ([v for k, v in VALUES.items() if k in ("step", "patient", "pathway") and v not in text],
                               "{{" in text)

    @pytest.mark.parametrize("lang", LANGUAGES)
    @pytest.mark.parametrize("kind", KINDS)
    def test_a_notice_without_the_patient_is_an_error(self, kind: str, lang: str) -> None:
        """Strict undefined: leaving out the patient raises instead of sending a notice with a gap."""
        with pytest.raises(jinja2.UndefinedError, match="patient"):
            render_notice(kind, lang, **{k: v for k, v in VALUES.items() if k != "patient"})

    @pytest.mark.parametrize(("kind", "lang", "expected"), [
        ("reminder", "nl", "Herinnering: 'PZP-gesprek voeren' voor Maria Janssen-Hermans (Proactieve zorgplanning) "
                           "is over tijd sinds 2026-03-30T09:00:00Z."),
        ("escalation", "en", "Escalation: 'PZP-gesprek voeren' for Maria Janssen-Hermans (Proactieve zorgplanning) "
                             "is still not done; it was due 2026-03-30T09:00:00Z. Owner: Organization/gp-sittard."),
        ("cancelled", "nl", "Vervallen: 'PZP-gesprek voeren' voor Maria Janssen-Hermans (Proactieve zorgplanning): "
                            "exit criterion deceased met by Patient/p1."),
        ("rejected", "en", "Rejected: 'PZP-gesprek voeren' for Maria Janssen-Hermans (Proactieve zorgplanning): "
                           "exit criterion deceased met by Patient/p1. Reassign the step or mark it not applicable."),
    ])
    def test_the_notice_wording(self, kind: str, lang: str, expected: str) -> None:
        """Spot checks of the full wording."""
        assert expected == render_notice(kind, lang, **VALUES)

    def test_the_two_languages_differ(self) -> None:
        """No notice is the same text in Dutch and English."""
        same = [kind for kind in KINDS if render_notice(kind, "nl", **VALUES) == render_notice(kind, "en", **VALUES)]

        assert [] == same

    def test_an_unknown_language_is_refused(self) -> None:
        """A notice in French is refused with the languages named."""
        with pytest.raises(ValueError, match="language must be one of nl, en") as raised:
            render_notice("reminder", "fr", **VALUES)

        assert "language must be one of nl, en (got 'fr')" == str(raised.value)
