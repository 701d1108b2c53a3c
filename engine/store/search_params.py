"""Which values of a resource are indexed for search, per resource type and search parameter.

Paths are dotted element paths; a choice element is written ``name[x]``. The FHIR interface builds its
search on these tables; the engine uses them to find a patient's resources that meet criteria.
"""

from __future__ import annotations

from typing import Literal

Kind = Literal["token", "reference", "date"]

#: Parameters every resource type has (beyond _id and _lastUpdated, which are columns).
COMMON: dict[str, tuple[Kind, tuple[str, ...]]] = {
    "identifier": ("token", ("identifier",)),
    "status": ("token", ("status",)),
    "code": ("token", ("code",)),
    "category": ("token", ("category",)),
    "patient": ("reference", ("subject", "patient", "for", "beneficiary")),
    "subject": ("reference", ("subject", "for")),
    "encounter": ("reference", ("encounter", "context")),
    "_tag": ("token", ("meta.tag",)),
    "_security": ("token", ("meta.security",)),
    "_profile": ("token", ("meta.profile",)),
}

#: Extra or different parameters per resource type.
BY_TYPE: dict[str, dict[str, tuple[Kind, tuple[str, ...]]]] = {
    "Patient": {"general-practitioner": ("reference", ("generalPractitioner",)),
                "birthdate": ("date", ("birthDate",))},
    "Observation": {"date": ("date", ("effective[x]",)), "value-concept": ("token", ("valueCodeableConcept",))},
    "Condition": {"onset-date": ("date", ("onset[x]",)), "clinical-status": ("token", ("clinicalStatus",)),
                  "recorded-date": ("date", ("recordedDate",))},
    "Procedure": {"date": ("date", ("performed[x]",)), "performer": ("reference", ("performer.actor",))},
    "Encounter": {"date": ("date", ("period",)), "type": ("token", ("type",)), "class": ("token", ("class",)),
                  "reason-reference": ("reference", ("reasonReference",))},
    "Consent": {"scope": ("token", ("scope",)), "date": ("date", ("dateTime",)),
                "actor": ("reference", ("provision.actor.reference",))},
    "Goal": {"lifecycle-status": ("token", ("lifecycleStatus",)), "start-date": ("date", ("start[x]",)),
             "description": ("token", ("description",))},
    "Task": {"owner": ("reference", ("owner",)), "requester": ("reference", ("requester",)),
             "based-on": ("reference", ("basedOn",)), "focus": ("reference", ("focus",)),
             "business-status": ("token", ("businessStatus",)), "authored-on": ("date", ("authoredOn",)),
             "period": ("date", ("executionPeriod",))},
    "CarePlan": {"instantiates-canonical": ("token", ("instantiatesCanonical",)),
                 "date": ("date", ("period",))},
    "CareTeam": {"participant": ("reference", ("participant.member", "participant.onBehalfOf"))},
    "Communication": {"about": ("reference", ("about",)), "recipient": ("reference", ("recipient",)),
                      "sent": ("date", ("sent",))},
    "CommunicationRequest": {"authored": ("date", ("authoredOn",)), "requester": ("reference", ("requester",)),
                             "recipient": ("reference", ("recipient",))},
    "DeviceUseStatement": {"device": ("reference", ("device",))},
    "Device": {"type": ("token", ("type",))},
    "QuestionnaireResponse": {"questionnaire": ("token", ("questionnaire",)),
                              "authored": ("date", ("authored",))},
    "DocumentReference": {"type": ("token", ("type",)), "date": ("date", ("date",))},
    "Composition": {"type": ("token", ("type",)), "date": ("date", ("date",))},
    "PractitionerRole": {"organization": ("reference", ("organization",)),
                         "practitioner": ("reference", ("practitioner",))},
    "Endpoint": {"organization": ("reference", ("managingOrganization",)),
                 "connection-type": ("token", ("connectionType",))},
    "Subscription": {"criteria": ("token", ("criteria",))},
    "Provenance": {"target": ("reference", ("target",)), "recorded": ("date", ("recorded",))},
}


def params_for(resource_type: str) -> dict[str, tuple[Kind, tuple[str, ...]]]:
    """Every indexed search parameter of ``resource_type``."""
    merged = dict(COMMON)
    merged.update(BY_TYPE.get(resource_type, {}))
    return merged
