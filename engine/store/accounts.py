"""Dashboard accounts and sign-in sessions.

**Accounts** are for people: a username and a password, for one organisation (its coordinators, GP
practice staff, …) or as an administrator. Passwords are stored only as scrypt hashes (the standard
library's ``hashlib.scrypt``, with OWASP's parameters N=2^15, r=8, p=3; the parameters are kept in each
hash, so they can be raised later without breaking stored ones). Five failed sign-ins in a row lock an
account for 15 minutes; attempts under way when it locks are refused too. The scrypt work runs outside any
database transaction, so a sign-in or a new password never holds SQLite's write lock, and at most
``SCRYPT_AT_ONCE`` checks run at a time (each takes 32 MiB and a core for a few tenths of a second): a flood
of sign-ins is answered "busy" instead of starving the FHIR interface of threads and memory.

**Sessions** are what the dashboard's cookie names: a random secret, stored only as its SHA-256 hash, for
an account or for a bearer token (signing in with a token no longer puts the token itself in the cookie).
A session ends when the user signs out, after ``idle`` without activity (the worklist's own refreshes do
not count: an unattended screen signs itself out), ``lifetime`` after sign-in, or as soon as its account
is disabled or gets a new password, or its token is revoked.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from sqlalchemy import delete, or_, update
from sqlmodel import Session, col, select
from zorgpad.engine.errors import BusyError, ConfigurationError
from zorgpad.engine.store.tables import Account, ApiToken, DashboardSession

#: Five failed sign-ins in a row lock the account for LOCKOUT.
MAX_FAILED_LOGINS = 5
LOCKOUT = timedelta(minutes=15)
MIN_PASSWORD = 12
MAX_PASSWORD = 1024
#: A session's last activity is written at most this often (not on every page view), and at most every tenth
#: of the idle timeout: a session ends between 0.9 and 1 idle timeout after the last activity.
_TOUCH_EVERY = timedelta(seconds=60)
_USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{1,63}")
_SCRYPT = {"n": 2**15, "r": 8, "p": 3}
_SCRYPT_MAXMEM = 128 * 1024 * 1024
#: Password checks running at once, and how long a check waits for its turn before it is refused as busy.
SCRYPT_AT_ONCE = 2
_SCRYPT_WAIT_SECONDS = 3.0
_scrypt_turns = threading.BoundedSemaphore(SCRYPT_AT_ONCE)


# -- passwords ---------------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _scrypt(password: str, salt: bytes, *, n: int, r: int, p: int, dklen: int) -> bytes:
    """scrypt, at most ``SCRYPT_AT_ONCE`` at a time; BusyError when no turn comes within a few seconds."""
    if not _scrypt_turns.acquire(timeout=_SCRYPT_WAIT_SECONDS):
        raise BusyError("too many sign-ins at once; try again in a moment")
    try:
        return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_SCRYPT_MAXMEM, dklen=dklen)
    finally:
        _scrypt_turns.release()


def hash_password(password: str) -> str:
    """``scrypt$n$r$p$salt$hash`` (base64) for ``password``."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, dklen=32, **_SCRYPT)
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` is the one ``stored`` was made from (constant-time comparison)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        found = _scrypt(password, base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(found, expected)


@functools.cache
def _decoy_hash() -> str:
    """A hash to check unknown usernames against, so that they take as long as known ones."""
    return hash_password(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class NewPassword:
    """A password that meets the rules, already hashed: made before the transaction that stores it."""

    hash: str

    @classmethod
    def of(cls, password: str, username: str) -> NewPassword:
        """Check ``password`` for ``username`` against the rules and hash it (ConfigurationError if it fails)."""
        check_password(password, normalise_username(username))
        return cls(hash_password(password))


def check_password(password: str, username: str) -> None:
    """Raise ConfigurationError if ``password`` may not be used."""
    if len(password) < MIN_PASSWORD:
        raise ConfigurationError(f"a password needs at least {MIN_PASSWORD} characters (got {len(password)})")
    if len(password) > MAX_PASSWORD:
        raise ConfigurationError(f"a password may have at most {MAX_PASSWORD} characters (got {len(password)})")
    if password.strip().lower() == username.lower():
        raise ConfigurationError("the password may not be the username")


def normalise_username(username: str) -> str:
    """The username as stored (lower case), or ConfigurationError naming what is wrong with it."""
    name = username.strip().lower()
    if not _USERNAME.fullmatch(name):
        raise ConfigurationError("a username has 2 to 64 characters: letters, digits, '.', '_' or '-', starting "
                                 f"with a letter or digit (got {username!r})")
    return name


# -- accounts ----------------------------------------------------------------------------------------


def _organisation(reference: str | None) -> str | None:
    if reference is None:
        return None
    reference = reference if reference.startswith("Organization/") else f"Organization/{reference}"
    if reference.count("/") != 1 or not reference.split("/", 1)[1]:
        raise ConfigurationError(f"expected an organisation like gp-1 or Organization/gp-1 (got {reference!r})")
    return reference


def create_account(session: Session, now: datetime, username: str, password: str | NewPassword, *,
                   organisation: str | None = None, admin: bool = False, display_name: str | None = None) -> Account:
    """A new account for ``organisation`` (``gp-1`` or ``Organization/gp-1``) or an administrator. Pass a
    :class:`NewPassword` made before the transaction where it matters that scrypt does not hold it up."""
    if admin == (organisation is not None):
        raise ConfigurationError("an account is either for one organisation or for an administrator")
    name = normalise_username(username)
    hashed = password if isinstance(password, NewPassword) else NewPassword.of(password, name)
    if find_account(session, name) is not None:
        raise ConfigurationError(f"the username {name!r} is taken")
    account = Account(username=name, display_name=(display_name or name).strip()[:128] or name,
                      organisation=_organisation(organisation), admin=admin, password_hash=hashed.hash,
                      created_at=now, password_changed_at=now)
    session.add(account)
    session.flush()
    return account


def find_account(session: Session, username: str) -> Account | None:
    """The account with this username (any case), if there is one."""
    return session.exec(select(Account).where(Account.username == username.strip().lower())).first()


def _existing(session: Session, username: str) -> Account:
    account = find_account(session, username)
    if account is None:
        raise ConfigurationError(f"there is no account {username.strip().lower()!r}")
    return account


def set_password(session: Session, now: datetime, username: str, password: str | NewPassword) -> Account:
    """Give the account a new password: it is unlocked and every session it had ends (a :class:`NewPassword`
    made before the transaction keeps scrypt out of it)."""
    account = _existing(session, username)
    hashed = password if isinstance(password, NewPassword) else NewPassword.of(password, account.username)
    account.password_hash = hashed.hash
    account.password_changed_at = now
    account.failed_logins = 0
    account.locked_until = None
    session.add(account)
    end_sessions(session, account_id=account.id)
    return account


def set_disabled(session: Session, now: datetime, username: str, disabled: bool) -> Account:
    """Disable the account (its sessions end) or enable it again (unlocked)."""
    account = _existing(session, username)
    account.disabled_at = now if disabled else None
    account.failed_logins = 0
    account.locked_until = None
    session.add(account)
    if disabled:
        end_sessions(session, account_id=account.id)
    return account


def accounts(session: Session) -> list[Account]:
    """Every account, by username."""
    return list(session.exec(select(Account).order_by(col(Account.username))).all())


class SignIn(Enum):
    """The outcome of a password sign-in."""

    OK = "ok"  # the password matched an enabled, unlocked account
    REFUSED = "refused"  # unknown username or wrong password
    LOCKED = "locked"  # too many failed attempts: wait for the lock-out to end
    DISABLED = "disabled"  # the account exists but is switched off


@dataclass(frozen=True)
class PasswordCheck:
    """What a sign-in attempt found, from :func:`check_sign_in`; :func:`record_sign_in` stores it.
    ``username`` is safe to log: a username, or ``(invalid)`` when what was typed cannot be one."""

    username: str
    outcome: SignIn
    account: Account | None


def check_sign_in(load: Callable[[str], Account | None], username: str, password: str, now: datetime) -> PasswordCheck:
    """Check a username and password. ``load`` reads the account (in its own short transaction); the
    scrypt work happens here, outside any transaction."""
    try:
        name = normalise_username(username)
    except ConfigurationError:
        name = "(invalid)"  # what was typed is not a username: it goes into the audit log as this
    account = load(name) if name != "(invalid)" else None
    matches = verify_password(password, account.password_hash if account is not None else _decoy_hash())
    if account is None:
        return PasswordCheck(name, SignIn.REFUSED, None)
    if account.disabled_at is not None:
        return PasswordCheck(name, SignIn.DISABLED, account)
    if account.locked_until is not None and account.locked_until > now:
        return PasswordCheck(name, SignIn.LOCKED, account)
    return PasswordCheck(name, SignIn.OK if matches else SignIn.REFUSED, account)


def record_sign_in(session: Session, check: PasswordCheck, now: datetime) -> SignIn:
    """Count a failed attempt (locking the account at the limit) or clear the count; return the outcome,
    which becomes LOCKED when this failure reached the limit."""
    if check.account is None or check.outcome in (SignIn.DISABLED, SignIn.LOCKED):
        return check.outcome
    # The check read the account before scrypt ran; each statement here applies only to an account that is
    # still enabled and not locked now, so attempts under way when the lock came are refused as well.
    open_now = update(Account).where(
        col(Account.id) == check.account.id, col(Account.disabled_at).is_(None),
        or_(col(Account.locked_until).is_(None), col(Account.locked_until) <= now))
    if check.outcome is SignIn.OK:
        cleared = session.execute(open_now.values(failed_logins=0, locked_until=None).returning(col(Account.id)))
        return SignIn.OK if cleared.first() is not None else SignIn.LOCKED
    counted = session.execute(open_now.values(failed_logins=col(Account.failed_logins) + 1)
                              .returning(col(Account.failed_logins))).scalar_one_or_none()
    if counted is None:
        return SignIn.LOCKED
    if counted >= MAX_FAILED_LOGINS:
        session.execute(open_now.values(failed_logins=0, locked_until=now + LOCKOUT))
        return SignIn.LOCKED
    return SignIn.REFUSED


# -- sessions ----------------------------------------------------------------------------------------


def _setting(name: str, default: timedelta, unit: timedelta, unit_name: str) -> timedelta:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number of {unit_name} (got {raw!r})") from None
    if not 0 < value < 1e6:
        raise ConfigurationError(f"{name} must be more than 0 and less than a million (got {raw!r})")
    return value * unit


@dataclass(frozen=True)
class SessionPolicy:
    """How long a dashboard session lasts: ``idle`` without activity, ``lifetime`` in all."""

    idle: timedelta = timedelta(minutes=30)
    lifetime: timedelta = timedelta(hours=12)

    @classmethod
    def from_environment(cls) -> SessionPolicy:
        """``ZORGPAD_SESSION_IDLE_MINUTES`` (30) and ``ZORGPAD_SESSION_HOURS`` (12)."""
        defaults = cls()
        return cls(idle=_setting("ZORGPAD_SESSION_IDLE_MINUTES", defaults.idle, timedelta(minutes=1), "minutes"),
                   lifetime=_setting("ZORGPAD_SESSION_HOURS", defaults.lifetime, timedelta(hours=1), "hours"))


@dataclass(frozen=True)
class SignedIn:
    """Who a live session belongs to."""

    name: str
    organisation: str | None
    admin: bool
    account_id: int | None
    display_name: str


def _secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def open_session(session: Session, now: datetime, policy: SessionPolicy, *, account_id: int | None = None,
                 token_id: int | None = None) -> str:
    """A new session for an account or a token; returns the secret for the cookie. Sessions that have
    ended are removed on the way."""
    if (account_id is None) == (token_id is None):
        raise ConfigurationError("a session belongs to exactly one account or token")
    session.execute(delete(DashboardSession).where(or_(
        col(DashboardSession.expires_at) <= now, col(DashboardSession.last_seen_at) <= now - policy.idle)))
    secret = secrets.token_urlsafe(32)
    session.add(DashboardSession(secret_hash=_secret_hash(secret), account_id=account_id, token_id=token_id,
                                 created_at=now, last_seen_at=now, expires_at=now + policy.lifetime))
    return secret


def find_session(session: Session, secret: str, now: datetime, policy: SessionPolicy, *,
                 activity: bool = True) -> SignedIn | None:
    """Who the live session with this secret belongs to, or None (unknown, ended, or its account disabled or
    its token revoked). ``activity`` keeps an idle session alive; a background refresh passes False."""
    key = _secret_hash(secret)
    row = session.exec(
        select(DashboardSession, Account, ApiToken)
        .join(Account, col(Account.id) == col(DashboardSession.account_id), isouter=True)
        .join(ApiToken, col(ApiToken.id) == col(DashboardSession.token_id), isouter=True)
        .where(DashboardSession.secret_hash == key)).first()
    if row is None:
        return None
    record, account, token = row
    if record.expires_at <= now or record.last_seen_at <= now - policy.idle:
        session.execute(delete(DashboardSession).where(col(DashboardSession.secret_hash) == key))
        return None
    if account is not None and account.disabled_at is None:
        who = SignedIn(account.username, account.organisation, account.admin, account.id, account.display_name)
    elif token is not None and token.revoked_at is None:
        who = SignedIn(token.name, token.organisation, token.admin, None, token.name)
    else:
        return None
    if activity and now - record.last_seen_at >= min(_TOUCH_EVERY, policy.idle / 10):
        record.last_seen_at = now
        session.add(record)
    return who


def close_session(session: Session, secret: str) -> None:
    """End the session with this secret (sign-out)."""
    session.execute(delete(DashboardSession).where(col(DashboardSession.secret_hash) == _secret_hash(secret)))


def end_sessions(session: Session, *, account_id: int | None = None, token_id: int | None = None) -> None:
    """End every session of an account or a token."""
    if (account_id is None) == (token_id is None):
        raise ConfigurationError("end the sessions of exactly one account or token")
    owner = col(DashboardSession.account_id) == account_id if account_id is not None else \
        col(DashboardSession.token_id) == token_id
    session.execute(delete(DashboardSession).where(owner))
