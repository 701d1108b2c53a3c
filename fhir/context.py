"""What every FHIR interaction needs: the engine, the open transaction, the caller and the time."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlmodel import Session
from zorgpad.engine.runtime import Engine
from zorgpad.fhir.access import Principal, Scope


@dataclass
class FHIRContext:
    """One request (or one Bundle entry) being served inside one database transaction."""

    engine: Engine
    session: Session
    principal: Principal
    now: datetime
    base_url: str
    strict: bool = False
    scope: Scope = field(init=False)

    def __post_init__(self) -> None:
        self.scope = Scope(self.principal)

    def url(self, path: str) -> str:
        """An absolute URL under the FHIR base."""
        return f"{self.base_url.rstrip('/')}/{path.lstrip('/')}"
