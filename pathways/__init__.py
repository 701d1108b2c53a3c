"""The palliative pathways of South Limburg, declared with the engine DSL.

``REGISTRY`` lists every pathway version Zorgpad ships; the ``zorgpad.pathways`` entry point points here.
"""

from __future__ import annotations

from zorgpad.engine import Pathway

REGISTRY: tuple[type[Pathway], ...] = ()

__all__ = ["REGISTRY"]
