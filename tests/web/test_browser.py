"""The dashboard in a real headless Chromium (Debian's ``chromium``, driven by Playwright's Python package;
``make test`` installs it when missing): sign in, find the overdue Task, open the patient, read the
directives, reassign a step and see it change. Screenshots go to test-artifacts/; the worklist and the
patient page are also copied to docs/screenshots/ for the README."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from web.conftest import ARTIFACTS, REPO, Dashboard
from zorgpad.engine.store.accounts import create_account

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-sync"]
DOCS = REPO / "docs" / "screenshots"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium from the system package (never a downloaded browser)."""
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is missing: run `make browser` (make test does it)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser, dashboard: Dashboard) -> Iterator[Page]:
    """A fresh laptop-sized browser tab on the dashboard."""
    context = browser.new_context(base_url=dashboard.base_url, viewport={"width": 1366, "height": 900})
    tab = context.new_page()
    yield tab
    context.close()


def _sign_in(page: Page, token: str) -> None:
    """Sign in with a token: it is behind the "Inloggen met een toegangstoken" disclosure of the form."""
    page.goto("/")
    page.get_by_text("Inloggen met een toegangstoken").click()
    with_token = page.locator("details")
    with_token.get_by_label("Toegangstoken").fill(token)
    with_token.get_by_role("button", name="Inloggen").click()
    page.wait_for_url("**/")


def _shot(page: Page, name: str, *, docs: bool = False) -> None:
    """The whole page to test-artifacts/; with ``docs`` also the first screenful, which replaces the README's
    copy in docs/screenshots/ only when ZORGPAD_UPDATE_SCREENSHOTS=1 (so a test run leaves the tree clean)."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    if docs:
        page.screenshot(path=str(ARTIFACTS / f"{name}-screen.png"))
        if os.environ.get("ZORGPAD_UPDATE_SCREENSHOTS") == "1":
            DOCS.mkdir(parents=True, exist_ok=True)
            shutil.copy(ARTIFACTS / f"{name}-screen.png", DOCS / f"{name}.png")


class TestCoordinatorJourney:
    """A coordinator's round through the dashboard, as a browser sees it."""

    def test_an_unsigned_visit_lands_on_the_sign_in_form(self, page: Page) -> None:
        """Opening the worklist without signing in shows the sign-in form."""
        page.goto("/")

        assert page.url.endswith("/login")

    def test_the_overdue_task_leads_to_the_patient_and_a_reassignment(self, page: Page, dashboard: Dashboard
                                                                       ) -> None:
        """Sign in, see the overdue conversation first, open the patient, reassign the step with a reason."""
        _sign_in(page, dashboard.tokens["admin"])
        first_overdue = page.locator("#overdue tbody tr").first
        late_text = first_overdue.locator(".lateness").inner_text()
        _shot(page, "worklist", docs=True)

        assert ("conversation", "Harrie Smeets") == (first_overdue.get_attribute("data-step"),
                                                     first_overdue.get_by_role("link").inner_text())
        assert "dagen te laat" in late_text

        first_overdue.get_by_role("link", name="Harrie Smeets").click()
        page.wait_for_url("**/patients/demo-smeets")
        current = page.locator('svg.pathway g.current[data-step="conversation"]')

        assert 1 == current.count()

        row = page.locator('tr[data-step="conversation"]')
        row.get_by_role("link", name="Overdragen").click()
        page.get_by_label("Naar organisatie").select_option("Organization/homecare-wm")
        page.get_by_label("Reden (verplicht)").fill("GP on leave; the district nurse holds the conversation")
        page.get_by_role("button", name="Bevestigen").click()
        page.wait_for_url("**/patients/demo-smeets*")

        assert "Thuiszorg Westelijke Mijnstreek" in page.locator('tr[data-step="conversation"] td.owner').inner_text()

    def test_the_patient_page_shows_the_directives(self, page: Page, dashboard: Dashboard) -> None:
        """Sjef Bemelmans's ACP summary reads: no resuscitation, no ICU, hospital yes, at home."""
        page.set_viewport_size({"width": 1366, "height": 1600})
        _sign_in(page, dashboard.tokens["admin"])
        page.goto("/patients/demo-bemelmans")
        _shot(page, "patient", docs=True)

        def value(key: str) -> str:
            return page.locator(f'[data-directive="{key}"] dd').inner_text()

        assert ("nee", "nee", "ja", "thuis") == (value("cpr"), value("icu"), value("hospital"),
                                                 value("place_of_death"))

    def test_filters_survive_the_refresh(self, page: Page, dashboard: Dashboard) -> None:
        """After the list refreshes itself, the role filter still holds and the query string is kept."""
        _sign_in(page, dashboard.tokens["admin"])
        page.get_by_label("Rol").select_option("hospital")
        page.get_by_role("button", name="Filteren").click()
        page.wait_for_url("**/?*role=hospital*")
        before = page.locator("#worklist").get_attribute("data-refreshed")
        with page.expect_response(lambda r: "role=hospital" in r.url and r.request.headers.get("x-fragment")
                                  == "worklist"):
            page.evaluate("window.zorgpadRefresh()")
        page.wait_for_function("document.getElementById('worklist').dataset.refreshed !== undefined")
        roles = set(page.locator("#worklist tbody tr[data-step] td:nth-child(4) .muted").all_inner_texts())
        _shot(page, "worklist-filtered")

        assert (None, {"(ziekenhuis)"}, "hospital") == (before, roles, page.get_by_label("Rol").input_value())

    def test_an_organisation_does_not_see_another_organisations_patient(self, page: Page,
                                                                         dashboard: Dashboard) -> None:
        """Signed in as the Kerkrade GP practice, Harrie Smeets's page is not found."""
        _sign_in(page, dashboard.tokens["Organization/gp-kerkrade"])
        answer = page.goto("/patients/demo-smeets")

        assert answer is not None
        assert (404, 0) == (answer.status, page.get_by_text("Harrie Smeets").count())

    def test_the_pages_fit_a_tablet(self, page: Page, dashboard: Dashboard) -> None:
        """On a 768 px wide tablet the worklist needs no sideways scrolling of the page."""
        page.set_viewport_size({"width": 768, "height": 1024})
        _sign_in(page, dashboard.tokens["admin"])
        width = page.evaluate("document.documentElement.scrollWidth")
        _shot(page, "worklist-tablet")

        assert width <= 768

    def test_a_person_signs_in_with_a_username_and_password(self, page: Page, dashboard: Dashboard) -> None:
        """Type a username and password into the form, see the worklist with the person's name in the header,
        and open "Wachtwoord wijzigen" to find its form."""
        username, password = f"browser-{uuid.uuid4().hex[:8]}", f"pw {uuid.uuid4().hex}"
        db = dashboard.database()
        try:
            db.run(lambda s: create_account(s, datetime.now(UTC), username, password,
                                            organisation="Organization/coordination-zl", display_name="Anne Peters"))
        finally:
            db.dispose()
        page.goto("/")
        page.get_by_label("Gebruikersnaam").press_sequentially(username)
        page.get_by_label("Wachtwoord", exact=True).press_sequentially(password)
        _shot(page, "login")
        page.get_by_role("button", name="Inloggen").click()
        page.wait_for_url("**/")
        heading = page.get_by_role("heading", level=1).inner_text()
        who = page.locator("header .who").inner_text()

        assert ("Werklijst", True) == (heading, "Anne Peters" in who)

        page.get_by_role("link", name="Wachtwoord wijzigen").click()
        page.wait_for_url("**/account/password")
        fields = [page.get_by_label(label, exact=True).get_attribute("type")
                  for label in ("Huidig wachtwoord", "Nieuw wachtwoord", "Nieuw wachtwoord herhalen")]
        _shot(page, "password")

        assert ("Wachtwoord wijzigen", ["password"] * 3) == (page.get_by_role("heading", level=1).inner_text(),
                                                              fields)
