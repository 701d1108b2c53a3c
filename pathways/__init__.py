"""The palliative pathways of South Limburg, declared with the engine DSL.

``REGISTRY`` lists every pathway version Zorgpad ships; the ``zorgpad.pathways`` entry point points here.
"""

from __future__ import annotations

from zorgpad.engine import Pathway
from zorgpad.pathways.acp import AdvanceCarePlanning, AdvanceCarePlanningV1
from zorgpad.pathways.after_death import AfterDeath
from zorgpad.pathways.dying_phase import DyingPhase
from zorgpad.pathways.transmural import TransmuralDischarge

REGISTRY: tuple[type[Pathway], ...] = (AdvanceCarePlanningV1, AdvanceCarePlanning, TransmuralDischarge, DyingPhase,
                                       AfterDeath)

__all__ = ["REGISTRY", "AdvanceCarePlanning", "AdvanceCarePlanningV1", "AfterDeath", "DyingPhase",
           "TransmuralDischarge"]
