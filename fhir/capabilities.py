"""What this server supports, in one place: the routes consult it, and /metadata is generated from it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from zorgpad.engine.store.search_params import params_for

FHIR_VERSION = "4.0.1"
READ_WRITE = ("read", "vread", "update", "patch", "delete", "history-instance", "create", "search-type")
READ_ONLY = ("read", "vread", "search-type")


@dataclass(frozen=True)
class TypeSupport:
    """One resource type's interactions and search parameters."""

    interactions: tuple[str, ...] = READ_WRITE
    documentation: str = ""
    extra_search: tuple[tuple[str, str, str], ...] = ()  # (name, type, documentation)
    conditional_create: bool = True


_DOCS = {
    "PlanDefinition": "The registered pathways, exported (read-only). Enrol a patient with $apply.",
    "AuditEvent": "Every read and write of patient data (read-only).",
    "CarePlan": "One per enrolment; instantiatesCanonical is the pathway's url|version.",
    "Task": "One per step round. The owner updates status (PUT/PATCH); the engine owns the state machine.",
    "Subscription": "rest-hook only; payload empty (no payload), id-only or full-resource (R4 backport "
                    "backport-payload-content extension), sent as backport notification Bundles.",
    "Endpoint": "An organisation's notification address for notified-pull handovers (connectionType "
                "https://zorgpad.nl/fhir/CodeSystem/endpoint-connection-type|notified-pull, else hl7-fhir-rest). "
                "Only the managing organisation writes it.",
}

RESOURCE_TYPES: dict[str, TypeSupport] = {
    name: TypeSupport(documentation=_DOCS.get(name, ""))
    for name in (
        "Patient", "Practitioner", "PractitionerRole", "Organization", "RelatedPerson", "CareTeam", "Endpoint",
        "Condition", "Observation", "Procedure", "Encounter", "Consent", "Goal", "CommunicationRequest",
        "Communication", "QuestionnaireResponse", "Questionnaire", "Device", "DeviceUseStatement",
        "Composition", "DocumentReference", "CarePlan", "Task", "Subscription", "Provenance",
        "MessageHeader", "Bundle", "Binary", "List",
        # What GP and hospital systems send besides (the Synthea bundles carry all of these).
        "AllergyIntolerance", "Claim", "DiagnosticReport", "ExplanationOfBenefit", "ImagingStudy", "Immunization",
        "Medication", "MedicationRequest", "MedicationAdministration", "Location", "HealthcareService",
    )
}
RESOURCE_TYPES["PlanDefinition"] = TypeSupport(READ_ONLY, _DOCS["PlanDefinition"], conditional_create=False,
                                               extra_search=(("url", "uri", "canonical URL"),
                                                             ("version", "token", "pathway version")))
RESOURCE_TYPES["AuditEvent"] = TypeSupport(READ_ONLY, _DOCS["AuditEvent"], conditional_create=False)

#: Search parameters every type has besides its indexed ones.
RESULT_PARAMS = ("_count", "_summary", "_include", "_revinclude", "_sort", "_total", "_elements", "_format",
                 "_offset")
COMMON_SEARCH = (("_id", "token", "logical id"), ("_lastUpdated", "date", "when last changed"))


def search_params(resource_type: str) -> dict[str, str]:
    """Search parameter name → FHIR search type, for one resource type."""
    found = {name: kind for name, kind, _ in COMMON_SEARCH}
    found.update({name: kind for name, (kind, _) in params_for(resource_type).items()})
    found.update({name: kind for name, kind, _ in RESOURCE_TYPES[resource_type].extra_search})
    return found


OPERATIONS = (
    ("process-message", "http://hl7.org/fhir/OperationDefinition/MessageHeader-process-message", "system"),
    ("apply", "http://hl7.org/fhir/OperationDefinition/PlanDefinition-apply", "PlanDefinition"),
)


def capability_statement(base_url: str, now: str) -> dict[str, Any]:
    """The CapabilityStatement that tells the truth about this server."""
    resources = []
    for name, support in sorted(RESOURCE_TYPES.items()):
        entry: dict[str, Any] = {
            "type": name,
            "interaction": [{"code": code} for code in support.interactions],
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": "update" in support.interactions,
            "conditionalCreate": support.conditional_create and "create" in support.interactions,
            "conditionalUpdate": False,
            "conditionalDelete": "not-supported",
            "searchInclude": ["*"],
            "searchParam": [{"name": p, "type": t} for p, t in sorted(search_params(name).items())],
        }
        if support.documentation:
            entry["documentation"] = support.documentation
        if name == "PlanDefinition":
            entry["operation"] = [{"name": "apply", "definition": OPERATIONS[1][1]}]
        resources.append(entry)
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": now,
        "publisher": "Zorgpad",
        "kind": "instance",
        "software": {"name": "Zorgpad", "version": "0.1.0"},
        "implementation": {"description": "Zorgpad palliative care-pathway engine", "url": base_url},
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "security": {"cors": False, "description": "Bearer tokens (zorgpad token create); organisations "
                                                       "see only the patients they take part in."},
            "resource": resources,
            "interaction": [{"code": "transaction"}, {"code": "batch"}],
            "operation": [{"name": OPERATIONS[0][0], "definition": OPERATIONS[0][1]}],
        }],
    }
