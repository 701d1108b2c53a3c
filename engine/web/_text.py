"""The dashboard's words, in Dutch (the default) and English (step states and roles: :mod:`..render.words`)."""

from __future__ import annotations

from typing import Any

from zorgpad.engine.render.words import STATES

TEXT: dict[str, dict[str, Any]] = {
    "nl": {
        "app": "Zorgpad coördinatie", "worklist": "Werklijst", "catalogue": "Zorgpaden", "sign_in": "Inloggen",
        "sign_out": "Uitloggen", "token": "Toegangstoken (organisatie of beheerder)", "overdue": "Te laat",
        "due_soon": "Binnenkort", "handovers":
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
        "username": "Gebruikersnaam", "password": "Wachtwoord", "sign_in_token": "Inloggen met een toegangstoken",
        "login_error": {"refused": "Onbekende gebruikersnaam of onjuist wachtwoord. Na 5 mislukte pogingen op rij "
                                   "blijft een account 15 minuten dicht.", "locked":
                        "Te veel mislukte pogingen: dit account is 15 minuten geblokkeerd.", "missing":
                        "Vul een gebruikersnaam en wachtwoord in.", "token": "Onbekend of ingetrokken token."},
        "busy": "Er wordt nu op veel plaatsen tegelijk ingelogd; probeer het over een paar seconden opnieuw.",
        "change_password": "Wachtwoord wijzigen", "current_password": "Huidig wachtwoord",
        "new_password": "Nieuw wachtwoord", "repeat_password": "Nieuw wachtwoord herhalen",
        "password_rules": "Minstens {n} tekens, niet gelijk aan de gebruikersnaam.",
        "password_error": {"current": "Het huidige wachtwoord klopt niet.", "locked":
                           "Te veel mislukte pogingen: dit account is 15 minuten geblokkeerd.", "repeat":
                           "De twee nieuwe wachtwoorden zijn niet gelijk.", "rules":
                           "Het nieuwe wachtwoord voldoet niet aan de eisen."},
        "password_changed": "Uw wachtwoord is gewijzigd; andere sessies van dit account zijn afgemeld.",
        "audit_log": "Logboek",
        "audit_intro": "Wie wanneer welke gegevens inzag of wijzigde (NEN 7513), nieuwste eerst.",
        "audit_intro_org": "Wat uw organisatie deed, en wie de gegevens van uw patiënten inzag of wijzigde (NEN 7513), "
                           "nieuwste eerst.",
        "about": "Betreft", "outcome": "Uitkomst", "date_from": "Vanaf", "date_to": "Tot en met",
        "pages": "Pagina's", "page": "Pagina", "previous": "Vorige", "next": "Volgende",
        "outcomes": {"0": "gelukt", "4": "geweigerd of mislukt", "8": "fout", "12": "ernstige fout"},
        "state": STATES["nl"],
        "event": {"write": "gegevens ontvangen", "Enrol": "ingeschreven", "ResourceChanged": "gegevens verwerkt",
                  "TaskStatusChanged": "taakstatus gewijzigd", "TimerFired": "termijn of herinnering",
                  "StepOverride": "coördinator greep in", "Withdraw": "uitgeschreven", "dead-letter":
                  "bericht niet afgeleverd", "outbox-retry": "opnieuw versturen", "enrol-reason":
                  "reden van inschrijving", "migrate": "naar andere versie", "login": "ingelogd", "logout": "uitgelogd",
                  "password": "wachtwoord gewijzigd"},
    },
    "en": {
        "app": "Zorgpad coordination", "worklist": "Worklist", "catalogue": "Pathways", "sign_in": "Sign in",
        "sign_out": "Sign out", "token": "Access token (organisation or administrator)", "overdue": "Overdue",
        "due_soon": "Due soon", "handovers":
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
        "username": "Username", "password": "Password", "sign_in_token": "Sign in with an access token",
        "login_error": {"refused": "Unknown username or wrong password. After 5 failed attempts in a row an "
                                   "account stays closed for 15 minutes.", "locked":
                        "Too many failed attempts: this account is locked for 15 minutes.", "missing":
                        "Enter a username and a password.", "token": "Unknown or revoked token."},
        "busy": "Many people are signing in at once; try again in a few seconds.",
        "change_password": "Change password", "current_password": "Current password",
        "new_password": "New password", "repeat_password": "Repeat the new password",
        "password_rules": "At least {n} characters, not the same as the username.",
        "password_error": {"current": "The current password is wrong.", "locked":
                           "Too many failed attempts: this account is locked for 15 minutes.", "repeat":
                           "The two new passwords differ.", "rules": "The new password does not meet the rules."},
        "password_changed": "Your password has been changed; other sessions of this account have been signed out.",
        "audit_log": "Audit log", "audit_intro": "Who saw or changed which data when (NEN 7513), newest first.",
        "audit_intro_org": "What your organisation did, and who saw or changed your patients' data (NEN 7513), "
                           "newest first.",
        "about": "About", "outcome": "Outcome", "date_from": "From", "date_to": "Up to",
        "pages": "Pages", "page": "Page", "previous": "Previous", "next": "Next",
        "outcomes": {"0": "done", "4": "refused or failed", "8": "error", "12": "serious error"},
        "state": STATES["en"],
        "event": {"write": "data received", "Enrol": "enrolled", "ResourceChanged": "data processed",
                  "TaskStatusChanged": "Task status changed", "TimerFired": "deadline or reminder",
                  "StepOverride": "coordinator intervened", "Withdraw": "withdrawn", "dead-letter":
                  "delivery dead-lettered", "outbox-retry": "delivery retried", "enrol-reason": "reason for enrolment",
                  "migrate": "moved to another version", "login": "signed in", "logout": "signed out",
                  "password": "password changed"},
    },
}
