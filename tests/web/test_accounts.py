"""Dashboard accounts over plain HTTP against the real server: signing in with a username and password, the
session cookie (a random secret, never the password or a token), the lock-out, signing out, the password
form, the idle timeout that the worklist's own refresh does not reset, and the audit trail of it all.

The server is shared by the whole test session, so every test makes its own accounts (unique usernames)
and its own tokens where it revokes one."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import update
from sqlmodel import Session, col, select
from web.conftest import Dashboard
from zorgpad.engine.store.accounts import create_account, set_disabled
from zorgpad.engine.store.tables import AuditEntry, DashboardSession
from zorgpad.engine.store.tokens import create_token, find_token, revoke_token

COOKIE = "zorgpad_session"
REFRESH = {"X-Fragment": "worklist"}
REFUSED = "Onbekende gebruikersnaam of onjuist wachtwoord."


def _in_db(dashboard: Dashboard, work: Callable[[Session], Any]) -> Any:
    """Run ``work`` in a transaction on the server's database."""
    db = dashboard.database()
    try:
        return db.run(work)
    finally:
        db.dispose()


def _account(dashboard: Dashboard, organisation: str | None = "Organization/gp-kerkrade",
             display_name: str | None = None) -> tuple[str, str]:
    """A new account (an administrator when ``organisation`` is None): its username and password."""
    username = f"u-{uuid.uuid4().hex[:12]}"
    password = f"pw {uuid.uuid4().hex}"
    _in_db(dashboard, lambda s: create_account(s, datetime.now(UTC), username, password, organisation=organisation,
                                               admin=organisation is None, display_name=display_name))
    return username, password


def _sign_in(dashboard: Dashboard, username: str, password: str) -> tuple[httpx.Response, httpx.Client]:
    """POST the sign-in form from a fresh client: the answer and the client (holding any cookie)."""
    client = dashboard.client()
    return client.post("/login", data={"username": username, "password": password}), client


def _signed_in(dashboard: Dashboard, username: str, password: str) -> httpx.Client:
    answer, client = _sign_in(dashboard, username, password)
    assert 303 == answer.status_code, answer.text
    return client


def _with_cookie(dashboard: Dashboard, secret: str) -> httpx.Client:
    """A fresh client that sends exactly this session cookie (as a copied cookie would be)."""
    client = dashboard.client()
    client.headers["Cookie"] = f"{COOKIE}={secret}"
    return client


def _key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _error(page: str) -> str:
    """The error message a page shows (role=alert)."""
    return page.split('role="alert">', 1)[1].split("</p>", 1)[0]


def _audit(dashboard: Dashboard, actor: str) -> list[tuple[str, str, str, str | None, str | None]]:
    """(what, action, outcome, entity, detail) of the sign-in rows for ``actor``, oldest first."""
    query = (select(AuditEntry).where(AuditEntry.actor == actor,
                                      col(AuditEntry.what).in_(["login", "logout", "password"]))
             .order_by(col(AuditEntry.id)))
    return _in_db(dashboard, lambda s: [(r.what, r.action, r.outcome, r.entity, r.detail)
                                        for r in s.exec(query).all()])


def _new_token(dashboard: Dashboard, organisation: str = "Organization/gp-kerkrade") -> tuple[int, str]:
    """A new token (so that revoking it leaves the demo's tokens alone): its id and secret."""
    secret = _in_db(dashboard, lambda s: create_token(s, datetime.now(UTC), organisation=organisation,
                                                      name=f"test {uuid.uuid4().hex[:6]}"))
    record = _in_db(dashboard, lambda s: find_token(s, secret))
    return record.id, secret


class TestPasswordSignIn:
    """A username and password open a session whose cookie is a random secret."""

    def test_a_username_and_password_lead_to_the_worklist(self, dashboard: Dashboard) -> None:
        """The right password (username in capitals) answers 303 to / and the worklist then answers 200."""
        username, password = _account(dashboard)
        answer, client = _sign_in(dashboard, username.upper(), password)
        worklist = client.get("/")

        assert (303, "/", 200, True) == (answer.status_code, answer.headers["location"], worklist.status_code,
                                         "<h1>Werklijst</h1>" in worklist.text)

    def test_the_cookie_is_a_random_secret_httponly_and_samesite_strict(self, dashboard: Dashboard) -> None:
        """The cookie is not the password or a token; the database keeps only its hash; scripts and other sites
        cannot use it."""
        username, password = _account(dashboard)
        answer, client = _sign_in(dashboard, username, password)
        secret = client.cookies[COOKIE]
        header = answer.headers["set-cookie"].lower()
        stored = _in_db(dashboard, lambda s: s.get(DashboardSession, _key(secret)))

        assert stored is not None
        assert (False, False, True, True, True, True, None) == (
            password in secret, secret in dashboard.tokens.values(), len(secret) >= 32, "httponly" in header,
            "samesite=strict" in header, "path=/" in header, stored.token_id)

    def test_a_wrong_password_gets_the_form_again_without_a_cookie(self, dashboard: Dashboard) -> None:
        """401 with the form, the error and the username kept, no cookie, and the password not echoed."""
        username, password = _account(dashboard)
        answer, _ = _sign_in(dashboard, username, password + "x")

        assert (401, None, True, True, True, False) == (
            answer.status_code, answer.headers.get("set-cookie"), 'name="password"' in answer.text,
            REFUSED in answer.text, f'value="{username}"' in answer.text, password in answer.text)

    def test_an_unknown_username_is_refused_like_a_wrong_password(self, dashboard: Dashboard) -> None:
        """No such account: the same 401 and the same words as a wrong password."""
        answer, _ = _sign_in(dashboard, f"nobody-{uuid.uuid4().hex[:8]}", "some password here")

        assert (401, None, True) == (answer.status_code, answer.headers.get("set-cookie"), REFUSED in answer.text)

    def test_a_disabled_account_is_refused_like_a_wrong_password(self, dashboard: Dashboard) -> None:
        """A disabled account gets 401 and the same words, so the form does not tell that it exists."""
        username, password = _account(dashboard)
        _in_db(dashboard, lambda s: set_disabled(s, datetime.now(UTC), username, True))
        answer, _ = _sign_in(dashboard, username, password)

        assert (401, None, True) == (answer.status_code, answer.headers.get("set-cookie"), REFUSED in answer.text)

    def test_an_empty_field_is_a_bad_request(self, dashboard: Dashboard) -> None:
        """A username without a password (or neither) gets 400 and the form."""
        client = dashboard.client()
        answers = [client.post("/login", data={"username": "someone", "password": ""}),
                   client.post("/login", data={})]

        assert [(400, True), (400, True)] == [(a.status_code, 'name="username"' in a.text) for a in answers]

    def test_an_organisation_account_sees_what_its_organisations_token_sees(self, dashboard: Dashboard) -> None:
        """A Kerkrade GP account sees Mia Wetzels and not Harrie Smeets, exactly as the Kerkrade token does."""
        username, password = _account(dashboard, "Organization/gp-kerkrade")
        by_account = _signed_in(dashboard, username, password)
        by_token = dashboard.client(dashboard.tokens["Organization/gp-kerkrade"])

        def sight(client: httpx.Client) -> tuple[int, int, bool, bool]:
            worklist = client.get("/").text
            return (client.get("/patients/demo-wetzels").status_code,
                    client.get("/patients/demo-smeets").status_code,
                    "Mia Wetzels" in worklist, "Harrie Smeets" in worklist)

        assert ((200, 404, True, False), sight(by_token)) == (sight(by_account), sight(by_token))

    def test_the_header_shows_the_accounts_display_name(self, dashboard: Dashboard) -> None:
        """The name given at creation (``--name``: "as the dashboard shows it") is in the page header."""
        username, password = _account(dashboard, display_name="Els Huisarts")
        page = _signed_in(dashboard, username, password).get("/").text
        who = page.split('<span class="who">')[1].split("</span>")[0]

        assert "Els Huisarts" in who


class TestLockOut:
    """Five wrong passwords in a row lock the account for fifteen minutes."""

    def test_the_fifth_wrong_password_locks_out_even_the_right_one_until_unlocked(self, dashboard: Dashboard
                                                                                   ) -> None:
        """Five 401s; the right password then gets the same 401 and words as a wrong one (so the lock does not
        tell that the username exists), the audit log says why, and once enabled again it signs in."""
        username, password = _account(dashboard)
        wrong = [_sign_in(dashboard, username, f"wrong password {i}")[0].status_code for i in range(5)]
        locked, _ = _sign_in(dashboard, username, password)
        unknown, _ = _sign_in(dashboard, f"nobody-{uuid.uuid4().hex[:8]}", password)
        _in_db(dashboard, lambda s: set_disabled(s, datetime.now(UTC), username, False))
        unlocked, _ = _sign_in(dashboard, username, password)
        details = [row[4] for row in _audit(dashboard, f"dashboard:{username}")]

        assert ([401] * 5, 401, None, 303) == (wrong, locked.status_code, locked.headers.get("set-cookie"),
                                              unlocked.status_code)
        assert _error(locked.text) == _error(unknown.text)
        assert ["refused"] * 4 + ["locked", "locked", None] == details


class TestSessions:
    """A session ends server-side: at sign-out, when its token is revoked, or when idle."""

    def test_signing_out_ends_the_session_on_the_server(self, dashboard: Dashboard) -> None:
        """After sign-out a copy of the old cookie, sent again, gets 303 to /login."""
        username, password = _account(dashboard)
        client = _signed_in(dashboard, username, password)
        secret = client.cookies[COOKIE]
        copy = _with_cookie(dashboard, secret)
        before = copy.get("/").status_code
        out = client.post("/logout")
        after = copy.get("/")

        assert (200, 303, "/login", True, 303, "/login", None) == (
            before, out.status_code, out.headers["location"], f'{COOKIE}=""' in out.headers["set-cookie"],
            after.status_code, after.headers["location"],
            _in_db(dashboard, lambda s: s.get(DashboardSession, _key(secret))))

    def test_signing_in_again_ends_the_session_the_browser_had(self, dashboard: Dashboard) -> None:
        """A second sign-in in the same browser gets a new secret, and the first one stops working."""
        username, password = _account(dashboard)
        client = _signed_in(dashboard, username, password)
        first = client.cookies[COOKIE]
        again = client.post("/login", data={"username": username, "password": password})
        second = client.cookies[COOKIE]

        assert (303, True, 303, 200) == (again.status_code, first != second,
                                         _with_cookie(dashboard, first).get("/").status_code,
                                         _with_cookie(dashboard, second).get("/").status_code)

    def test_a_token_sign_in_cookie_is_not_the_token_and_revocation_ends_it(self, dashboard: Dashboard) -> None:
        """Signed in with a token, the cookie is another secret; revoking the token signs the browser out."""
        token_id, token = _new_token(dashboard)
        client = dashboard.client(token)
        secret = client.cookies[COOKIE]
        before = client.get("/").status_code
        _in_db(dashboard, lambda s: revoke_token(s, token_id, datetime.now(UTC)))
        after = client.get("/")

        assert (False, 200, 303, "/login") == (secret == token or token in secret, before, after.status_code,
                                              after.headers["location"])

    def test_the_worklist_refresh_is_not_activity_but_a_page_view_is(self, dashboard: Dashboard) -> None:
        """A session last used ten minutes ago: the refresh leaves last_seen_at alone, a page view moves it."""
        client = dashboard.client(dashboard.tokens["admin"])
        key = _key(client.cookies[COOKIE])
        ten_minutes_ago = datetime.now(UTC) - timedelta(minutes=10)
        _in_db(dashboard, lambda s: s.execute(update(DashboardSession).where(col(DashboardSession.secret_hash) == key)
                                              .values(last_seen_at=ten_minutes_ago)))

        def last_seen() -> datetime:
            return _in_db(dashboard, lambda s: s.get(DashboardSession, key).last_seen_at)

        refreshed = client.get("/", headers=REFRESH).status_code
        after_refresh = last_seen()
        viewed = client.get("/").status_code
        after_view = last_seen()

        assert (200, ten_minutes_ago, 200, True) == (refreshed, after_refresh, viewed,
                                                     after_view > datetime.now(UTC) - timedelta(minutes=1))

    def test_an_idle_session_sends_the_refresh_to_the_sign_in_form(self, dashboard: Dashboard) -> None:
        """Unused for 31 minutes (the default idle timeout is 30), even the refresh gets 303 to /login."""
        client = dashboard.client(dashboard.tokens["admin"])
        key = _key(client.cookies[COOKIE])
        _in_db(dashboard, lambda s: s.execute(update(DashboardSession).where(col(DashboardSession.secret_hash) == key)
                                              .values(last_seen_at=datetime.now(UTC) - timedelta(minutes=31))))
        refresh = client.get("/", headers=REFRESH)

        assert (303, "/login", None) == (refresh.status_code, refresh.headers["location"],
                                         _in_db(dashboard, lambda s: s.get(DashboardSession, key)))


class TestPasswordForm:
    """``/account/password``: only for accounts; the current password, twice the same new one, the rules."""

    def test_a_token_user_has_no_password_form(self, dashboard: Dashboard) -> None:
        """Signed in with a token, GET and POST /account/password answer 404 and the header has no link."""
        client = dashboard.client(dashboard.tokens["Organization/gp-kerkrade"])
        form = client.get("/account/password")
        post = client.post("/account/password", data={"current": "x", "new": "y" * 12, "repeat": "y" * 12})

        assert (404, 404, False) == (form.status_code, post.status_code,
                                     'href="/account/password"' in client.get("/").text)

    def test_an_account_user_gets_the_form(self, dashboard: Dashboard) -> None:
        """Signed in with an account, the header links to the form, which has the three fields."""
        username, password = _account(dashboard)
        client = _signed_in(dashboard, username, password)
        form = client.get("/account/password")

        assert (True, 200, True) == ('href="/account/password"' in client.get("/").text, form.status_code,
                                     all(f'name="{n}"' in form.text for n in ("current", "new", "repeat")))

    def test_a_wrong_current_password_a_mismatch_or_a_short_one_is_refused(self, dashboard: Dashboard) -> None:
        """Each answers 400 with its own error and the password stays; each failure is audited."""
        username, password = _account(dashboard)
        client = _signed_in(dashboard, username, password)
        new = "a brand new password"
        answers = [client.post("/account/password", data=form) for form in (
            {"current": password + "x", "new": new, "repeat": new},
            {"current": password, "new": new, "repeat": new + "!"},
            {"current": password, "new": "too short", "repeat": "too short"})]
        errors = ("Het huidige wachtwoord klopt niet.", "De twee nieuwe wachtwoorden zijn niet gelijk.",
                  "Het nieuwe wachtwoord voldoet niet aan de eisen.")
        still, _ = _sign_in(dashboard, username, password)
        rows = [row for row in _audit(dashboard, f"dashboard:{username}") if row[0] == "password"]

        assert ([(400, True)] * 3, 303, [("password", "U", "4", f"account:{username}", problem)
                                         for problem in ("current", "repeat", "rules")]) == (
            [(a.status_code, e in a.text) for a, e in zip(answers, errors, strict=True)], still.status_code, rows)

    def test_a_new_password_replaces_the_old_one_and_ends_other_sessions(self, dashboard: Dashboard) -> None:
        """200; this browser stays signed in, another session of the account ends; new signs in, old does not."""
        username, password = _account(dashboard)
        other = _signed_in(dashboard, username, password)
        client = _signed_in(dashboard, username, password)
        new = "a brand new password"
        changed = client.post("/account/password", data={"current": password, "new": new, "repeat": new})
        still = client.get("/").status_code
        other_after = other.get("/").status_code
        with_new, _ = _sign_in(dashboard, username, new)
        with_old, _ = _sign_in(dashboard, username, password)

        assert (200, True, 200, 303, 303, 401) == (
            changed.status_code, "Uw wachtwoord is gewijzigd" in changed.text, still, other_after,
            with_new.status_code, with_old.status_code)

    def test_guessing_the_current_password_locks_the_account_and_ends_the_session(self, dashboard: Dashboard) -> None:
        """Wrong current passwords count as failed sign-ins: the fifth locks the account (429) and signs out;
        the sign-in form then refuses even the right password (as it does any wrong one)."""
        username, password = _account(dashboard)
        client = _signed_in(dashboard, username, password)
        new = "a brand new password"
        answers = [client.post("/account/password", data={"current": f"guess {n}", "new": new, "repeat": new})
                   .status_code for n in range(5)]
        after = client.get("/")
        with_right, _ = _sign_in(dashboard, username, password)

        assert ([400] * 4 + [429], 303, 401) == (answers, after.status_code, with_right.status_code)


class TestAudit:
    """Sign-ins, failed sign-ins and sign-outs are audited, and served as FHIR AuditEvents."""

    def test_sign_in_failure_and_sign_out_are_audited_with_their_outcome(self, dashboard: Dashboard) -> None:
        """A failed sign-in (4), a sign-in (0) and a sign-out (0), by the account, about the account."""
        username, password = _account(dashboard)
        _sign_in(dashboard, username, "not the password")
        client = _signed_in(dashboard, username, password)
        client.post("/logout")
        entity = f"account:{username}"

        assert [("login", "E", "4", entity, "refused"), ("login", "E", "0", entity, None),
                ("logout", "E", "0", entity, None)] == _audit(dashboard, f"dashboard:{username}")

    def test_a_token_sign_in_and_an_unknown_token_are_audited(self, dashboard: Dashboard) -> None:
        """A token sign-in is audited for the token's name about "token"; an unknown token as a failure."""
        token_id, token = _new_token(dashboard)
        name = _in_db(dashboard, lambda s: find_token(s, token)).name
        dashboard.client(token)
        dashboard.client().post("/login", data={"token": f"zp_wrong_{token_id}"})
        failed = [row for row in _audit(dashboard, "dashboard:token") if row[2] == "4"]

        assert ([("login", "E", "0", "token", None)], True) == (
            _audit(dashboard, f"dashboard:{name}"), ("login", "E", "4", "token", "unknown or revoked token") in failed)

    def test_the_sign_in_is_an_authentication_audit_event(self, dashboard: Dashboard) -> None:
        """/fhir/AuditEvent?agent=dashboard:<username> has the login (DICOM 110114/110122) and logout (110123)."""
        username, password = _account(dashboard)
        _signed_in(dashboard, username, password).post("/logout")
        answer = dashboard.client().get("/fhir/AuditEvent", params={"agent": f"dashboard:{username}"},
                                        headers={"Authorization": f"Bearer {dashboard.tokens['admin']}"})
        events = [entry["resource"] for entry in answer.json()["entry"]]

        assert (200, [("110114", "110123", "0", "Organization/gp-kerkrade"),
                      ("110114", "110122", "0", "Organization/gp-kerkrade")]) == (
            answer.status_code, [(e["type"]["code"], e["subtype"][0]["code"], e["outcome"],
                                  e["agent"][0]["who"].get("reference")) for e in events])
