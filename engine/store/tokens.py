"""Bearer tokens: created by `zorgpad token create`, stored hashed, looked up per request."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from sqlalchemy import bindparam
from sqlmodel import Session, col, select
from zorgpad.engine.errors import ConfigurationError
from zorgpad.engine.store.accounts import end_sessions
from zorgpad.engine.store.tables import ApiToken

PREFIX = "zp_"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, now: datetime, *, organisation: str | None = None, admin: bool = False,
                 name: str | None = None) -> str:
    """A new token for ``organisation`` (``Organization/id``) or an administrator; returns the secret once."""
    if admin == (organisation is not None):
        raise ConfigurationError("a token is either for one organisation or for an administrator")
    if organisation is not None and (not organisation.startswith("Organization/") or organisation.count("/") != 1
                                     or not organisation.split("/", 1)[1]):
        raise ConfigurationError(f"expected an organisation reference like Organization/gp-1 (got {organisation!r})")
    token = PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(token_hash=_hash(token), name=name or (organisation or "admin"),
                         organisation=organisation, admin=admin, created_at=now))
    return token


def tokens(session: Session) -> list[ApiToken]:
    """Every token record (live and revoked), oldest first; the secrets themselves are never stored."""
    return list(session.exec(select(ApiToken).order_by(col(ApiToken.id))).all())


def revoke_token(session: Session, token_id: int, now: datetime) -> ApiToken:
    """Revoke a token: the FHIR interface refuses it at once and its dashboard sessions end."""
    record = session.get(ApiToken, token_id)
    if record is None:
        raise ConfigurationError(f"there is no token with id {token_id}")
    if record.revoked_at is None:
        record.revoked_at = now
        session.add(record)
    end_sessions(session, token_id=token_id)
    return record


def find_token(session: Session, token: str) -> ApiToken | None:
    """The live token record for a presented secret, if any."""
    return session.exec(_LIVE_TOKEN, params={"token_hash": _hash(token)}).first()


_LIVE_TOKEN = select(ApiToken).where(ApiToken.token_hash == bindparam("token_hash"), col(ApiToken.revoked_at).is_(None))
