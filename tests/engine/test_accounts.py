"""Dashboard accounts and sign-in sessions in the store: usernames and password rules, scrypt hashes, the
lock-out after five failed sign-ins, and sessions that end when idle, at their lifetime, or when their
account or token is switched off."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update
from sqlmodel import col, select
from zorgpad.engine.errors import BusyError, ConfigurationError
from zorgpad.engine.store import accounts as accounts_module
from zorgpad.engine.store.accounts import (
    LOCKOUT,
    SessionPolicy,
    SignedIn,
    SignIn,
    accounts,
    check_sign_in,
    close_session,
    create_account,
    find_account,
    find_session,
    hash_password,
    open_session,
    record_sign_in,
    set_disabled,
    set_password,
    verify_password,
)
from zorgpad.engine.store.db import Database
from zorgpad.engine.store.tables import Account, DashboardSession
from zorgpad.engine.store.tokens import create_token, find_token, revoke_token, tokens

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"
NEW_PASSWORD = "staple paperclip lamp"
POLICY = SessionPolicy(idle=timedelta(minutes=30), lifetime=timedelta(hours=12))


def _create(db: Database, username: str = "anna", password: str = PASSWORD, **options: Any) -> Account:
    """An account (for Organization/gp-1 unless ``options`` say otherwise)."""
    if not options.get("admin"):
        options.setdefault("organisation", "gp-1")
    return db.run(lambda s: create_account(s, T0, username, password, **options))


def _account(db: Database, username: str) -> Account | None:
    return db.run(lambda s: find_account(s, username))


def _sign_in(db: Database, username: str, password: str, now: datetime) -> SignIn:
    """A sign-in as the dashboard does it: check outside a transaction, then record."""
    check = check_sign_in(lambda name: db.run(lambda s: find_account(s, name)), username, password, now)
    return db.run(lambda s: record_sign_in(s, check, now))


def _lock(db: Database, username: str, until: datetime) -> None:
    """Put the account in a lock-out until ``until`` (as five failures would)."""
    db.run(lambda s: s.execute(update(Account).where(col(Account.username) == username).values(locked_until=until)))


def _token(db: Database, organisation: str | None = "Organization/gp-1") -> tuple[int, str]:
    """A new token: its id and its secret."""
    secret = db.run(lambda s: create_token(s, T0, organisation=organisation, admin=organisation is None,
                                           name="gp-1 api"))
    record = db.run(lambda s: find_token(s, secret))
    assert record is not None
    assert record.id is not None
    return record.id, secret


def _open(db: Database, now: datetime = T0, policy: SessionPolicy = POLICY, **owner: int | None) -> str:
    return db.run(lambda s: open_session(s, now, policy, **owner))


def _find(db: Database, secret: str, now: datetime, policy: SessionPolicy = POLICY, *,
          activity: bool = True) -> SignedIn | None:
    return db.run(lambda s: find_session(s, secret, now, policy, activity=activity))


def _rows(db: Database) -> list[DashboardSession]:
    return db.run(lambda s: list(s.exec(select(DashboardSession)).all()))


def _last_seen(db: Database, secret: str) -> datetime:
    key = hashlib.sha256(secret.encode()).hexdigest()
    return db.run(lambda s: s.exec(select(DashboardSession.last_seen_at)
                                   .where(DashboardSession.secret_hash == key)).one())


def _usernames(db: Database) -> list[str]:
    return [a.username for a in db.run(accounts)]


class TestCreatingAccounts:
    """An account has a lower-case username, a password that meets the rules, and one organisation or admin."""

    def test_an_account_is_found_by_its_username_in_any_case(self, db: Database) -> None:
        """``Anna.Jansen`` is stored as ``anna.jansen`` for Organization/gp-1 and found as ``ANNA.JANSEN``."""
        _create(db, " Anna.Jansen ", organisation="gp-1")
        found = _account(db, "ANNA.JANSEN")

        assert found is not None
        assert ("anna.jansen", "anna.jansen", "Organization/gp-1", False, 0, None, None) == (
            found.username, found.display_name, found.organisation, found.admin, found.failed_logins,
            found.locked_until, found.disabled_at)

    def test_an_administrator_has_no_organisation_and_keeps_its_display_name(self, db: Database) -> None:
        """An administrator account has no organisation; the given name is kept for display."""
        _create(db, "beheer", admin=True, display_name="Beheer Zuyd")
        found = _account(db, "beheer")

        assert found is not None
        assert (None, True, "Beheer Zuyd") == (found.organisation, found.admin, found.display_name)

    def test_the_stored_hash_does_not_hold_the_password(self, db: Database) -> None:
        """The account's password_hash is a scrypt hash that neither contains nor equals the password."""
        account = _create(db)

        assert (True, False) == (account.password_hash.startswith("scrypt$"), PASSWORD in account.password_hash)

    @pytest.mark.parametrize("username", ["a", "-anna", "anna jansen", "anna@gp-1", "é" + "a" * 3, "a" * 65, ""])
    def test_a_bad_username_is_refused_and_nothing_is_stored(self, db: Database, username: str) -> None:
        """Too short, too long, a space, a sign or starting with '-': ConfigurationError, no account."""
        with pytest.raises(ConfigurationError) as caught:
            _create(db, username)

        assert ("a username has 2 to 64 characters" in str(caught.value), []) == (True, _usernames(db))

    @pytest.mark.parametrize(("password", "problem"), [
        ("elf tekens!", "at least 12 characters (got 11)"),
        ("x" * 1025, "at most 1024 characters (got 1025)"),
        ("Anna.Jansen.GP", "may not be the username"),
        (" anna.jansen.gp ", "may not be the username"),
    ])
    def test_a_bad_password_is_refused_and_nothing_is_stored(self, db: Database, password: str,
                                                             problem: str) -> None:
        """Eleven characters, 1025 characters, or the username itself: ConfigurationError naming it, no account."""
        with pytest.raises(ConfigurationError) as caught:
            _create(db, "anna.jansen.gp", password)

        assert (True, []) == (problem in str(caught.value), _usernames(db))

    def test_the_shortest_and_longest_passwords_are_accepted(self, db: Database) -> None:
        """Twelve and 1024 characters are within the rules."""
        _create(db, "kort", "x" * 12)
        _create(db, "lang", "y" * 1024)

        assert ["kort", "lang"] == _usernames(db)

    @pytest.mark.parametrize("options", [{"organisation": "gp-1", "admin": True}, {"organisation": None}])
    def test_an_account_is_for_exactly_one_organisation_or_an_administrator(self, db: Database,
                                                                            options: dict[str, Any]) -> None:
        """Both an organisation and admin, or neither, is refused."""
        with pytest.raises(ConfigurationError) as caught:
            db.run(lambda s: create_account(s, T0, "anna", PASSWORD, **options))

        assert ("either for one organisation or for an administrator" in str(caught.value), []) == (
            True, _usernames(db))

    def test_a_taken_username_is_refused_in_any_case(self, db: Database) -> None:
        """A second ``ANNA`` next to ``anna`` is refused; the first account stays as it was."""
        first = _create(db, "anna")
        with pytest.raises(ConfigurationError) as caught:
            _create(db, "ANNA", NEW_PASSWORD, organisation="gp-2")
        kept = _account(db, "anna")

        assert kept is not None
        assert ("the username 'anna' is taken", ["anna"], first.password_hash, "Organization/gp-1") == (
            str(caught.value), _usernames(db), kept.password_hash, kept.organisation)

    def test_the_accounts_are_listed_by_username(self, db: Database) -> None:
        """``accounts`` lists every account in username order."""
        _create(db, "zoe")
        _create(db, "bram", admin=True)

        assert ["bram", "zoe"] == _usernames(db)


class TestPasswordHashes:
    """Passwords are stored as salted scrypt hashes."""

    def test_the_hash_is_salted_and_holds_its_parameters(self) -> None:
        """The hash names scrypt and its parameters and never contains the password."""
        stored = hash_password(PASSWORD)
        scheme, n, r, p, salt, digest = stored.split("$")

        assert ("scrypt", "32768", "8", "3", False) == (scheme, n, r, p, PASSWORD in stored)
        assert (24, 44) == (len(salt), len(digest))

    def test_only_the_password_verifies(self) -> None:
        """The password verifies; a changed one, an empty one, or a malformed hash do not."""
        stored = hash_password(PASSWORD)
        other_scheme = "bcrypt" + stored.removeprefix("scrypt")

        assert (True, False, False, False, False) == (
            verify_password(PASSWORD, stored), verify_password(PASSWORD + "!", stored), verify_password("", stored),
            verify_password(PASSWORD, "scrypt$garbage"), verify_password(PASSWORD, other_scheme))


class TestSigningIn:
    """check_sign_in with record_sign_in: OK, REFUSED, LOCKED after five failures in a row, DISABLED."""

    def test_the_right_password_signs_in_and_clears_the_failures(self, db: Database) -> None:
        """Two failures are counted; the right password (in another case of username) is OK and resets them."""
        _create(db)
        failures = [_sign_in(db, "anna", "wrong password!", T0) for _ in range(2)]
        counted = _account(db, "anna")
        ok = _sign_in(db, "ANNA", PASSWORD, T0)
        after = _account(db, "anna")

        assert counted is not None
        assert after is not None
        assert ([SignIn.REFUSED, SignIn.REFUSED], 2, SignIn.OK, 0) == (
            failures, counted.failed_logins, ok, after.failed_logins)

    def test_the_fifth_failure_in_a_row_locks_the_account_for_15_minutes(self, db: Database) -> None:
        """Failures one to four are REFUSED, the fifth is LOCKED with locked_until fifteen minutes later."""
        _create(db)
        outcomes = [_sign_in(db, "anna", f"wrong password {i}", T0 + timedelta(seconds=i)) for i in range(5)]
        locked = _account(db, "anna")

        assert locked is not None
        assert ([SignIn.REFUSED] * 4 + [SignIn.LOCKED], T0 + timedelta(seconds=4) + timedelta(minutes=15),
                timedelta(minutes=15)) == (outcomes, locked.locked_until, LOCKOUT)

    def test_attempts_under_way_when_the_lock_comes_are_refused(self, db: Database) -> None:
        """Checks read before the fifth failure was recorded (as at the same moment, from many browsers) are
        refused once it is, the right password too, and do not start a new count of failures."""
        _create(db)

        def check(password: str) -> Any:
            return check_sign_in(lambda name: db.run(lambda s: find_account(s, name)), "anna", password, T0)

        failures = [check(f"wrong password {n}") for n in range(5)]
        right, late = check(PASSWORD), check("one more wrong password")
        outcomes = [db.run(lambda s, c=c: record_sign_in(s, c, T0)) for c in failures]
        after = [db.run(lambda s, c=c: record_sign_in(s, c, T0)) for c in (right, late)]
        account = _account(db, "anna")

        assert account is not None
        assert ([SignIn.OK, SignIn.REFUSED], [SignIn.REFUSED] * 4 + [SignIn.LOCKED]) == (
            [right.outcome, late.outcome], outcomes)
        assert ([SignIn.LOCKED, SignIn.LOCKED], T0 + LOCKOUT, 0) == (after, account.locked_until, account.failed_logins)

    def test_too_many_checks_at_once_are_refused_as_busy(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """While SCRYPT_AT_ONCE checks run, another waits a moment and is refused with BusyError; then it runs."""
        stored = hash_password(PASSWORD)
        monkeypatch.setattr(accounts_module, "_SCRYPT_WAIT_SECONDS", 0.05)
        held = [accounts_module._scrypt_turns.acquire(timeout=1) for _ in range(accounts_module.SCRYPT_AT_ONCE)]
        try:
            with pytest.raises(BusyError, match="too many sign-ins at once"):
                verify_password(PASSWORD, stored)
        finally:
            for _ in held:
                accounts_module._scrypt_turns.release()

        assert [True] * accounts_module.SCRYPT_AT_ONCE == held
        assert verify_password(PASSWORD, stored)

    def test_during_the_lock_even_the_right_password_is_locked_out(self, db: Database) -> None:
        """Until the lock ends the right password gets LOCKED; from the moment it ends, OK."""
        _create(db)
        _lock(db, "anna", T0 + LOCKOUT)
        during = _sign_in(db, "anna", PASSWORD, T0 + LOCKOUT - timedelta(seconds=1))
        after = _sign_in(db, "anna", PASSWORD, T0 + LOCKOUT)
        account = _account(db, "anna")

        assert account is not None
        assert (SignIn.LOCKED, SignIn.OK, None) == (during, after, account.locked_until)

    def test_an_unknown_or_malformed_username_is_refused(self, db: Database) -> None:
        """No such account, or a name that could not be one: REFUSED without an account."""
        checks = [check_sign_in(lambda name: db.run(lambda s: find_account(s, name)), name, PASSWORD, T0)
                  for name in ("nobody", "x")]

        assert [(SignIn.REFUSED, None), (SignIn.REFUSED, None)] == [(c.outcome, c.account) for c in checks]

    def test_what_was_typed_is_logged_only_when_it_could_be_a_username(self, db: Database) -> None:
        """'Nobody' is logged as 'nobody'; a reference or markup typed as a username as '(invalid)'."""
        checks = [check_sign_in(lambda name: db.run(lambda s: find_account(s, name)), name, PASSWORD, T0)
                  for name in (" Nobody ", "Patient/x", "<b>")]

        assert ["nobody", "(invalid)", "(invalid)"] == [c.username for c in checks]

    def test_a_disabled_account_is_disabled_until_it_is_enabled(self, db: Database) -> None:
        """A disabled account gets DISABLED with the right password; enabled again, OK."""
        _create(db)
        db.run(lambda s: set_disabled(s, T0, "anna", True))
        disabled = _sign_in(db, "anna", PASSWORD, T0)
        db.run(lambda s: set_disabled(s, T0, "anna", False))
        enabled = _sign_in(db, "anna", PASSWORD, T0)

        assert (SignIn.DISABLED, SignIn.OK) == (disabled, enabled)

    def test_a_new_password_unlocks_and_replaces_the_old_one(self, db: Database) -> None:
        """set_password lifts the lock; the new password signs in and the old one is refused."""
        _create(db)
        _lock(db, "anna", T0 + LOCKOUT)
        changed = db.run(lambda s: set_password(s, T0, "anna", NEW_PASSWORD))
        new = _sign_in(db, "anna", NEW_PASSWORD, T0)
        old = _sign_in(db, "anna", PASSWORD, T0)

        assert (None, 0, SignIn.OK, SignIn.REFUSED) == (changed.locked_until, changed.failed_logins, new, old)

    def test_a_new_password_must_meet_the_rules(self, db: Database) -> None:
        """A too short new password is refused and the old one still signs in."""
        _create(db)
        with pytest.raises(ConfigurationError) as caught:
            db.run(lambda s: set_password(s, T0, "anna", "short"))

        assert (True, SignIn.OK) == ("at least 12 characters" in str(caught.value),
                                     _sign_in(db, "anna", PASSWORD, T0))

    def test_changing_an_unknown_account_is_refused(self, db: Database) -> None:
        """set_password and set_disabled name the missing account."""
        with pytest.raises(ConfigurationError) as password:
            db.run(lambda s: set_password(s, T0, "Nobody", NEW_PASSWORD))
        with pytest.raises(ConfigurationError) as disabled:
            db.run(lambda s: set_disabled(s, T0, "nobody", True))

        assert ["there is no account 'nobody'"] * 2 == [str(password.value), str(disabled.value)]


class TestSessions:
    """A session names its account or token until it is closed, idle, too old, or its owner is switched off."""

    def test_a_session_names_its_account(self, db: Database) -> None:
        """An account's session gives its username, organisation, id and the person's name."""
        account = _create(db, display_name="Anna de Vries")
        secret = _open(db, account_id=account.id)

        assert SignedIn("anna", "Organization/gp-1", False, account.id, "Anna de Vries") == _find(db, secret, T0)

    def test_a_session_names_its_token(self, db: Database) -> None:
        """A token's session gives the token's name and organisation, and no account."""
        token_id, _ = _token(db)
        secret = _open(db, token_id=token_id)

        assert SignedIn("gp-1 api", "Organization/gp-1", False, None, "gp-1 api") == _find(db, secret, T0)

    def test_a_session_belongs_to_exactly_one_account_or_token(self, db: Database) -> None:
        """Neither or both owners are refused and no session is stored."""
        token_id, _ = _token(db)
        with pytest.raises(ConfigurationError):
            _open(db)
        with pytest.raises(ConfigurationError):
            _open(db, token_id=token_id, account_id=1)

        assert [] == _rows(db)

    def test_an_unknown_secret_finds_nothing(self, db: Database) -> None:
        """A secret that was never handed out (or a bearer token) is no session."""
        token_id, token = _token(db)
        _open(db, token_id=token_id)

        assert (None, None) == (_find(db, "not-a-session", T0), _find(db, token, T0))

    def test_the_database_holds_only_the_secrets_hash(self, db: Database) -> None:
        """The row's key is the SHA-256 of the secret; the secret itself is in no column."""
        token_id, _ = _token(db)
        secret = _open(db, token_id=token_id)
        row = _rows(db)[0]

        assert (hashlib.sha256(secret.encode()).hexdigest(), False) == (
            row.secret_hash, secret in repr(row.model_dump()))

    def test_an_idle_session_ends_and_its_row_is_deleted(self, db: Database) -> None:
        """A second before the idle timeout the session lives; at the timeout it is gone, row and all."""
        token_id, _ = _token(db)
        secret = _open(db, token_id=token_id)
        before = _find(db, secret, T0 + POLICY.idle - timedelta(seconds=1), activity=False)
        at = _find(db, secret, T0 + POLICY.idle)

        assert (True, None, []) == (before is not None, at, _rows(db))

    def test_a_session_ends_at_its_lifetime_even_with_activity(self, db: Database) -> None:
        """Used every 20 minutes, the session still ends twelve hours after it was opened."""
        token_id, _ = _token(db)
        secret = _open(db, token_id=token_id)
        uses = [_find(db, secret, T0 + timedelta(minutes=m)) for m in range(20, 12 * 60, 20)]
        end = _find(db, secret, T0 + POLICY.lifetime)

        assert (True, None, []) == (all(u is not None for u in uses), end, _rows(db))

    def test_a_background_refresh_does_not_extend_the_session(self, db: Database) -> None:
        """With activity=False last_seen_at stays, so the session ends idle from its last real use."""
        token_id, _ = _token(db)
        secret = _open(db, token_id=token_id)
        refreshes = [_find(db, secret, T0 + timedelta(minutes=m), activity=False) for m in (5, 15, 29)]
        seen = _last_seen(db, secret)

        assert (True, T0, None) == (all(r is not None for r in refreshes), seen,
                                    _find(db, secret, T0 + POLICY.idle, activity=False))

    def test_activity_extends_the_session_written_at_most_once_a_minute(self, db: Database) -> None:
        """Use after 59 s is not written, after 60 s it is; the session then lives past the first idle end."""
        token_id, _ = _token(db)
        secret = _open(db, token_id=token_id)
        _find(db, secret, T0 + timedelta(seconds=59))
        early = _last_seen(db, secret)
        _find(db, secret, T0 + timedelta(seconds=60))
        written = _last_seen(db, secret)
        later = _find(db, secret, T0 + POLICY.idle + timedelta(seconds=30), activity=False)

        assert (T0, T0 + timedelta(seconds=60), True) == (early, written, later is not None)

    def test_activity_counts_when_the_idle_timeout_is_shorter_than_a_minute(self, db: Database) -> None:
        """With a 3 s idle timeout (ZORGPAD_SESSION_IDLE_MINUTES=0.05), use at 2 s keeps the session at 4 s."""
        short = SessionPolicy(idle=timedelta(seconds=3), lifetime=timedelta(hours=1))
        token_id, _ = _token(db)
        secret = _open(db, policy=short, token_id=token_id)
        used = _find(db, secret, T0 + timedelta(seconds=2), short)
        later = _find(db, secret, T0 + timedelta(seconds=4), short, activity=False)

        assert (True, True) == (used is not None, later is not None)

    def test_a_closed_session_is_gone(self, db: Database) -> None:
        """close_session (sign-out) ends that session and no other."""
        token_id, _ = _token(db)
        closed, other = _open(db, token_id=token_id), _open(db, token_id=token_id)
        db.run(lambda s: close_session(s, closed))

        assert (None, True) == (_find(db, closed, T0), _find(db, other, T0) is not None)

    def test_disabling_the_account_ends_its_sessions(self, db: Database) -> None:
        """Both sessions of a disabled account end and their rows go; enabling it does not bring them back."""
        account = _create(db)
        secrets = [_open(db, account_id=account.id) for _ in range(2)]
        db.run(lambda s: set_disabled(s, T0, "anna", True))
        rows = _rows(db)
        db.run(lambda s: set_disabled(s, T0, "anna", False))

        assert ([], [None, None]) == (rows, [_find(db, secret, T0) for secret in secrets])

    def test_a_disabled_account_has_no_session_even_if_a_row_remains(self, db: Database) -> None:
        """An account disabled behind the store's back (only disabled_at set) has no live session."""
        account = _create(db)
        secret = _open(db, account_id=account.id)
        db.run(lambda s: s.execute(update(Account).values(disabled_at=T0)))

        assert _find(db, secret, T0) is None

    def test_revoking_the_token_ends_its_sessions(self, db: Database) -> None:
        """A revoked token is refused and its dashboard session ends; another token's session stays."""
        token_id, token = _token(db)
        other_id, _ = _token(db, None)
        secret, kept = _open(db, token_id=token_id), _open(db, token_id=other_id)
        revoked = db.run(lambda s: revoke_token(s, token_id, T0 + timedelta(minutes=1)))

        assert (T0 + timedelta(minutes=1), None, None, True) == (
            revoked.revoked_at, db.run(lambda s: find_token(s, token)), _find(db, secret, T0),
            _find(db, kept, T0) is not None)

    def test_revoking_an_unknown_token_is_refused(self, db: Database) -> None:
        """There is no token 99: ConfigurationError naming it."""
        with pytest.raises(ConfigurationError) as caught:
            db.run(lambda s: revoke_token(s, 99, T0))

        assert "there is no token with id 99" == str(caught.value)

    def test_the_tokens_are_listed_oldest_first_with_their_state(self, db: Database) -> None:
        """``tokens`` lists live and revoked tokens by id, without secrets."""
        first, secret = _token(db)
        second, _ = _token(db, None)
        db.run(lambda s: revoke_token(s, first, T0))
        listed = db.run(tokens)

        assert ([first, second], [T0, None], False) == (
            [t.id for t in listed], [t.revoked_at for t in listed], any(secret in repr(t) for t in listed))

    def test_a_new_password_ends_the_sessions(self, db: Database) -> None:
        """After set_password the account's earlier session finds nothing."""
        account = _create(db)
        secret = _open(db, account_id=account.id)
        db.run(lambda s: set_password(s, T0, "anna", NEW_PASSWORD))

        assert (None, []) == (_find(db, secret, T0), _rows(db))

    def test_opening_a_session_removes_the_ended_ones(self, db: Database) -> None:
        """An idle session and one past its lifetime are removed when another opens; a live one stays."""
        token_id, _ = _token(db)
        long_ago = SessionPolicy(idle=timedelta(hours=24), lifetime=timedelta(minutes=10))
        _open(db, T0, token_id=token_id)  # idle by T0 + 31 min
        _open(db, T0 + timedelta(minutes=20), long_ago, token_id=token_id)  # lifetime over at T0 + 30 min
        live = _open(db, T0 + timedelta(minutes=20), token_id=token_id)
        new = _open(db, T0 + timedelta(minutes=31), token_id=token_id)

        assert {hashlib.sha256(s.encode()).hexdigest() for s in (live, new)} == {r.secret_hash for r in _rows(db)}


class TestSessionPolicy:
    """ZORGPAD_SESSION_IDLE_MINUTES and ZORGPAD_SESSION_HOURS set the idle timeout and the lifetime."""

    def test_without_the_variables_the_defaults_hold(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Thirty minutes idle, twelve hours in all; an empty variable counts as unset."""
        monkeypatch.delenv("ZORGPAD_SESSION_IDLE_MINUTES", raising=False)
        monkeypatch.setenv("ZORGPAD_SESSION_HOURS", "")

        assert SessionPolicy(timedelta(minutes=30), timedelta(hours=12)) == SessionPolicy.from_environment()

    def test_the_variables_are_read_as_numbers(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """``0.05`` minutes is three seconds and ``1.5`` hours ninety minutes."""
        monkeypatch.setenv("ZORGPAD_SESSION_IDLE_MINUTES", "0.05")
        monkeypatch.setenv("ZORGPAD_SESSION_HOURS", "1.5")

        assert SessionPolicy(timedelta(seconds=3), timedelta(minutes=90)) == SessionPolicy.from_environment()

    @pytest.mark.parametrize(("name", "value", "problem"), [
        ("ZORGPAD_SESSION_IDLE_MINUTES", "thirty", "must be a number of minutes"),
        ("ZORGPAD_SESSION_IDLE_MINUTES", "0", "more than 0 and less than a million"),
        ("ZORGPAD_SESSION_HOURS", "-1", "more than 0 and less than a million"),
        ("ZORGPAD_SESSION_HOURS", "1e6", "more than 0 and less than a million"),
        ("ZORGPAD_SESSION_HOURS", "nan", "more than 0 and less than a million"),
        ("ZORGPAD_SESSION_HOURS", "12h", "must be a number of hours"),
    ])
    def test_garbage_is_refused_naming_the_variable(self, monkeypatch: pytest.MonkeyPatch, name: str, value: str,
                                                    problem: str) -> None:
        """A value that is no number, or not between 0 and a million, is a ConfigurationError."""
        monkeypatch.delenv("ZORGPAD_SESSION_IDLE_MINUTES", raising=False)
        monkeypatch.delenv("ZORGPAD_SESSION_HOURS", raising=False)
        monkeypatch.setenv(name, value)
        with pytest.raises(ConfigurationError) as caught:
            SessionPolicy.from_environment()

        assert (True, True) == (str(caught.value).startswith(name), problem in str(caught.value))
