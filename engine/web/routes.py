"""The coordinator dashboard: server-rendered pages over the engine's tables, scoped per organisation.

Sign-in takes a username and password (an account, see :mod:`zorgpad.engine.store.accounts`) or a bearer
token, and opens a session whose random secret goes in an HttpOnly, SameSite=Strict cookie (the token itself
never does). Every sign-in, failed sign-in and sign-out is audited. Who may see which
patient is decided by the access model the composition root passes in (the FHIR layer's ``Scope``), so
there is one access model, not two. Every page showing patient data writes an audit row (``what="view"``);
every action goes through the engine (which audits with the signed-in actor) or audits itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from sqlalchemy import or_
from sqlalchemy.sql import Select
from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool
from zorgpad.engine._dsl import Pathway, Step
from zorgpad.engine._states import OPEN_STATES
from zorgpad.engine.errors import BusyError, ConfigurationError, PathwayError
from zorgpad.engine.ops import is_coordinator
from zorgpad.engine.outbox import retry_dead_letter
from zorgpad.engine.render import words
from zorgpad.engine.render.letters import LANGUAGES, display, language
from zorgpad.engine.render.svg import to_svg
from zorgpad.engine.runtime import Engine
from zorgpad.engine.store import accounts
from zorgpad.engine.store.accounts import SessionPolicy, SignIn
from zorgpad.engine.store.audit import Actor, audit, visible_to
from zorgpad.engine.store.enrolments import load_state
from zorgpad.engine.store.tables import AuditEntry, Enrolment, OutboxItem, StepRun, StoredResource
from zorgpad.engine.store.tokens import find_token
from zorgpad.engine.web._text import TEXT

HERE = Path(__file__).parent
COOKIE = "zorgpad_session"
LANG_COOKIE = "zorgpad_lang"
#: Steps due within this many days are "due soon".
SOON = timedelta(days=7)
ACTIONS = ("complete", "skip", "reassign")
#: The dashboard's own static files (no CDN, no front-end library).
STATIC = {"style.css": "text/css", "refresh.js": "text/javascript"}


class Access(Protocol):
    """What one signed-in user may see (the FHIR layer's ``Scope`` fits)."""

    def patients(self) -> Select[Any]:
        """SQL for the ``Patient/id`` references the user may see."""

    def sees_patient(self, session: Session, patient: str | None) -> bool:
        """Whether the user may see ``patient``."""


#: Makes the access model for (token name, organisation, administrator?).
AccessFactory = Callable[[str, str | None, bool], Access]


@dataclass(frozen=True)
class User:
    """The signed-in user: an account or a token, acting for an organisation or as an administrator."""

    name: str
    organisation: str | None
    admin: bool
    account: bool = False
    display_name: str = ""

    @property
    def actor(self) -> Actor:
        """The user as the audit log names them."""
        return Actor(f"dashboard:{self.name}", self.organisation)

    @property
    def entity(self) -> str:
        """What a sign-in or sign-out is about: the account, or that a token was used."""
        return f"account:{self.name}" if self.account else "token"


_env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True),
                   trim_blocks=True, lstrip_blocks=True)
_env.filters["display"] = display


def _when(value: datetime | None) -> str:
    return value.strftime("%d-%m-%Y %H:%M") if value is not None else ""


_env.filters["when"] = _when
_env.filters["role"] = words.role
_env.filters["timing"] = lambda step, lang: words.timing(step.offset, step.due, step.repeat, lang)
_env.globals["min_password"] = accounts.MIN_PASSWORD


def create_dashboard(engine: Engine, *, access: AccessFactory, acp_codes: Mapping[str, str] | None = None,
                     sessions: SessionPolicy | None = None, secure_cookies: bool = False) -> APIRouter:
    """The dashboard's routes; ``acp_codes`` names the SNOMED codes of the ACP summary (cpr, icu, hospital,
    ventilation, place_of_death, acp) so that clinical codes stay with the pathways; ``sessions`` says how
    long a sign-in lasts (default: from the environment, see :class:`SessionPolicy`); ``secure_cookies``
    marks the session cookie Secure even when the request reached Zorgpad over plain HTTP (behind a TLS proxy;
    it is always Secure on an HTTPS request)."""
    router = APIRouter(include_in_schema=False)
    codes = dict(acp_codes or {})
    db = engine.db
    policy = sessions or SessionPolicy.from_environment()

    def lang_of(request: Request) -> str:
        chosen = request.query_params.get("lang") or request.cookies.get(LANG_COOKIE) or language()
        return chosen if chosen in LANGUAGES else "nl"

    def user_of(request: Request) -> User | None:
        secret = request.cookies.get(COOKIE)
        if not secret:
            return None
        # The worklist's own refresh is not activity: an unattended screen signs itself out.
        activity = request.headers.get("x-fragment") != "worklist"
        found = db.run(lambda s: accounts.find_session(s, secret, engine.clock.now(), policy, activity=activity))
        return None if found is None else User(found.name, found.organisation, found.admin,
                                               found.account_id is not None, found.display_name)

    def page(request: Request, template_name: str, user: User | None, status: int = 200,
             **context: Any) -> HTMLResponse:
        lang = lang_of(request)
        other = "en" if lang == "nl" else "nl"
        query = {**request.query_params, "lang": other}
        body = _env.get_template(template_name).render(t=TEXT[lang], lang=lang, user=user, request=request,
                                              switch=f"{request.url.path}?{urlencode(query)}", **context)
        response = HTMLResponse(body, status_code=status)
        if request.query_params.get("lang") in LANGUAGES:
            response.set_cookie(LANG_COOKIE, lang, httponly=True, samesite="strict")
        return response

    def login_redirect() -> RedirectResponse:
        return RedirectResponse("/login", status_code=303)

    def scope_of(user: User) -> Access:
        return access(user.name, user.organisation, user.admin)

    def visible(session: Session, user: User, patient: str) -> bool:
        return user.admin or scope_of(user).sees_patient(session, patient)

    # -- sign-in -----------------------------------------------------------------------------------

    @router.get("/login")
    def login_form(request: Request) -> Response:
        return page(request, "login.html", None)

    @router.post("/login")
    async def login(request: Request) -> Response:
        form = await _form(request)
        if form.get("token", "").strip():
            return await run_in_threadpool(token_login, request, form["token"].strip())
        username, password = form.get("username", "").strip(), form.get("password", "")
        if not username or not password:
            return page(request, "login.html", None, status=400, error="missing")
        return await run_in_threadpool(password_login, request, username, password)

    def signed_in(request: Request, secret: str, response: Response | None = None) -> Response:
        """``response`` (by default a redirect to the worklist) carrying the new session's cookie; a session
        this browser had before ends."""
        earlier = request.cookies.get(COOKIE)
        if earlier and earlier != secret:
            db.run(lambda s: accounts.close_session(s, earlier))
        response = response or RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, secret, httponly=True, samesite="strict", path="/",
                            secure=secure_cookies or request.url.scheme == "https")
        return response

    def busy(request: Request, user: User | None) -> Response:
        text = TEXT[lang_of(request)]
        return page(request, "message.html", user, status=503, title=text["error"], message=text["busy"])

    def token_login(request: Request, token: str) -> Response:
        now = engine.clock.now()

        def work(session: Session) -> str | None:
            record = find_token(session, token)
            if record is None:
                audit(session, Actor("dashboard:token"), now, action="E", what="login", entity="token",
                      outcome="4", detail="unknown or revoked token")
                return None
            audit(session, Actor(f"dashboard:{record.name}", record.organisation), now, action="E", what="login",
                  entity="token")
            return accounts.open_session(session, now, policy, token_id=record.id)

        secret = db.run(work)
        if secret is None:
            return page(request, "login.html", None, status=401, error="token")
        return signed_in(request, secret)

    def verify_sign_in(username: str, password: str, now: datetime) -> accounts.PasswordCheck:
        """The account's password checked outside any transaction (scrypt takes a while)."""
        return accounts.check_sign_in(lambda name: db.run(lambda s: accounts.find_account(s, name)),
                                      username, password, now)

    def password_login(request: Request, username: str, password: str) -> Response:
        now = engine.clock.now()
        try:
            check = verify_sign_in(username, password, now)
        except BusyError:
            return busy(request, None)
        account = check.account

        def work(session: Session) -> str | None:
            outcome = accounts.record_sign_in(session, check, now)
            actor = Actor(f"dashboard:{check.username}", account.organisation if account else None)
            ok = outcome is SignIn.OK and account is not None
            audit(session, actor, now, action="E", what="login", entity=f"account:{check.username}",
                  outcome="0" if ok else "4", detail=None if ok else outcome.value)
            if not ok or account is None or account.id is None:
                return None
            return accounts.open_session(session, now, policy, account_id=account.id)

        secret = db.run(work)
        if secret is None:  # locked, disabled or unknown look the same as a wrong password (the audit row tells)
            return page(request, "login.html", None, status=401, error="refused", username=check.username)
        return signed_in(request, secret)

    @router.post("/logout")
    def logout(request: Request) -> Response:
        secret = request.cookies.get(COOKIE)
        user = user_of(request)
        if secret:
            now = engine.clock.now()

            def work(session: Session) -> None:
                accounts.close_session(session, secret)
                if user is not None:
                    audit(session, user.actor, now, action="E", what="logout", entity=user.entity)

            db.run(work)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return response

    @router.get("/account/password")
    def password_form(request: Request) -> Response:
        user = user_of(request)
        if user is None:
            return login_redirect()
        if not user.account:
            return page(request, "message.html", user, status=404, title=TEXT[lang_of(request)]["not_found"],
                        message="/account/password")
        return page(request, "password.html", user)

    @router.post("/account/password")
    async def change_password(request: Request) -> Response:
        user = await run_in_threadpool(user_of, request)
        if user is None:
            return login_redirect()
        if not user.account:
            return page(request, "message.html", user, status=404, title=TEXT[lang_of(request)]["not_found"],
                        message="/account/password")
        form = await _form(request)
        return await run_in_threadpool(new_password, request, user, form)

    def new_password(request: Request, user: User, form: Mapping[str, str]) -> Response:
        now = engine.clock.now()
        current, new, repeat = form.get("current", ""), form.get("new", ""), form.get("repeat", "")
        # A wrong current password counts as a failed sign-in: guessing it locks the account as well.
        try:
            check = verify_sign_in(user.name, current, now)
        except BusyError:
            return busy(request, user)
        outcome = db.run(lambda s: accounts.record_sign_in(s, check, now))
        problem, hashed = None, None
        if outcome is not SignIn.OK:
            problem = "locked" if outcome is SignIn.LOCKED else "current"
        elif new != repeat:
            problem = "repeat"
        else:
            try:
                hashed = accounts.NewPassword.of(new, user.name)  # hashed here, not in the transaction
            except BusyError:
                return busy(request, user)
            except ConfigurationError:
                problem = "rules"
        if problem is not None:
            def refuse(session: Session) -> None:
                audit(session, user.actor, now, action="U", what="password", entity=user.entity, outcome="4",
                      detail=problem)
                if problem == "locked" and check.account is not None:
                    accounts.end_sessions(session, account_id=check.account.id)

            db.run(refuse)
            if problem == "locked":
                return page(request, "login.html", None, status=429, error="locked", username=user.name)
            return page(request, "password.html", user, status=400, error=problem)

        def work(session: Session) -> str:
            assert hashed is not None
            changed = accounts.set_password(session, now, user.name, hashed)  # ends every session of the account
            audit(session, user.actor, now, action="U", what="password", entity=user.entity)
            assert changed.id is not None
            return accounts.open_session(session, now, policy, account_id=changed.id)

        secret = db.run(work)
        return signed_in(request, secret, page(request, "message.html", user, title=TEXT[lang_of(request)]["done"],
                                               message=TEXT[lang_of(request)]["password_changed"]))

    # -- the worklist ------------------------------------------------------------------------------

    @router.get("/")
    def worklist(request: Request) -> Response:
        user = user_of(request)
        if user is None:
            return login_redirect()
        filters = {k: request.query_params.get(k, "").strip() for k in ("org", "role", "pathway", "patient")}
        now = engine.clock.now()

        def read(session: Session) -> dict[str, Any]:
            data = _worklist(session, engine, user, scope_of(user), filters, now)
            audit(session, user.actor, now, action="R", what="view", entity="dashboard:worklist",
                  detail=str(request.url.query) or None)
            return data

        data = db.run(read)
        template = "_worklist.html" if request.headers.get("x-fragment") == "worklist" else "worklist.html"
        return page(request, template, user, filters=filters, now=now, query=str(request.url.query), **data)

    # -- one patient -------------------------------------------------------------------------------

    @router.get("/patients/{pid}")
    def patient_page(request: Request, pid: str) -> Response:
        user = user_of(request)
        if user is None:
            return login_redirect()
        ref = f"Patient/{pid}"
        now = engine.clock.now()

        def read(session: Session) -> dict[str, Any] | None:
            if not visible(session, user, ref):
                return None
            data = _patient(session, engine, ref, codes, lang_of(request))
            if not data["patient"] and not data["enrolments"]:
                return None  # unknown to Zorgpad: the same answer as a patient the user may not see
            audit(session, user.actor, now, action="R", what="view", entity=ref, patient=ref)
            return data

        data = db.run(read)
        if data is None:
            return page(request, "message.html", user, status=404, title=TEXT[lang_of(request)]["not_found"],
                        message=ref)
        return page(request, "patient.html", user, pid=pid, ref=ref, **data)

    # -- the audit log -----------------------------------------------------------------------------

    @router.get("/audit")
    def audit_log(request: Request) -> Response:
        user = user_of(request)
        if user is None:
            return login_redirect()
        filters = {k: request.query_params.get(k, "").strip() for k in AUDIT_FILTERS}
        page_number = min(int(filters["page"]), AUDIT_LAST_PAGE) if filters["page"].isdigit() and \
            int(filters["page"]) > 0 else 1
        now = engine.clock.now()

        def read(session: Session) -> dict[str, Any]:
            found = _audit_entries(session, None if user.admin else user.organisation, scope_of(user).patients(),
                                   filters, page_number)
            audit(session, user.actor, now, action="R", what="view", entity="dashboard:audit",
                  detail=str(request.url.query) or None)
            return found

        found = db.run(read)
        pages = {}
        for name, number in (("previous", page_number - 1), ("next", page_number + 1)):
            if (name == "previous" and number >= 1) or (name == "next" and found["more"]):
                pages[name] = "/audit?" + urlencode({**{k: v for k, v in filters.items() if v}, "page": number})
        return page(request, "audit.html", user, filters=filters, pages=pages, **found)

    # -- the pathway catalogue ---------------------------------------------------------------------

    @router.get("/pathways")
    def catalogue(request: Request) -> Response:
        user = user_of(request)
        if user is None:
            return login_redirect()
        lang = lang_of(request)
        pathways = [(p, Markup(to_svg(p, lang=lang))) for p in engine.registry.all()]  # noqa: S704 - to_svg escapes
        return page(request, "pathways.html", user, pathways=pathways)

    # -- actions: a GET shows the confirmation form, the POST does it --------------------------------

    def _step_context(session: Session, user: User, eid: str, step_id: str) -> dict[str, Any] | None:
        row = session.get(Enrolment, eid)
        if row is None or not visible(session, user, row.patient):
            return None
        pathway = engine.registry.get(row.pathway_id, row.pathway_version)
        if step_id not in {s.id for s in pathway.steps}:
            return None
        orgs = session.exec(select(StoredResource).where(StoredResource.resource_type == "Organization",
                                                         col(StoredResource.deleted).is_(False))
                            .order_by(col(StoredResource.id))).all()
        return {"enrolment": row, "step": pathway.step(step_id), "pathway": pathway,
                "organisations": [(f"Organization/{o.id}", display(o.content.get("name")) or o.id) for o in orgs],
                "pid": row.patient.removeprefix("Patient/")}

    @router.get("/enrolments/{eid}/steps/{step_id}/{action}")
    def confirm_step(request: Request, eid: str, step_id: str, action: str) -> Response:
        user = user_of(request)
        if user is None:
            return login_redirect()
        ctx = db.run(lambda s: _step_context(s, user, eid, step_id)) if action in ACTIONS else None
        if ctx is None:
            return page(request, "message.html", user, status=404, title=TEXT[lang_of(request)]["not_found"],
                        message=f"{eid}/{step_id}")
        return page(request, "confirm_step.html", user, action=action, **ctx)

    @router.post("/enrolments/{eid}/steps/{step_id}/{action}")
    async def do_step(request: Request, eid: str, step_id: str, action: str) -> Response:
        user = await run_in_threadpool(user_of, request)  # never a database wait on the event loop
        if user is None:
            return login_redirect()
        form = await _form(request)
        ctx = await run_in_threadpool(lambda: db.run(lambda s: _step_context(s, user, eid, step_id))) \
            if action in ACTIONS else None
        if ctx is None:
            return page(request, "message.html", user, status=404, title=TEXT[lang_of(request)]["not_found"],
                        message=f"{eid}/{step_id}")
        reason, owner = form.get("reason", "").strip(), form.get("owner", "").strip() or None
        valid_owner = owner in {ref for ref, _ in ctx["organisations"]}
        if not reason or (action == "reassign" and not valid_owner):
            return page(request, "confirm_step.html", user, status=400, action=action, error=True, **ctx)
        try:
            await run_in_threadpool(engine.override, eid, step_id, action, reason=reason, owner=owner,
                                    actor=user.actor)
        except PathwayError as exc:
            return page(request, "message.html", user, status=409, title=TEXT[lang_of(request)]["error"],
                        message=str(exc))
        return RedirectResponse(f"/patients/{ctx['pid']}#enrolment-{eid}", status_code=303)

    @router.get("/patients/{pid}/enrol")
    def confirm_enrol(request: Request, pid: str) -> Response:
        user = user_of(request)
        if user is None:
            return login_redirect()
        if not db.run(lambda s: visible(s, user, f"Patient/{pid}")):
            return page(request, "message.html", user, status=404, title=TEXT[lang_of(request)]["not_found"],
                        message=f"Patient/{pid}")
        return page(request, "confirm_enrol.html", user, pid=pid, pathways=engine.registry.latest())

    @router.post("/patients/{pid}/enrol")
    async def do_enrol(request: Request, pid: str) -> Response:
        user = await run_in_threadpool(user_of, request)  # never a database wait on the event loop
        if user is None:
            return login_redirect()
        form = await _form(request)
        ref = f"Patient/{pid}"
        allowed = await run_in_threadpool(lambda: db.run(lambda s: visible(s, user, ref)))
        if not allowed:
            return page(request, "message.html", user, status=404, title=TEXT[lang_of(request)]["not_found"],
                        message=ref)
        pathway_id, reason = form.get("pathway", ""), form.get("reason", "").strip()
        if pathway_id not in {p.id for p in engine.registry.latest()} or not reason:
            return page(request, "confirm_enrol.html", user, status=400, pid=pid, error=True,
                        pathways=engine.registry.latest())
        try:
            state = await run_in_threadpool(engine.enrol, pathway_id, ref, actor=user.actor)
            now = engine.clock.now()
            await run_in_threadpool(lambda: db.run(lambda s: audit(
                s, user.actor, now, action="C", what="enrol-reason", entity=f"CarePlan/{state.id}", patient=ref,
                detail=reason)))
        except PathwayError as exc:
            return page(request, "message.html", user, status=409, title=TEXT[lang_of(request)]["error"],
                        message=str(exc))
        return RedirectResponse(f"/patients/{pid}", status_code=303)

    def _dead_item(session: Session, user: User, item_id: int) -> OutboxItem | None:
        if not (user.admin or is_coordinator(session, user.organisation)):
            return None  # the same rule as the operators' API: administrators and coordinator organisations
        item = session.get(OutboxItem, item_id)
        if item is None or item.status != "dead":
            return None
        row = session.get(Enrolment, item.enrolment_id) if item.enrolment_id else None
        if not user.admin and (row is None or not visible(session, user, row.patient)):
            return None
        return item

    @router.get("/outbox/{item_id}/retry")
    def confirm_retry(request: Request, item_id: int) -> Response:
        user = user_of(request)
        if user is None:
            return login_redirect()
        item = db.run(lambda s: _dead_item(s, user, item_id))
        if item is None:
            return page(request, "message.html", user, status=404, title=TEXT[lang_of(request)]["not_found"],
                        message=str(item_id))
        return page(request, "confirm_retry.html", user, item=item)

    @router.post("/outbox/{item_id}/retry")
    def do_retry(request: Request, item_id: int) -> Response:
        user = user_of(request)
        if user is None:
            return login_redirect()
        now = engine.clock.now()

        def retry(session: Session) -> bool:
            item = _dead_item(session, user, item_id)
            if item is None:
                return False
            retry_dead_letter(session, item, user.actor, now)
            return True

        if not db.run(retry):
            return page(request, "message.html", user, status=404, title=TEXT[lang_of(request)]["not_found"],
                        message=str(item_id))
        return RedirectResponse("/", status_code=303)

    @router.get("/static/dashboard/{name}")
    def static(name: str) -> Response:
        if name not in STATIC:
            return Response(status_code=404)
        return FileResponse(HERE / "static" / name, media_type=STATIC[name],
                            headers={"Cache-Control": "max-age=300"})

    return router


async def _form(request: Request) -> dict[str, str]:
    """The url-encoded form (without python-multipart): the first value of each field."""
    fields = parse_qs((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
    return {key: values[0] for key, values in fields.items()}


# -- queries -----------------------------------------------------------------------------------------


def _organisations(session: Session) -> dict[str, str]:
    """``Organization/id`` -> name, for every organisation in the directory."""
    rows = session.exec(select(StoredResource).where(StoredResource.resource_type == "Organization",
                                                     col(StoredResource.deleted).is_(False))).all()
    return {f"Organization/{r.id}": display(r.content.get("name")) or r.id for r in rows}


def _names(session: Session, refs: set[str]) -> dict[str, str]:
    ids = [r.removeprefix("Patient/") for r in refs]
    rows = session.exec(select(StoredResource).where(StoredResource.resource_type == "Patient",
                                                     col(StoredResource.id).in_(ids))).all() if ids else []
    return {f"Patient/{r.id}": display((r.content.get("name") or [None])[0]) or r.id for r in rows}


@dataclass(frozen=True)
class WorkItem:
    """One open step on the worklist."""

    run: StepRun
    enrolment: Enrolment
    step: Step
    pathway: type[Pathway]
    late: float  # days past the due date (0 when not late)
    name: str

    @property
    def pid(self) -> str:
        """The patient's id (without ``Patient/``)."""
        return self.enrolment.patient.removeprefix("Patient/")


def _worklist(session: Session, engine: Engine, user: User, scope: Access, filters: Mapping[str, str],
              now: datetime) -> dict[str, Any]:
    query = (select(StepRun, Enrolment).join(Enrolment, col(Enrolment.id) == col(StepRun.enrolment_id))
             .where(col(StepRun.state).in_(sorted(OPEN_STATES)), Enrolment.status == "active"))
    if not user.admin:
        query = query.where(col(Enrolment.patient).in_(scope.patients()))
    if filters.get("org"):
        query = query.where(StepRun.owner == filters["org"])
    if filters.get("role"):
        query = query.where(StepRun.owner_role == filters["role"])
    if filters.get("pathway"):
        query = query.where(Enrolment.pathway_id == filters["pathway"])
    if filters.get("patient"):
        wanted = filters["patient"]
        query = query.where(Enrolment.patient == (wanted if wanted.startswith("Patient/") else f"Patient/{wanted}"))
    rows = session.exec(query.order_by(col(StepRun.due_at))).all()
    names = _names(session, {e.patient for _, e in rows})
    items = []
    for run, enrolment in rows:
        pathway = engine.registry.get(enrolment.pathway_id, enrolment.pathway_version)
        step = pathway.step(run.step_id)
        late = (now - run.due_at).total_seconds() / 86400 if run.due_at is not None and run.due_at < now else 0.0
        items.append(WorkItem(run, enrolment, step, pathway, late, names.get(enrolment.patient, enrolment.patient)))
    overdue = sorted((i for i in items if i.late > 0), key=lambda i: -i.late)
    soon = [i for i in items if i.late == 0 and i.run.due_at is not None and i.run.due_at <= now + SOON]
    handovers = [i for i in items if i.step.handover is not None]
    escalations = [i for i in items if i.run.escalated]
    dead_query = select(OutboxItem, Enrolment).join(
        Enrolment, col(Enrolment.id) == col(OutboxItem.enrolment_id), isouter=True).where(OutboxItem.status == "dead")
    if not user.admin:
        dead_query = dead_query.where(col(Enrolment.patient).in_(scope.patients()))
    dead = [{"item": item, "enrolment": e} for item, e in session.exec(dead_query.order_by(col(OutboxItem.id))).all()]
    orgs = sorted({i.run.owner for i in items if i.run.owner})
    return {"orgs": _organisations(session), "overdue": overdue, "soon": soon, "handovers": handovers,
            "escalations": escalations, "dead": dead,
            "choices": {"org": orgs, "role": sorted({i.run.owner_role for i in items if i.run.owner_role}),
                        "pathway": sorted({p.id for p in engine.registry.latest()}),
                        "patient": sorted(names.items(), key=lambda kv: kv[1])}}


#: The audit log's filters (query parameters), how many entries a page shows, and the last page asked for.
AUDIT_FILTERS = ("patient", "who", "what", "from", "to", "page")
AUDIT_PAGE = 100
AUDIT_LAST_PAGE = 1_000_000


def _day(text: str) -> datetime | None:
    """The start of the day ``text`` names (YYYY-MM-DD), or None when it names none that can be searched."""
    try:
        day = datetime.fromisoformat(text).replace(tzinfo=UTC) if text else None
    except ValueError:
        return None  # an unreadable date filters nothing (the field shows what was typed)
    return day if day is not None and day.year < 9999 else None


def _audit_entries(session: Session, organisation: str | None, patients: Select[Any], filters: Mapping[str, str],
                   page_number: int) -> dict[str, Any]:
    """One page of the audit log, newest first, as ``organisation`` may see it (None: everything)."""
    query = select(AuditEntry)
    if organisation is not None:
        query = query.where(visible_to(organisation, patients))
    if filters.get("patient"):
        wanted = filters["patient"]
        query = query.where(AuditEntry.patient == (wanted if wanted.startswith("Patient/") else f"Patient/{wanted}"))
    if filters.get("who"):
        query = query.where(or_(col(AuditEntry.organisation) == filters["who"],
                                col(AuditEntry.actor).contains(filters["who"], autoescape=True)))
    if filters.get("what"):
        query = query.where(AuditEntry.what == filters["what"])
    start, end = _day(filters.get("from", "")), _day(filters.get("to", ""))
    if start is not None:
        query = query.where(col(AuditEntry.recorded_at) >= start)
    if end is not None:
        query = query.where(col(AuditEntry.recorded_at) < end + timedelta(days=1))
    rows = session.exec(query.order_by(col(AuditEntry.id).desc()).offset((page_number - 1) * AUDIT_PAGE)
                        .limit(AUDIT_PAGE + 1)).all()
    return {"entries": rows[:AUDIT_PAGE], "more": len(rows) > AUDIT_PAGE, "page_number": page_number}


def _coded(concept: Any, code: str | None) -> bool:
    items = concept if isinstance(concept, list) else [concept]
    return code is not None and any(isinstance(c, Mapping) and any(x.get("code") == code for x in c.get("coding") or [])
                                    for c in items)


def _patient(session: Session, engine: Engine, ref: str, codes: Mapping[str, str], lang: str) -> dict[str, Any]:
    pid = ref.removeprefix("Patient/")
    resources = session.exec(select(StoredResource).where(StoredResource.patient == ref,
                                                          col(StoredResource.deleted).is_(False))).all()
    patient = next((r.content for r in resources if r.resource_type == "Patient" and r.id == pid), {})
    rows = session.exec(select(Enrolment).where(Enrolment.patient == ref)
                        .order_by(col(Enrolment.enrolled_at), col(Enrolment.id))).all()
    enrolments = []
    for row in rows:
        state = load_state(session, row)
        pathway = engine.registry.get(row.pathway_id, row.pathway_version)
        current = frozenset(s for s, run in state.steps.items() if run.state in OPEN_STATES)
        states = {s: str(run.state) for s, run in state.steps.items()}
        label = f"{pathway.title} {pathway.version}"
        enrolments.append({"row": row, "state": state, "pathway": pathway, "current": current,
                           "svg": Markup(to_svg(pathway, states=states, current=current, label=label, lang=lang))})  # noqa: S704
    timeline = session.exec(select(AuditEntry).where(AuditEntry.patient == ref, AuditEntry.what != "view")
                            .order_by(col(AuditEntry.recorded_at).desc(), col(AuditEntry.id).desc()).limit(300)).all()
    return {"orgs": _organisations(session), "patient": patient,
            "name": display((patient.get("name") or [None])[0]) or ref, "enrolments": enrolments, "timeline": timeline,
            "acp": _acp_summary(session, [r.content for r in resources], patient, codes)}


def _acp_summary(session: Session, resources: list[dict[str, Any]], patient: Mapping[str, Any],
                 codes: Mapping[str, str]) -> dict[str, Any]:
    """The treatment directives (permit/deny per treatment), the wishes and the people, with dates."""
    directives: dict[str, tuple[bool, str]] = {}
    for resource in resources:
        if resource.get("resourceType") != "Consent" or resource.get("status") != "active":
            continue
        provision = resource.get("provision") or {}
        for key in ("cpr", "icu", "hospital", "ventilation"):
            if _coded(provision.get("code"), codes.get(key)):
                directives[key] = (provision.get("type") == "permit", str(resource.get("dateTime") or ""))
    place = next((display(r.get("valueCodeableConcept")) for r in resources if r.get("resourceType") == "Observation"
                  and _coded(r.get("code"), codes.get("place_of_death"))), None)
    conversations = sorted(
        str((r.get("performedPeriod") or {}).get("start") or r.get("performedDateTime") or "")
        for r in resources if r.get("resourceType") == "Procedure" and r.get("status") == "completed"
        and _coded(r.get("code"), codes.get("acp")))
    people = [display((r.get("name") or [None])[0]) + (f" ({display(r.get('relationship'))})"
                                                      if r.get("relationship") else "")
              for r in resources if r.get("resourceType") == "RelatedPerson"]
    lead = []
    for reference in patient.get("generalPractitioner") or []:
        ref = str(reference.get("reference", ""))
        kind, _, rid = ref.partition("/")
        found = session.get(StoredResource, (kind, rid)) if rid else None
        lead.append(display(found.content.get("name")) if found is not None else display(reference))
    return {"directives": directives, "place": place, "last": conversations[-1] if conversations else None,
            "people": people, "lead": lead}
