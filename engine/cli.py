"""The `zorgpad` command line. Errors print one line, ``zorgpad: error: …``, and exit non-zero."""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click
from sqlalchemy.exc import SQLAlchemyError
from zorgpad.engine._dsl import Pathway
from zorgpad.engine.clock import utc
from zorgpad.engine.errors import ConfigurationError, PathwayError
from zorgpad.engine.registry import Registry, load_file
from zorgpad.engine.store.db import ENV_VAR, Database, database_url

F = TypeVar("F", bound=Callable[..., Any])


class CLIError(click.ClickException):
    """A one-line error with exit status 1."""

    def show(self, file: Any = None) -> None:
        click.echo(f"zorgpad: error: {self.format_message()}", err=True)


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except (PathwayError, ConfigurationError) as exc:
        raise CLIError(str(exc)) from exc
    except SQLAlchemyError as exc:
        first = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise CLIError(f"database: {first}") from exc


def _db_option(func: F) -> F:
    return click.option("--db", "db_url", default=None, metavar="URL",
                        help=f"Database URL (default: ${ENV_VAR} or sqlite:///zorgpad.db).")(func)


def _parse_now(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        raise CLIError(f"invalid --now {value!r}: expected an ISO-8601 time such as 2026-03-01T09:00:00Z") from None


def _open(db_url: str | None, *, migrate: bool = False) -> Database:
    from zorgpad.engine.store.migrate import current_revision

    url = database_url(db_url)
    if url.startswith("sqlite:///") and not migrate:
        path = url.removeprefix("sqlite:///")
        if path and path != ":memory:" and not Path(path).exists():
            raise CLIError(f"database file {path} does not exist; run `zorgpad db upgrade --db {url}` first")
    db = Database(db_url)
    if migrate:
        db.upgrade()
    elif current_revision(db) is None:
        raise CLIError(f"database {database_url(db_url)} has no Zorgpad schema; run `zorgpad db upgrade` first")
    return db


def _registry(files: tuple[str, ...]) -> Registry:
    return Registry.with_files(files)


_files_option = click.option("--file", "files", multiple=True, metavar="FILE", type=click.Path(),
                             help="Also load pathways from this Python file (repeatable).")


class _OneLineErrors(click.Group):
    """Every error, usage errors included, is one line on stderr: ``zorgpad: error: …``."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            result = super().main(*args, **kwargs)
        except click.UsageError as exc:
            click.echo(f"zorgpad: error: {exc.format_message()}", err=True)
            sys.exit(2)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("zorgpad: error: aborted", err=True)
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)


@click.group(cls=_OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option("0.1.0", prog_name="zorgpad")
def main() -> None:
    """Zorgpad: proactive palliative care pathways, run durably against FHIR data."""


# -- pathways ---------------------------------------------------------------------------------------

@main.group()
def pathways() -> None:
    """List, validate, draw and migrate pathway definitions."""


@pathways.command("list")
@_files_option
def pathways_list(files: tuple[str, ...]) -> None:
    """List every registered pathway version."""
    with _errors():
        registry = _registry(files)
    found = registry.all()
    if not found:
        click.echo("no pathways registered")
    for p in found:
        click.echo(f"{p.id}\t{p.version}\t{len(p.steps)} steps\t{p.title}")


@pathways.command("validate")
@click.argument("files", nargs=-1, type=click.Path())
def pathways_validate(files: tuple[str, ...]) -> None:
    """Validate pathway FILEs, or else every registered pathway (built-in and entry points)."""
    failures = 0
    found: list[type[Pathway]] = []
    if files:
        for path in files:
            try:
                found += load_file(path)
            except PathwayError as exc:
                failures += 1
                click.echo(f"zorgpad: error: {path}: {exc}" if not str(exc).startswith(path) else
                           f"zorgpad: error: {exc}", err=True)
    else:
        with _errors():
            found = Registry.default().all()
    for pathway in found:
        click.echo(f"ok: {pathway.id} {pathway.version} ({len(pathway.steps)} steps)")
    if failures:
        sys.exit(1)


@pathways.command("graph")
@click.argument("pathway_id")
@click.option("--version", "version", default=None, help="A version other than the newest.")
@_files_option
def pathways_graph(pathway_id: str, version: str | None, files: tuple[str, ...]) -> None:
    """Print a pathway as a Mermaid flowchart."""
    from zorgpad.engine.render.graph import to_mermaid

    with _errors():
        click.echo(to_mermaid(_registry(files).get(pathway_id, version)), nl=False)


@pathways.command("export")
@click.argument("pathway_id")
@click.option("--version", "version", default=None, help="A version other than the newest.")
@_files_option
def pathways_export(pathway_id: str, version: str | None, files: tuple[str, ...]) -> None:
    """Print a pathway as a FHIR R4 PlanDefinition (JSON)."""
    import json

    from zorgpad.fhir.plandefinition import to_plandefinition  # composition root: the CLI may use the FHIR layer

    with _errors():
        plan = to_plandefinition(_registry(files).get(pathway_id, version))
    click.echo(json.dumps(plan, indent=2, ensure_ascii=False))


@pathways.command("migrate")
@click.argument("pathway_id")
@click.option("--from", "from_version", required=True, help="The version enrolments are on now.")
@click.option("--to", "to_version", required=True, help="The version to move them to.")
@click.option("--map", "mappings", multiple=True, metavar="OLD=NEW", help="Rename a step (repeatable).")
@click.option("--drop", "drops", multiple=True, metavar="STEP", help="Drop a step of the old version.")
@_files_option
@_db_option
def pathways_migrate(pathway_id: str, from_version: str, to_version: str, mappings: tuple[str, ...],
                     drops: tuple[str, ...], files: tuple[str, ...], db_url: str | None) -> None:
    """Move active enrolments from one pathway version to another."""
    from zorgpad.engine.versioning import migrate_enrolments

    step_map: dict[str, str | None] = {}
    for item in mappings:
        old, sep, new = item.partition("=")
        if not sep or not old or not new:
            raise CLIError(f"invalid --map {item!r}: expected OLD=NEW")
        step_map[old] = new
    step_map.update(dict.fromkeys(drops))
    with _errors():
        registry = _registry(files)
        moved = migrate_enrolments(_open(db_url), registry, pathway_id, from_version, to_version,
                                   step_map=step_map, now=datetime.now(UTC))
    click.echo(f"migrated {len(moved)} enrolments of {pathway_id} from {from_version} to {to_version}")


# -- running ----------------------------------------------------------------------------------------

@main.command()
@click.option("--now", default=None, metavar="ISO-8601", help="Fire what is due by this time (default: now).")
@_files_option
@_db_option
def tick(now: str | None, files: tuple[str, ...], db_url: str | None) -> None:
    """Fire every timer that is due, then exit."""
    from zorgpad.engine.app import build_engine

    moment = _parse_now(now)
    with _errors():
        engine = build_engine(_open(db_url), _registry(files))
        fired = engine.tick(moment)
    click.echo(f"fired {fired} timers")


@main.command()
@click.option("--now", default=None, metavar="ISO-8601", help="Deliver what is due by this time.")
@_files_option
@_db_option
def deliver(now: str | None, files: tuple[str, ...], db_url: str | None) -> None:
    """Flush the outbox once, then exit."""
    from zorgpad.engine.app import build_engine

    moment = _parse_now(now)
    with _errors():
        report = build_engine(_open(db_url), _registry(files)).deliver(moment)
    click.echo(f"delivered {report.delivered}, retrying {report.retried}, dead-lettered {report.dead}")


@main.command()
@click.option("--interval", default=10.0, show_default=True, type=click.FloatRange(min=0.5),
              help="Seconds between scheduled tick and deliver runs.")
@_files_option
@_db_option
def worker(interval: float, files: tuple[str, ...], db_url: str | None) -> None:
    """Serve the tick, deliver and ingest Prefect flows against $PREFECT_API_URL (blocks)."""
    import os
    from datetime import timedelta

    from zorgpad.engine.prefect_flows import serve_worker

    if not os.environ.get("PREFECT_API_URL"):
        raise CLIError("set PREFECT_API_URL to the Prefect server's API, e.g. http://prefect:4200/api")
    with _errors():
        _open(db_url).dispose()  # fail now, not in every flow run, when the database is not there
        _registry(files)
    if db_url:
        os.environ[ENV_VAR] = db_url  # the flow runs read the database from the worker's environment
    serve_worker(timedelta(seconds=interval), files)


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@_db_option
def db_upgrade(db_url: str | None) -> None:
    """Create or migrate the schema to the newest version."""
    from zorgpad.engine.store.migrate import current_revision

    with _errors():
        database = _open(db_url, migrate=True)
        click.echo(f"database {database_url(db_url)} is at revision {current_revision(database)}")


@db.command("backup")
@click.argument("target", type=click.Path(dir_okay=False))
@_db_option
def db_backup(target: str, db_url: str | None) -> None:
    """Copy a SQLite database to a new file while Zorgpad keeps running (PostgreSQL: use pg_dump)."""
    with _errors():
        size = _open(db_url).backup(target)
    click.echo(f"backed up {database_url(db_url)} to {target} ({size:,} bytes)")


@main.group()
def token() -> None:
    """Bearer tokens for the FHIR interface and the dashboard."""


@token.command("create")
@click.option("--org", "organisation", default=None, metavar="ORGANIZATION_ID",
              help="The organisation the token acts for: an id (gp-1) or Organization/gp-1.")
@click.option("--admin", is_flag=True, help="An administrator token: sees every patient.")
@click.option("--name", default=None, help="A label for the audit log (default: the organisation).")
@_db_option
def token_create(organisation: str | None, admin: bool, name: str | None, db_url: str | None) -> None:
    """Create a token and print it (it is stored only as a hash: keep it now)."""
    from zorgpad.engine.store.tokens import create_token

    if admin == (organisation is not None):
        raise CLIError("give exactly one of --org ORGANIZATION_ID or --admin")
    if organisation is not None and not organisation.startswith("Organization/"):
        organisation = f"Organization/{organisation}"
    with _errors():
        database = _open(db_url)

        def work(session: Any) -> str:
            secret = create_token(session, datetime.now(UTC), organisation=organisation, admin=admin, name=name)
            _administered(session, "C", "token", "token", f"{name or organisation or 'admin'} for "
                                                          f"{organisation or 'admin'}")
            return secret

        secret = database.run(work)
    click.echo(secret)


@token.command("list")
@_db_option
def token_list(db_url: str | None) -> None:
    """List the tokens: id, for whom, name, created, revoked (the secrets are not stored)."""
    from zorgpad.engine.store.tokens import tokens

    with _errors():
        found = _open(db_url).run(tokens)
    if not found:
        click.echo("no tokens")
    for record in found:
        revoked = f"revoked {record.revoked_at:%Y-%m-%d %H:%M}" if record.revoked_at else "live"
        click.echo(f"{record.id}\t{record.organisation or 'admin'}\t{record.name}\t"
                   f"created {record.created_at:%Y-%m-%d %H:%M}\t{revoked}")


@token.command("revoke")
@click.argument("token_id", type=int)
@_db_option
def token_revoke(token_id: int, db_url: str | None) -> None:
    """Revoke a token by its id (from `zorgpad token list`): refused at once, its dashboard sessions end."""
    from zorgpad.engine.store.tokens import revoke_token

    with _errors():

        def work(session: Any) -> Any:
            record = revoke_token(session, token_id, datetime.now(UTC))
            _administered(session, "U", "token", f"token:{record.id}", f"revoked {record.name}")
            return record

        record = _open(db_url).run(work)
    click.echo(f"revoked token {record.id} ({record.name})")


# -- dashboard accounts -----------------------------------------------------------------------------

@main.group()
def user() -> None:
    """Dashboard accounts: a username and password for a person, per organisation or as administrator."""


def _administered(session: Any, action: str, what: str, entity: str, detail: str | None = None) -> None:
    """Audit a change to an account or a token made on the command line (NEN 7513: access rights are logged),
    under the operating-system user who ran it."""
    from zorgpad.engine.store.audit import Actor, audit

    try:
        who = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        who = f"uid-{os.getuid()}"
    audit(session, Actor(f"cli:{who}"), datetime.now(UTC), action=action, what=what, entity=entity, detail=detail)


def _new_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise CLIError("no terminal to ask for the password on: pass it with --password-stdin")
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True))


_password_stdin = click.option("--password-stdin", is_flag=True,
                               help="Read the password from the first line of standard input (no prompt).")


@user.command("create")
@click.argument("username")
@click.option("--org", "organisation", default=None, metavar="ORGANIZATION_ID",
              help="The organisation the person works for: an id (gp-1) or Organization/gp-1.")
@click.option("--admin", is_flag=True, help="An administrator: sees every patient.")
@click.option("--name", default=None, help="The person's name as the dashboard shows it.")
@_password_stdin
@_db_option
def user_create(username: str, organisation: str | None, admin: bool, name: str | None, password_stdin: bool,
                db_url: str | None) -> None:
    """Create an account; the password is asked for (twice) unless --password-stdin."""
    from zorgpad.engine.store.accounts import NewPassword, create_account

    if admin == (organisation is not None):
        raise CLIError("give exactly one of --org ORGANIZATION_ID or --admin")
    with _errors():
        database = _open(db_url)
        password = NewPassword.of(_new_password(password_stdin), username)  # hashed before the transaction

        def work(session: Any) -> Any:
            account = create_account(session, datetime.now(UTC), username, password, organisation=organisation,
                                     admin=admin, display_name=name)
            _administered(session, "C", "account", f"account:{account.username}",
                          f"for {account.organisation or 'admin'}")
            return account

        account = database.run(work)
    click.echo(f"created account {account.username} ({account.organisation or 'admin'})")


@user.command("password")
@click.argument("username")
@_password_stdin
@_db_option
def user_password(username: str, password_stdin: bool, db_url: str | None) -> None:
    """Set a new password (unlocks the account and signs out its sessions)."""
    from zorgpad.engine.store.accounts import NewPassword, set_password

    with _errors():
        database = _open(db_url)
        password = NewPassword.of(_new_password(password_stdin), username)  # hashed before the transaction

        def work(session: Any) -> Any:
            account = set_password(session, datetime.now(UTC), username, password)
            _administered(session, "U", "password", f"account:{account.username}")
            return account

        account = database.run(work)
    click.echo(f"new password set for {account.username}")


def _set_disabled(session: Any, username: str, disabled: bool) -> Any:
    from zorgpad.engine.store.accounts import set_disabled

    account = set_disabled(session, datetime.now(UTC), username, disabled)
    _administered(session, "U", "account", f"account:{account.username}", "disabled" if disabled else "enabled")
    return account


@user.command("disable")
@click.argument("username")
@_db_option
def user_disable(username: str, db_url: str | None) -> None:
    """Disable an account: it can no longer sign in and its sessions end."""
    with _errors():
        account = _open(db_url).run(lambda s: _set_disabled(s, username, True))
    click.echo(f"disabled {account.username}")


@user.command("enable")
@click.argument("username")
@_db_option
def user_enable(username: str, db_url: str | None) -> None:
    """Enable a disabled account again (also lifts a lock-out)."""
    with _errors():
        account = _open(db_url).run(lambda s: _set_disabled(s, username, False))
    click.echo(f"enabled {account.username}")


@user.command("list")
@_db_option
def user_list(db_url: str | None) -> None:
    """List the accounts: username, organisation, name, state."""
    from zorgpad.engine.store.accounts import accounts

    with _errors():
        found = _open(db_url).run(accounts)
    if not found:
        click.echo("no accounts")
    now = datetime.now(UTC)
    for account in found:
        state = ("disabled" if account.disabled_at else
                 f"locked until {account.locked_until:%H:%M}" if account.locked_until and account.locked_until > now
                 else "active")
        click.echo(f"{account.username}\t{account.organisation or 'admin'}\t{account.display_name}\t{state}")


def _serve(db_url: str | None, host: str, port: int, tick_interval: float, files: tuple[str, ...],
           workers: int = 1) -> None:
    import uvicorn
    from zorgpad.engine import app as asgi

    with _errors():
        database = _open(db_url, migrate=True)
        registry = _registry(files)  # a bad pathway file fails here, once, not in every worker
        if workers > 1:
            database.dispose()
            os.environ.update(asgi.worker_environment(database.url, files, tick_interval or None))
        else:
            app = asgi.create_app(database, registry=registry, tick_interval=tick_interval or None)
    processes = f", {workers} worker processes" if workers > 1 else ""
    click.echo(f"Zorgpad listening on http://{host}:{port}/  (health: http://{host}:{port}/healthz){processes}")
    if workers > 1:
        uvicorn.run(asgi.WORKER_APP, factory=True, workers=workers, host=host, port=port, log_level="warning")
    else:
        uvicorn.run(app, host=host, port=port, log_level="warning")


_serve_options = [
    click.option("--host", default="127.0.0.1", show_default=True),
    click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535)),
    click.option("--tick-interval", default=5.0, show_default=True, type=click.FloatRange(min=0),
                 help="Seconds between tick/deliver rounds; 0 turns the embedded runner off."),
    click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
                 help="Server processes sharing the port, each with its own embedded runner (pays off on "
                      "PostgreSQL; SQLite lets one process write at a time)."),
    _files_option,
    _db_option,
]


def _with_serve_options(func: F) -> F:
    for option in reversed(_serve_options):
        func = option(func)
    return func


@main.command()
@_with_serve_options
def serve(host: str, port: int, tick_interval: float, workers: int, files: tuple[str, ...],
          db_url: str | None) -> None:
    """Run the HTTP API with the embedded tick/deliver runner."""
    _serve(db_url, host, port, tick_interval, files, workers)


@main.command()
@_with_serve_options
def demo(host: str, port: int, tick_interval: float, workers: int, files: tuple[str, ...],
         db_url: str | None) -> None:
    """Seed a fictional region into the database, then serve it."""
    from zorgpad.engine.app import build_engine
    from zorgpad.engine.demo import seed

    url = db_url or "sqlite:///zorgpad-demo.db"
    with _errors():
        engine = build_engine(_open(url, migrate=True), _registry(files))
        region = seed(engine, datetime.now(UTC))
    if region.created:
        click.echo(f"seeded {len(region.patients)} demo patients into {url}")
    else:
        click.echo(f"{url} already holds the demo region; nothing seeded "
                   f"(new token: zorgpad token create --admin --db {url})")
    for name, secret in region.tokens.items():
        click.echo(f"token {name}: {secret}")
    for username, password in region.accounts.items():
        click.echo(f"dashboard account {username}: password {password}")
    click.echo(f"FHIR base: http://{host}:{port}/fhir  (send a token as 'Authorization: Bearer …')")
    click.echo(f"dashboard: http://{host}:{port}/login  (an account, or a token)")
    _serve(url, host, port, tick_interval, files, workers)
