"""Care roles: who owns a step. A role resolves to an organisation per patient at run time."""

from __future__ import annotations

from dataclasses import dataclass

ROLE_SYSTEM = "https://zorgpad.nl/fhir/CodeSystem/care-role"


@dataclass(frozen=True)
class Role:
    """A role in a patient's care, such as the GP practice or the out-of-hours GP post.

    ``code`` is the code in :data:`ROLE_SYSTEM`; a CareTeam participant carrying that code in
    ``CareTeam.participant.role`` fills the role for the patient.
    """

    code: str
    display: str

    def __str__(self) -> str:
        return self.code


GP = Role("gp", "Huisarts (GP practice)")
HOME_CARE = Role("home-care", "Thuiszorg / wijkverpleging (home care)")
HOSPITAL = Role("hospital", "Ziekenhuis (hospital)")
OUT_OF_HOURS = Role("out-of-hours", "Huisartsenpost (out-of-hours GP post)")
AMBULANCE = Role("ambulance", "Ambulancedienst (ambulance service)")
COORDINATOR = Role("coordinator", "Coördinator palliatieve zorg (care coordinator)")

#: The roles every pathway may use without declaring them.
STANDARD_ROLES: tuple[Role, ...] = (GP, HOME_CARE, HOSPITAL, OUT_OF_HOURS, AMBULANCE, COORDINATOR)
