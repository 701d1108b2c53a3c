"""``zorgpad user …`` and ``zorgpad token list/revoke``, run as the real command against a migrated database.
Passwords come in on standard input (``--password-stdin``); every error is one line, exit status 1."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import update
from sqlmodel import col, select
from zorgpad.engine import Database
from zorgpad.engine.store.accounts import create_account, find_account, verify_password
from zorgpad.engine.store.tables import Account, AuditEntry
from zorgpad.engine.store.tokens import create_token, find_token

REPO = Path(__file__).resolve().parents[2]
ZORGPAD = REPO / ".venv" / "bin" / "zorgpad"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"
NEW_PASSWORD = "staple paperclip lamp"


def zorgpad(*args: str, stdin: str | None = None, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    """Run the real ``zorgpad`` with ``stdin`` as its input, in a new session so that it has no terminal to
    prompt on (as under cron or CI)."""
    clean = {k: v for k, v in os.environ.items() if k not in ("ZORGPAD_DATABASE_URL", "PYTHONPATH")} | (env or {})
    return subprocess.run([str(ZORGPAD), *args], cwd=REPO, env=clean, input=stdin if stdin is not None else "",
                          capture_output=True, text=True, timeout=120, check=False, start_new_session=True)


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single error line of a failed command (fails the test unless there is exactly one), as in
    test_cli.py."""
    assert 1 == result.returncode, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert 1 == len(lines), result.stderr
    assert lines[0].startswith("zorgpad: error: "), result.stderr
    return lines[0]


def _account(db_url: str, username: str) -> Account | None:
    db = Database(db_url)
    try:
        return db.run(lambda s: find_account(s, username))
    finally:
        db.dispose()


def _create(db_url: str, username: str = "anna") -> None:
    """An account for Organization/gp-1 with PASSWORD, made in-process."""
    db = Database(db_url)
    try:
        db.run(lambda s: create_account(s, T0, username, PASSWORD, organisation="gp-1"))
    finally:
        db.dispose()


def _users(db_url: str) -> list[str]:
    result = zorgpad("user", "list", "--db", db_url)
    assert 0 == result.returncode, result.stderr
    return result.stdout.splitlines()


class TestUserCreate:
    """``zorgpad user create USERNAME (--org ID | --admin) [--name N] [--password-stdin]``."""

    def test_an_account_made_with_password_stdin_is_listed(self, db_url: str) -> None:
        """The password is read from standard input; ``user list`` shows the account, its name and state."""
        created = zorgpad("user", "create", "Anna", "--org", "gp-1", "--name", "Anna Jansen", "--password-stdin",
                          "--db", db_url, stdin=PASSWORD + "\n")
        stored = _account(db_url, "anna")

        assert stored is not None
        assert (0, "created account anna (Organization/gp-1)\n", ["anna\tOrganization/gp-1\tAnna Jansen\tactive"],
                True) == (created.returncode, created.stdout, _users(db_url),
                          verify_password(PASSWORD, stored.password_hash))

    def test_an_administrator_account_is_listed_as_admin(self, db_url: str) -> None:
        """With --admin and no --name the account is listed for admin under its username."""
        created = zorgpad("user", "create", "beheer", "--admin", "--password-stdin", "--db", db_url,
                          stdin=PASSWORD + "\n")

        assert ("created account beheer (admin)\n", ["beheer\tadmin\tbeheer\tactive"]) == (
            created.stdout, _users(db_url))

    def test_a_taken_username_is_one_error_line(self, db_url: str) -> None:
        """Creating ``ANNA`` next to ``anna`` fails with one line naming the username."""
        _create(db_url)
        again = zorgpad("user", "create", "ANNA", "--org", "gp-2", "--password-stdin", "--db", db_url,
                        stdin=NEW_PASSWORD + "\n")

        assert ("zorgpad: error: the username 'anna' is taken", ["anna\tOrganization/gp-1\tanna\tactive"]) == (
            error_line(again), _users(db_url))

    def test_org_and_admin_together_or_neither_are_refused(self, db_url: str) -> None:
        """Both --org and --admin, or neither, is one error line and no account."""
        both = zorgpad("user", "create", "anna", "--org", "gp-1", "--admin", "--password-stdin", "--db", db_url,
                       stdin=PASSWORD + "\n")
        neither = zorgpad("user", "create", "anna", "--password-stdin", "--db", db_url, stdin=PASSWORD + "\n")

        assert (["zorgpad: error: give exactly one of --org ORGANIZATION_ID or --admin"] * 2, ["no accounts"]) == (
            [error_line(both), error_line(neither)], _users(db_url))

    def test_a_short_password_is_refused_and_nothing_is_stored(self, db_url: str) -> None:
        """An eleven-character password is one error line naming the rule; no account is made."""
        result = zorgpad("user", "create", "anna", "--org", "gp-1", "--password-stdin", "--db", db_url,
                         stdin="elf tekens!\n")

        assert ("zorgpad: error: a password needs at least 12 characters (got 11)", ["no accounts"]) == (
            error_line(result), _users(db_url))

    def test_a_bad_username_is_refused(self, db_url: str) -> None:
        """A username with a space is one error line explaining usernames."""
        result = zorgpad("user", "create", "anna jansen", "--org", "gp-1", "--password-stdin", "--db", db_url,
                         stdin=PASSWORD + "\n")

        assert "a username has 2 to 64 characters" in error_line(result)

    def test_without_password_stdin_and_no_terminal_it_fails_with_one_line(self, db_url: str) -> None:
        """Without --password-stdin, no terminal and empty input: one error line, exit 1, no account."""
        result = zorgpad("user", "create", "anna", "--org", "gp-1", "--db", db_url, stdin="")

        assert (True, ["no accounts"]) == (error_line(result).startswith("zorgpad: error: "), _users(db_url))


class TestUserChanges:
    """``user password``, ``user disable``, ``user enable`` and ``user list`` on existing accounts."""

    def test_a_new_password_replaces_the_old_one(self, db_url: str) -> None:
        """After ``user password`` the old password no longer verifies and the new one does."""
        _create(db_url)
        result = zorgpad("user", "password", "Anna", "--password-stdin", "--db", db_url, stdin=NEW_PASSWORD + "\n")
        stored = _account(db_url, "anna")

        assert stored is not None
        assert ("new password set for anna\n", False, True) == (
            result.stdout, verify_password(PASSWORD, stored.password_hash),
            verify_password(NEW_PASSWORD, stored.password_hash))

    def test_a_new_password_must_meet_the_rules(self, db_url: str) -> None:
        """A new password equal to the username is one error line; the old password still verifies."""
        _create(db_url, "anna.jansen.gp")
        result = zorgpad("user", "password", "anna.jansen.gp", "--password-stdin", "--db", db_url,
                         stdin="Anna.Jansen.GP\n")
        stored = _account(db_url, "anna.jansen.gp")

        assert stored is not None
        assert ("zorgpad: error: the password may not be the username", True) == (
            error_line(result), verify_password(PASSWORD, stored.password_hash))

    def test_disable_and_enable_switch_the_account(self, db_url: str) -> None:
        """``user disable`` lists the account as disabled; ``user enable`` as active again."""
        _create(db_url)
        disabled = zorgpad("user", "disable", "anna", "--db", db_url)
        listed_disabled = _users(db_url)
        enabled = zorgpad("user", "enable", "ANNA", "--db", db_url)

        assert ("disabled anna\n", ["anna\tOrganization/gp-1\tanna\tdisabled"], "enabled anna\n",
                ["anna\tOrganization/gp-1\tanna\tactive"]) == (disabled.stdout, listed_disabled, enabled.stdout,
                                                               _users(db_url))

    def test_a_locked_account_is_listed_with_its_lock(self, db_url: str) -> None:
        """An account locked out is listed as locked until the lock's time; ``user enable`` lifts the lock."""
        _create(db_url)
        until = datetime.now(UTC) + timedelta(minutes=15)
        db = Database(db_url)
        try:
            db.run(lambda s: s.execute(update(Account).where(col(Account.username) == "anna")
                                       .values(locked_until=until, failed_logins=0)))
        finally:
            db.dispose()
        locked = _users(db_url)
        zorgpad("user", "enable", "anna", "--db", db_url)

        assert ([f"anna\tOrganization/gp-1\tanna\tlocked until {until:%H:%M}"],
                ["anna\tOrganization/gp-1\tanna\tactive"]) == (locked, _users(db_url))

    def test_an_unknown_user_is_one_error_line(self, db_url: str) -> None:
        """password, disable and enable of a missing account each fail with one line naming it."""
        results = [zorgpad("user", "password", "nobody", "--password-stdin", "--db", db_url, stdin=PASSWORD + "\n"),
                   zorgpad("user", "disable", "nobody", "--db", db_url),
                   zorgpad("user", "enable", "nobody", "--db", db_url)]

        assert ["zorgpad: error: there is no account 'nobody'"] * 3 == [error_line(r) for r in results]


class TestTokens:
    """``zorgpad token list`` shows ids and states; ``zorgpad token revoke ID`` revokes one."""

    def _tokens(self, db_url: str) -> list[str]:
        db = Database(db_url)
        try:
            return [db.run(lambda s: create_token(s, T0, organisation="Organization/gp-1", name="gp-1 api")),
                    db.run(lambda s: create_token(s, T0 + timedelta(minutes=1), admin=True))]
        finally:
            db.dispose()

    def test_the_list_shows_ids_and_no_secrets(self, db_url: str) -> None:
        """Each token is a line with its id, organisation, name, creation time and state."""
        secrets = self._tokens(db_url)
        result = zorgpad("token", "list", "--db", db_url)

        assert (["1\tOrganization/gp-1\tgp-1 api\tcreated 2026-03-02 09:00\tlive",
                 "2\tadmin\tadmin\tcreated 2026-03-02 09:01\tlive"], False) == (
            result.stdout.splitlines(), any(s in result.stdout for s in secrets))

    def test_without_tokens_the_list_says_so(self, db_url: str) -> None:
        """An empty database lists ``no tokens``."""
        assert "no tokens\n" == zorgpad("token", "list", "--db", db_url).stdout

    def test_a_revoked_token_is_no_longer_found(self, db_url: str) -> None:
        """After ``token revoke 1`` that token is refused and listed as revoked; token 2 still works."""
        first, second = self._tokens(db_url)
        result = zorgpad("token", "revoke", "1", "--db", db_url)
        listed = zorgpad("token", "list", "--db", db_url).stdout.splitlines()
        db = Database(db_url)
        try:
            found = [db.run(lambda s, t=t: find_token(s, t)) for t in (first, second)]
        finally:
            db.dispose()

        assert ("revoked token 1 (gp-1 api)\n", True, True, None, True) == (
            result.stdout, listed[0].split("\t")[-1].startswith("revoked "), listed[1].endswith("\tlive"), found[0],
            found[1] is not None)

    def test_revoking_an_unknown_id_is_one_error_line(self, db_url: str) -> None:
        """There is no token 99: one error line naming it."""
        assert "zorgpad: error: there is no token with id 99" == error_line(
            zorgpad("token", "revoke", "99", "--db", db_url))


class TestSessionSettings:
    """``zorgpad serve`` reads the session settings when it starts."""

    def test_a_bad_idle_setting_stops_serve_with_one_error_line(self, db_url: str) -> None:
        """ZORGPAD_SESSION_IDLE_MINUTES=abc: one line naming the variable, exit 1, before listening."""
        result = zorgpad("serve", "--db", db_url, "--port", "1", "--tick-interval", "0",
                         env={"ZORGPAD_SESSION_IDLE_MINUTES": "abc"})

        assert "zorgpad: error: ZORGPAD_SESSION_IDLE_MINUTES must be a number of minutes (got 'abc')" == error_line(
            result)


class TestAdministrationIsAudited:
    """Changes to accounts and tokens made on the command line are in the audit log (NEN 7513)."""

    def test_each_account_and_token_change_writes_an_entry_by_the_cli_user(self, db_url: str) -> None:
        """create, new password, disable, enable, token create and revoke: one entry each, in that order,
        by ``cli:<user>``, about the account or the token."""
        steps = [("user", "create", "anna", "--org", "gp-1", "--password-stdin"),
                 ("user", "password", "anna", "--password-stdin"), ("user", "disable", "anna"),
                 ("user", "enable", "anna"), ("token", "create", "--org", "gp-1")]
        for step in steps:
            assert 0 == zorgpad(*step, "--db", db_url, stdin=PASSWORD + "\n").returncode
        token_id = zorgpad("token", "list", "--db", db_url).stdout.split("\t", 1)[0]
        assert 0 == zorgpad("token", "revoke", token_id, "--db", db_url).returncode
        db = Database(db_url)
        try:
            rows = db.run(lambda s: [(r.actor.startswith("cli:"), r.action, r.what, r.entity) for r in s.exec(
                select(AuditEntry).where(col(AuditEntry.actor).startswith("cli:")).order_by(col(AuditEntry.id)))])
        finally:
            db.dispose()

        assert [(True, "C", "account", "account:anna"), (True, "U", "password", "account:anna"),
                (True, "U", "account", "account:anna"), (True, "U", "account", "account:anna"),
                (True, "C", "token", "token"), (True, "U", "token", f"token:{token_id}")] == rows
