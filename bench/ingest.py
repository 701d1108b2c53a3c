"""Benchmark 5: FHIR ingest of the Synthea bundles as transactions over HTTP.

Each bundle of ../shared/corpora/synthea/R4 is turned into a ``transaction`` (the files are transactions
already; anything else is converted with ``POST`` requests) and posted to a real `zorgpad serve` on an
empty database, one after another; resources/s counts the entries stored. Beside it: the raw floors (the
same number of rows per table by batched core inserts, and by the DB-API driver alone) and the validation
ceiling: resources/s of ``validate_resource`` alone on the same resources, in this process, on one core.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from zorgpad.fhir.outcomes import FHIRError
from zorgpad.fhir.validation import validate_resource

from bench import _server
from bench._common import SYNTHEA, Baseline, Figure, Scratch, Sizes
from bench._population import row_counts
from bench._region import Region
from bench.baselines import floor

TARGET = 3_000.0


def _transaction(bundle: dict[str, Any]) -> dict[str, Any]:
    if bundle.get("type") == "transaction":
        return bundle
    for entry in bundle.get("entry", []):
        entry.setdefault("request", {"method": "POST", "url": entry["resource"]["resourceType"]})
    return {**bundle, "type": "transaction"}


def _validate_all(resources: list[dict[str, Any]]) -> tuple[float, int]:
    """Seconds to validate each resource once with validate_resource, and how many it refused."""
    refused = 0
    started = time.perf_counter()
    for resource in resources:
        try:
            validate_resource(resource)
        except FHIRError:
            refused += 1
    return time.perf_counter() - started, refused


def _validation(bodies: list[bytes]) -> Baseline:
    """The validation ceiling: resources/s of validate_resource on each entry's resource of ``bodies``, timed
    after one warm-up pass (the models are built and their caches filled on first use)."""
    resources = [entry["resource"] for body in bodies for entry in json.loads(body)["entry"]]
    _validate_all(resources)
    seconds, refused = _validate_all(resources)
    return Baseline("validation alone (validate_resource, one core)", len(resources) / seconds if seconds else None,
                    f"{len(resources):,} resources in {seconds:.2f} s" + (f", {refused} refused" if refused else ""))


def run(region: Region, scratch: Scratch, sizes: Sizes, workdir: Path, *,
        log: Callable[[str], None] = print) -> list[Figure]:
    """Post every bundle; then the floors and the validation ceiling."""
    files = sorted(SYNTHEA.glob("*.json"))
    if sizes.synthea_bundles:  # evenly spread from the smallest up
        by_size = sorted(files, key=lambda f: f.stat().st_size)
        files = [by_size[i * len(by_size) // sizes.synthea_bundles] for i in range(sizes.synthea_bundles)]
    bodies = [json.dumps(_transaction(json.loads(f.read_text()))).encode() for f in files]
    entries = [len(json.loads(b)["entry"]) for b in bodies]
    db_url = scratch.new("ingest")
    server = _server.start(db_url)
    failures: list[str] = []
    stored = 0
    try:
        before = row_counts(db_url)
        headers = server.headers(server.token())
        log(f"  ingest: {len(bodies)} Synthea bundles, {sum(entries):,} resources")
        with httpx.Client(base_url=server.fhir, headers=headers, timeout=600) as client:
            started = time.perf_counter()
            for body, count, path in zip(bodies, entries, files, strict=True):
                response = client.post(server.fhir, content=body)
                if response.status_code == 200:
                    stored += count
                else:
                    failures.append(f"{path.name[:20]}… HTTP {response.status_code}")
            seconds = time.perf_counter() - started
        after = row_counts(db_url)
    finally:
        server.stop()
    rate = stored / seconds if seconds else None
    baselines = floor.baselines(db_url, stored, {k: after[k] - before[k] for k in after})
    scratch.drop(db_url)
    baselines.append(_validation(bodies))
    return [Figure(
        "5. FHIR ingest", "Synthea resources/s (transaction Bundles over HTTP)", rate, "/s", f"≥ {TARGET:,.0f}/s",
        rate is not None and rate >= TARGET and not failures,
        baselines=baselines,
        note=f"{stored:,} resources in {len(bodies) - len(failures)} of {len(bodies)} bundles in {seconds:.1f} s"
             + (f"; failed: {', '.join(failures[:3])}" if failures else ""))]
