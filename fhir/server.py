"""The FHIR R4 REST interface under ``/fhir``: ``application/fhir+json``, FHIR 4.0.1.

Each request is one database transaction; each error is an OperationOutcome with a 4xx (client) or
503 (database unavailable) status. The routes stay thin: the work is in :mod:`interactions`,
:mod:`search`, :mod:`bundles`, :mod:`messaging` and :mod:`operations`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from email.utils import format_datetime
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from zorgpad.engine.errors import PathwayError, UnknownPathwayError
from zorgpad.engine.runtime import Engine
from zorgpad.engine.store.tables import ResourceVersion, StoredResource
from zorgpad.fhir import interactions
from zorgpad.fhir.access import authenticate
from zorgpad.fhir.capabilities import capability_statement
from zorgpad.fhir.context import FHIRContext
from zorgpad.fhir.outcomes import FHIRError, informational

FHIR_JSON = "application/fhir+json"
_ACCEPTED_BODIES = ("application/fhir+json", "application/json", "application/json-patch+json")
log = logging.getLogger("zorgpad.fhir")
T = TypeVar("T")


class FHIRResponse(JSONResponse):
    """JSON with the FHIR media type."""

    media_type = FHIR_JSON


def _error_response(error: FHIRError) -> FHIRResponse:
    headers = {"WWW-Authenticate": 'Bearer realm="zorgpad"'} if error.status == 401 else None
    return FHIRResponse(error.outcome(), status_code=error.status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error under /fhir with an OperationOutcome."""

    @app.exception_handler(FHIRError)
    async def _fhir_error(_request: Request, exc: FHIRError) -> Response:
        return _error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg')}" for e in exc.errors())
        return _error_response(FHIRError(400, problems or "invalid request", code="invalid"))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error serving %s %s", request.method, request.url.path)
        return _error_response(FHIRError(500, f"internal error ({type(exc).__name__}); it has been logged",
                                         code="exception"))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if not request.url.path.startswith("/fhir"):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)
        code = {404: "not-found", 405: "not-supported"}.get(exc.status_code, "processing")
        return _error_response(FHIRError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}",
                                         code=code))


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/fhir"


def _headers_for(stored: StoredResource | ResourceVersion, base: str) -> dict[str, str]:
    rtype, rid, vid = stored.resource_type, stored.id, stored.version_id
    return {"ETag": f'W/"{vid}"', "Last-Modified": format_datetime(stored.last_updated, usegmt=True),
            "Content-Location": f"{base}/{rtype}/{rid}/_history/{vid}"}


MAX_BODY = 50 * 1024 * 1024


class Body:
    """A request body read but not yet parsed: parsing waits until the caller is authenticated."""

    def __init__(self, content_type: str, raw: bytes, too_large: bool) -> None:
        self.content_type = content_type
        self.raw = raw
        self.too_large = too_large

    def parse(self) -> Any:
        """The JSON body, or a 4xx FHIRError saying what is wrong with it."""
        if self.content_type and self.content_type not in _ACCEPTED_BODIES:
            raise FHIRError(415, f"unsupported Content-Type {self.content_type!r}: send application/fhir+json",
                            code="not-supported")
        if self.too_large:
            raise FHIRError(413, "the body is larger than 50 MB", code="too-costly")
        if not self.raw.strip():
            raise FHIRError(400, "the request has no body", code="required")
        try:
            return json.loads(self.raw, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:
            raise FHIRError(400, f"the body is not valid JSON: {exc}", code="structure") from None


async def _body(request: Request) -> Body:
    content_type = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return Body(content_type, b"", too_large=True)
        chunks.append(chunk)
    return Body(content_type, b"".join(chunks), too_large=False)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _check_format(request: Request) -> None:
    fmt = request.query_params.get("_format")
    if fmt and fmt not in ("json", "application/json", "application/fhir+json"):
        raise FHIRError(406, f"_format {fmt!r} is not supported: this server speaks JSON", code="not-supported")
    accept = request.headers.get("accept", "")
    if accept and "xml" in accept and "json" not in accept and "*/*" not in accept:
        raise FHIRError(406, "this server answers in application/fhir+json only", code="not-supported")


def _prefer(request: Request, key: str) -> str | None:
    for part in request.headers.get("prefer", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name.strip() == key:
            return value.strip().strip('"')
    return None


def _written(request: Request, stored: StoredResource, base: str, status: int, *, location: bool) -> Response:
    headers = _headers_for(stored, base)
    if location:
        headers["Location"] = headers["Content-Location"]
    wish = _prefer(request, "return")
    if wish == "minimal":
        return Response(status_code=status, headers=headers)
    if wish == "OperationOutcome":
        return FHIRResponse(informational(f"{stored.resource_type}/{stored.id} stored as version "
                                          f"{stored.version_id}"), status_code=status, headers=headers)
    return FHIRResponse(stored.content, status_code=status, headers=headers)


def create_router(engine: Engine) -> APIRouter:
    """The /fhir routes over ``engine``."""
    router = APIRouter(prefix="/fhir", tags=["FHIR R4"])

    def serve(request: Request, work: Callable[[FHIRContext], T]) -> T:
        _check_format(request)
        strict = _prefer(request, "handling") == "strict"

        def transaction(session: Session) -> T:
            principal = authenticate(session, request.headers.get("authorization"))
            ctx = FHIRContext(engine, session, principal, engine.clock.now(), _base_url(request), strict=strict)
            return work(ctx)

        try:
            return engine.db.run(transaction)
        except UnknownPathwayError as exc:
            raise FHIRError(404, str(exc), code="not-found") from None
        except PathwayError as exc:
            raise FHIRError(422, str(exc), code="business-rule") from None
        except (DataError, IntegrityError) as exc:
            first = str(exc.orig or exc).strip().splitlines()[0]
            status, code = (409, "conflict") if isinstance(exc, IntegrityError) else (400, "value")
            raise FHIRError(status, f"the database refused a value: {first}", code=code) from None
        except (OperationalError, DBAPIError) as exc:
            log.warning("database unavailable: %s", exc)
            raise FHIRError(503, "the database is unavailable; try again shortly", code="transient") from None

    @router.get("/metadata")
    def metadata(request: Request) -> Response:
        """The CapabilityStatement (no token needed, as the FHIR spec expects)."""
        _check_format(request)
        from zorgpad.engine._projection import instant

        return FHIRResponse(capability_statement(_base_url(request), instant(engine.clock.now())))

    @router.post("")
    async def bundle(request: Request) -> Response:
        """A transaction or batch Bundle."""
        from zorgpad.fhir.bundles import process_bundle

        body = await _body(request)
        return FHIRResponse(await run_in_threadpool(serve, request, lambda ctx: process_bundle(ctx, body.parse())))

    @router.post("/$process-message")
    async def process_message(request: Request) -> Response:
        """FHIR messaging: a Bundle of type message, MessageHeader first."""
        from zorgpad.fhir.messaging import process_message as handle

        body = await _body(request)
        return FHIRResponse(await run_in_threadpool(serve, request, lambda ctx: handle(ctx, body.parse())))

    @router.get("/PlanDefinition/{resource_id}/$apply", operation_id="apply_get")
    @router.post("/PlanDefinition/{resource_id}/$apply", operation_id="apply_post")
    async def apply(request: Request, resource_id: str) -> Response:
        """Enrol the subject(s) in the pathway; answers the CarePlan."""
        from zorgpad.fhir.operations import apply_plandefinition

        body = await _body(request) if request.method == "POST" else None
        params = list(request.query_params.multi_items())
        result = await run_in_threadpool(
            serve, request, lambda ctx: apply_plandefinition(ctx, resource_id, body.parse() if body else None, params))
        return FHIRResponse(result)

    @router.get("/{resource_type}")
    def search_type(request: Request, resource_type: str) -> Response:
        """Search one resource type."""
        return FHIRResponse(serve(request, lambda ctx: _search(ctx, resource_type,
                                                               list(request.query_params.multi_items()))))

    @router.post("/{resource_type}/_search")
    async def search_post(request: Request, resource_type: str) -> Response:
        """Search with the parameters in a form body (and the query string)."""
        body = await _body(request)

        def work(ctx: FHIRContext) -> dict[str, Any]:
            if body.content_type not in ("", "application/x-www-form-urlencoded"):
                raise FHIRError(415, f"_search takes application/x-www-form-urlencoded (got {body.content_type!r})",
                                code="not-supported")
            form = parse_qsl(body.raw.decode("utf-8", errors="replace"), keep_blank_values=True)
            return _search(ctx, resource_type, list(request.query_params.multi_items()) + form)

        return FHIRResponse(await run_in_threadpool(serve, request, work))

    @router.post("/{resource_type}")
    async def create(request: Request, resource_type: str) -> Response:
        """Create with a server-assigned id (If-None-Exist for a conditional create)."""
        body = await _body(request)

        def work(ctx: FHIRContext) -> tuple[StoredResource, bool]:
            interactions.check_type(resource_type, "create")
            data = body.parse()
            if isinstance(data, dict) and data.get("resourceType") != resource_type:
                raise FHIRError(400, f"resourceType {data.get('resourceType')!r} does not match the URL, which "
                                     f"names {resource_type!r}", code="invariant", expression=["resourceType"])
            return interactions.create(ctx, data, if_none_exist=request.headers.get("if-none-exist"))

        stored, created = await run_in_threadpool(serve, request, work)
        return _written(request, stored, _base_url(request), 201 if created else 200, location=created)

    @router.get("/{resource_type}/{resource_id}")
    def read(request: Request, resource_type: str, resource_id: str) -> Response:
        """Read the current version."""
        if resource_type == "PlanDefinition" or resource_type == "AuditEvent":
            from zorgpad.fhir.operations import read_virtual

            return FHIRResponse(serve(request, lambda ctx: read_virtual(ctx, resource_type, resource_id)))
        stored = serve(request, lambda ctx: interactions.read(ctx, resource_type, resource_id))
        headers = _headers_for(stored, _base_url(request))
        if request.headers.get("if-none-match", "").strip() == headers["ETag"]:
            return Response(status_code=304, headers=headers)
        return FHIRResponse(stored.content, headers=headers)

    @router.put("/{resource_type}/{resource_id}")
    async def update(request: Request, resource_type: str, resource_id: str) -> Response:
        """Update, or create with this id; If-Match for versioned updates."""
        body = await _body(request)
        stored, created = await run_in_threadpool(serve, request, lambda ctx: interactions.update(
            ctx, resource_type, resource_id, body.parse(), if_match=request.headers.get("if-match")))
        return _written(request, stored, _base_url(request), 201 if created else 200, location=created)

    @router.patch("/{resource_type}/{resource_id}")
    async def patch(request: Request, resource_type: str, resource_id: str) -> Response:
        """JSON Patch the current version."""
        body = await _body(request)
        stored = await run_in_threadpool(serve, request, lambda ctx: interactions.patch(
            ctx, resource_type, resource_id, body.parse(), if_match=request.headers.get("if-match")))
        return _written(request, stored, _base_url(request), 200, location=False)

    @router.delete("/{resource_type}/{resource_id}")
    def delete(request: Request, resource_type: str, resource_id: str) -> Response:
        """Delete where it is safe."""
        serve(request, lambda ctx: interactions.delete(ctx, resource_type, resource_id))
        return Response(status_code=204)

    @router.get("/{resource_type}/{resource_id}/_history")
    def history(request: Request, resource_type: str, resource_id: str) -> Response:
        """Every version of one resource, newest first."""
        base = _base_url(request)

        def work(ctx: FHIRContext) -> dict[str, Any]:
            versions = interactions.history(ctx, resource_type, resource_id)
            return _history_bundle(versions, base)

        return FHIRResponse(serve(request, work))

    @router.get("/{resource_type}/{resource_id}/_history/{version_id}")
    def vread(request: Request, resource_type: str, resource_id: str, version_id: str) -> Response:
        """Read one version."""
        if resource_type in ("PlanDefinition", "AuditEvent"):
            from zorgpad.fhir.operations import read_virtual

            return FHIRResponse(serve(request, lambda ctx: read_virtual(ctx, resource_type, resource_id,
                                                                        version_id)))
        version = serve(request, lambda ctx: interactions.vread(ctx, resource_type, resource_id, version_id))
        return FHIRResponse(version.content, headers=_headers_for(version, _base_url(request)))

    return router


def _search(ctx: FHIRContext, resource_type: str, params: list[tuple[str, str]]) -> dict[str, Any]:
    if resource_type in ("PlanDefinition", "AuditEvent"):
        from zorgpad.fhir.operations import search_virtual

        return search_virtual(ctx, resource_type, params)
    interactions.check_type(resource_type, "search-type")
    from zorgpad.fhir.search import search

    return search(ctx, resource_type, params)


def _history_bundle(versions: list[ResourceVersion], base: str) -> dict[str, Any]:
    from zorgpad.engine._projection import instant

    entries = []
    for v in versions:
        url = f"{v.resource_type}/{v.id}"
        entry: dict[str, Any] = {"fullUrl": f"{base}/{url}",
                                 "request": {"method": v.method, "url": url if v.method != "POST" else v.resource_type},
                                 "response": {"status": "204" if v.deleted else ("201" if v.version_id == 1 else "200"),
                                              "etag": f'W/"{v.version_id}"', "lastModified": instant(v.last_updated)}}
        if not v.deleted:
            entry["resource"] = v.content
        entries.append(entry)
    return {"resourceType": "Bundle", "type": "history", "total": len(entries), "entry": entries}
