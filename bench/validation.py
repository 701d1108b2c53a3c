"""``python -m bench.validation [--rounds N]``: resources/s of validate_resource, before and after.

A micro-benchmark, not a test: it validates every resource of the Synthea transaction bundles (each entry's
``resource``) and every example of the official FHIR R4 example package under ../shared/corpora with the
old implementation (copied below as the baseline: model_validate, then the model written out as JSON and
read back to compare JSON types) and with the current ``zorgpad.fhir.validation.validate_resource``,
interleaved over several rounds in one process, and prints resources/s for each and the ratio new/old.
Examples of resource types this server does not support are left out (both refuse them before
validating), and so are the package's definition bundles over 1 MB (all profiles, all value sets, …: up
to 30 MB each, they would outweigh the other examples together). It also counts the resources whose
outcome (accepted, or the error's status and issues) differs between the two: that must be 0.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import statistics
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError
from zorgpad.fhir.capabilities import RESOURCE_TYPES
from zorgpad.fhir.outcomes import FHIRError, from_validation_error
from zorgpad.fhir.validation import BINDINGS, validate_resource

CORPORA = Path(__file__).resolve().parent.parent.parent / "shared" / "corpora"
SYNTHEA = CORPORA / "synthea" / "R4"
HL7_EXAMPLES = CORPORA / "hl7-r4-examples" / "hl7.fhir.r4.examples-4.0.1.tgz"
#: Larger example files are the specification's definition bundles, not examples of exchanged data.
LARGEST_EXAMPLE = 1 << 20

JSON = dict[str, Any]


# ---- the baseline: validate_resource as it was before the fast comparison (fhir/validation.py) ----

def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _type_mismatches(sent: Any, parsed: Any, path: str) -> Iterator[JSON]:
    if isinstance(sent, dict) and isinstance(parsed, dict):
        for key, value in sent.items():
            if key in parsed:
                yield from _type_mismatches(value, parsed[key], f"{path}.{key}")
    elif isinstance(sent, list) and isinstance(parsed, list):
        for index, (left, right) in enumerate(zip(sent, parsed, strict=False)):
            yield from _type_mismatches(left, right, f"{path}[{index}]")
    elif _json_type(sent) != _json_type(parsed):
        yield {"severity": "error", "code": "value", "expression": [path],
               "diagnostics": f"{path} must be a JSON {_json_type(parsed)} (got a {_json_type(sent)}: {sent!r})"}


def _nul_characters(value: Any, path: str) -> Iterator[JSON]:
    if isinstance(value, str):
        if "\x00" in value:
            yield {"severity": "error", "code": "value", "expression": [path],
                   "diagnostics": f"{path} contains a NUL character, which FHIR strings may not contain"}
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _nul_characters(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _nul_characters(item, f"{path}[{index}]")


def old_validate_resource(data: Any, *, expected_type: str | None = None, expected_id: str | None = None) -> JSON:
    """The baseline, as it was."""
    if not isinstance(data, dict):
        raise FHIRError(400, f"expected a JSON object holding a FHIR resource (got {type(data).__name__})",
                        code="structure")
    rtype = data.get("resourceType")
    if not isinstance(rtype, str) or not rtype:
        raise FHIRError(400, "the resource has no resourceType", code="required", expression=["resourceType"])
    if expected_type is not None and rtype != expected_type:
        raise FHIRError(400, f"resourceType {rtype!r} does not match the URL, which names {expected_type!r}",
                        code="invariant", expression=["resourceType"])
    if rtype not in RESOURCE_TYPES:
        raise FHIRError(404 if expected_type else 400, f"resource type {rtype!r} is not supported by this server",
                        code="not-supported")
    if expected_id is not None and data.get("id") != expected_id:
        raise FHIRError(400, f"the resource id {data.get('id')!r} differs from the id in the URL {expected_id!r}",
                        code="invariant", expression=[f"{rtype}.id"])
    try:
        model = get_fhir_model_class(rtype).model_validate(data)
        dumped = json.loads(model.model_dump_json(by_alias=True, exclude_none=True))
    except ValidationError as exc:
        raise from_validation_error(rtype, exc) from None
    except RecursionError:
        raise FHIRError(400, f"{rtype}: the resource is nested too deeply", code="too-costly") from None
    except (TypeError, ValueError) as exc:
        raise FHIRError(400, f"{rtype}: {exc}", code="value") from None
    wrong = list(_type_mismatches(data, dumped, rtype)) + list(_nul_characters(data, rtype))
    if wrong:
        raise FHIRError(400, wrong[0]["diagnostics"], issues=wrong)
    for element, codes in BINDINGS.get(rtype, {}).items():
        value = data.get(element)
        if value is not None and value not in codes:
            raise FHIRError(400, f"{rtype}.{element} {value!r} is not a valid code (expected one of "
                                 f"{', '.join(codes)})", code="code-invalid", expression=[f"{rtype}.{element}"])
    return data


# ---- the corpora ----

def synthea_resources() -> list[JSON]:
    """Every entry's resource in the Synthea transaction bundles."""
    resources: list[JSON] = []
    for path in sorted(SYNTHEA.glob("*.json")):
        bundle = json.loads(path.read_text(encoding="utf-8"))
        resources.extend(entry["resource"] for entry in bundle.get("entry", []) if "resource" in entry)
    return resources


def hl7_examples() -> list[JSON]:
    """The R4 example package's resources (bundles whole, up to 1 MB) whose type this server supports."""
    examples: list[JSON] = []
    with tarfile.open(HL7_EXAMPLES) as package:
        for member in package:
            if not (member.isfile() and member.name.endswith(".json")) or member.size > LARGEST_EXAMPLE:
                continue
            handle = package.extractfile(member)
            try:
                data = json.loads(handle.read()) if handle else None
            except ValueError:
                continue
            if isinstance(data, dict) and data.get("resourceType") in RESOURCE_TYPES:
                examples.append(data)
    return examples


# ---- the measurement ----

def _outcome(validate: Callable[..., JSON], resource: JSON) -> Any:
    try:
        validate(resource)
    except FHIRError as exc:
        return exc.status, exc.issues
    return "accepted"


def _time(validate: Callable[..., JSON], resources: list[JSON]) -> float:
    start = time.perf_counter()
    for resource in resources:
        with contextlib.suppress(FHIRError):
            validate(resource)
    return time.perf_counter() - start


def measure(name: str, resources: list[JSON], rounds: int) -> None:
    """Print resources/s of both implementations over ``resources``, interleaved, and their ratio."""
    differing = sum(_outcome(old_validate_resource, r) != _outcome(validate_resource, r) for r in resources)
    refused = sum(_outcome(validate_resource, r) != "accepted" for r in resources)
    old: list[float] = []
    new: list[float] = []
    gc.collect()
    for index in range(rounds):  # alternate which goes first, so neither always runs on a warmer machine
        pair = [(old_validate_resource, old), (validate_resource, new)]
        for validate, times in pair if index % 2 == 0 else reversed(pair):
            times.append(len(resources) / _time(validate, resources))
    ratios = [after / before for before, after in zip(old, new, strict=True)]
    print(f"{name}: {len(resources)} resources ({refused} refused), outcomes differing: {differing}")
    print(f"  old {statistics.median(old):8.0f} resources/s  (rounds: {', '.join(f'{v:.0f}' for v in old)})")
    print(f"  new {statistics.median(new):8.0f} resources/s  (rounds: {', '.join(f'{v:.0f}' for v in new)})")
    print(f"  new/old {statistics.median(ratios):.2f}x  (per round {min(ratios):.2f}-{max(ratios):.2f})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.validation", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per implementation")
    arguments = parser.parse_args(argv)
    synthea = synthea_resources()
    examples = hl7_examples()
    for resource in synthea[:200] + examples[:200]:  # warm both: model classes, caches
        _outcome(old_validate_resource, resource)
        _outcome(validate_resource, resource)
    measure("Synthea bundle entries", synthea, arguments.rounds)
    measure("FHIR R4 examples (supported types)", examples, arguments.rounds)


if __name__ == "__main__":
    main()
