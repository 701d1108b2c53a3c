"""The dashboard's words, in Dutch (the default) and English."""

from __future__ import annotations

from typing import Any

TEXT: dict[str, dict[str, Any]] = {
    "nl": {
        "app": "Zorgpad coördinatie", "worklist": "Werklijst", "catalogue": "Zorgpaden", "sign_in": "Inloggen",
        "sign_out": "Uitloggen", "token": "Toegangstoken (organisatie of beheerder)", "bad_token":
        "Onbekend of ingetrokken token.", "overdue": "Te laat", "due_soon": "Binnenkort", "handovers":
        "Overdrachten wachten op ontvanger", "escalations": "Escalaties", "dead": "Niet-afgeleverde berichten",
        "patient": "Patiënt", "step": "Stap", "pathway": "Zorgpad", "owner": "Eigenaar", "role": "Rol",
        "due": "Uiterlijk",
        "late": "dagen te laat", "organisation": "Organisatie", "all": "alle", "filter": "Filteren",
        "reset": "Wissen", "none": "Niets.", "refreshed": "Bijgewerkt", "enrolments": "Inschrijvingen",
        "timeline": "Tijdlijn", "acp": "Proactieve zorgplanning in één oogopslag", "cpr": "Reanimeren",
        "icu": "IC-opname", "hospital": "Ziekenhuisopname", "ventilation": "Beademing",
        "place_of_death": "Gewenste plaats van overlijden", "representative": "Vertegenwoordiger / contactpersoon",
        "lead": "Hoofdbehandelaar", "last_conversation": "Laatste gesprek", "yes": "ja", "no": "nee",
        "unknown": "niet vastgelegd", "status": "Status", "when": "Wanneer", "who": "Wie", "what": "Wat",
        "actions": "Acties", "complete": "Afronden", "skip": "Niet van toepassing", "reassign": "Overdragen",
        "retry": "Opnieuw versturen", "reason": "Reden (verplicht)", "confirm": "Bevestigen", "cancel": "Annuleren",
        "confirm_title": "Bevestig", "to_org": "Naar organisatie", "enrol": "Inschrijven in zorgpad",
        "version": "Versie", "steps": "Stappen", "timing": "Termijn", "after": "Na", "error": "Dat lukte niet",
        "not_found": "Niet gevonden", "count": "aantal", "attempts": "pogingen", "last_error": "laatste fout",
        "done": "Gelukt", "language": "English", "started": "gestart", "ended": "beëindigd",
        "skip_link": "Naar de inhoud",
        "state": {"pending": "wacht", "ready": "open", "in-progress": "bezig", "completed": "klaar",
                  "skipped": "n.v.t.", "cancelled": "geannuleerd", "failed": "mislukt", "overdue": "te laat",
                  "escalated": "geëscaleerd", "scheduled": "gepland", "active": "actief", "exited": "beëindigd",
                  "withdrawn": "teruggetrokken"},
        "event": {"write": "gegevens ontvangen", "Enrol": "ingeschreven", "ResourceChanged": "gegevens verwerkt",
                  "TaskStatusChanged": "taakstatus gewijzigd", "TimerFired": "termijn of herinnering",
                  "StepOverride": "coördinator greep in", "Withdraw": "uitgeschreven", "dead-letter":
                  "bericht niet afgeleverd", "outbox-retry": "opnieuw versturen", "enrol-reason":
                  "reden van inschrijving", "migrate": "naar andere versie"},
    },
    "en": {
        "app": "Zorgpad coordination", "worklist": "Worklist", "catalogue": "Pathways", "sign_in": "Sign in",
        "sign_out": "Sign out", "token": "Access token (organisation or administrator)", "bad_token":
        "Unknown or revoked token.", "overdue": "Overdue", "due_soon": "Due soon", "handovers":
        "Handovers waiting for the receiver", "escalations": "Escalations", "dead": "Dead-lettered deliveries",
        "patient": "Patient", "step": "Step", "pathway": "Pathway", "owner": "Owner", "role": "Role", "due": "Due",
        "late": "days late", "organisation": "Organisation", "all": "all", "filter": "Filter", "reset": "Clear",
        "none": "Nothing.", "refreshed": "Refreshed", "enrolments": "Enrolments", "timeline": "Timeline",
        "acp": "Advance care planning at a glance", "cpr": "Resuscitation (CPR)", "icu": "ICU admission",
        "hospital": "Hospital admission", "ventilation": "Ventilation", "place_of_death": "Preferred place of death",
        "representative": "Representative / contact person", "lead": "Lead clinician",
        "last_conversation": "Last conversation", "yes": "yes", "no": "no", "unknown": "not recorded",
        "status": "Status", "when": "When", "who": "Who", "what": "What", "actions": "Actions",
        "complete": "Mark done", "skip": "Not applicable", "reassign": "Reassign", "retry": "Retry delivery",
        "reason": "Reason (required)", "confirm": "Confirm", "cancel": "Cancel", "confirm_title": "Confirm",
        "to_org": "To organisation", "enrol": "Enrol in pathway", "version": "Version", "steps": "Steps",
        "timing": "Timing", "after": "After", "error": "That did not work", "not_found": "Not found",
        "count": "count", "attempts": "attempts", "last_error": "last error", "done": "Done",
        "language": "Nederlands", "started": "started", "ended": "ended", "skip_link": "Skip to content",
        "state": {"pending": "waiting", "ready": "open", "in-progress": "in progress", "completed": "done",
                  "skipped": "not applicable", "cancelled": "cancelled", "failed": "failed", "overdue": "overdue",
                  "escalated": "escalated", "scheduled": "scheduled", "active": "active", "exited": "exited",
                  "withdrawn": "withdrawn"},
        "event": {"write": "data received", "Enrol": "enrolled", "ResourceChanged": "data processed",
                  "TaskStatusChanged": "Task status changed", "TimerFired": "deadline or reminder",
                  "StepOverride": "coordinator intervened", "Withdraw": "withdrawn", "dead-letter":
                  "delivery dead-lettered", "outbox-retry": "delivery retried", "enrol-reason": "reason for enrolment",
                  "migrate": "moved to another version"},
    },
}
