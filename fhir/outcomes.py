"""FHIR errors: every client mistake becomes a 4xx with an OperationOutcome naming the problem."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

JSON = dict[str, Any]


class FHIRError(Exception):
    """An HTTP error that the server answers with an OperationOutcome."""

    def __init__(self, status: int, diagnostics: str, *, code: str = "invalid", severity: str = "error",
                 expression: list[str] | None = None, issues: list[JSON] | None = None) -> None:
        super().__init__(diagnostics)
        self.status = status
        self.diagnostics = diagnostics
        issue: JSON = {"severity": severity, "code": code, "diagnostics": diagnostics}
        if expression:
            issue["expression"] = expression
        self.issues = issues or [issue]

    def outcome(self) -> JSON:
        """The OperationOutcome for this error."""
        return operation_outcome(self.issues)


def operation_outcome(issues: list[JSON]) -> JSON:
    """An OperationOutcome with ``issues``."""
    return {"resourceType": "OperationOutcome", "issue": issues}


def informational(text: str) -> JSON:
    """An OperationOutcome that only informs (for example after a delete)."""
    return operation_outcome([{"severity": "information", "code": "informational", "diagnostics": text}])


def from_validation_error(resource_type: str, error: ValidationError) -> FHIRError:
    """Map a pydantic validation error of a FHIR model to a 400 with one issue per problem."""
    issues: list[JSON] = []
    for problem in error.errors()[:50]:
        path = ".".join(str(p) for p in problem.get("loc", ()) if not str(p).startswith("function-"))
        kind = problem.get("type", "")
        code = "structure" if kind in ("extra_forbidden", "missing") else "value"
        message = problem.get("msg", "invalid")
        if kind == "extra_forbidden":
            message = f"unknown element '{path.rsplit('.', 1)[-1]}'"
        issues.append({"severity": "error", "code": code,
                       "diagnostics": f"{resource_type}.{path}: {message}" if path else f"{resource_type}: {message}",
                       "expression": [f"{resource_type}.{path}" if path else resource_type]})
    first = str(issues[0]["diagnostics"]) if issues else "invalid resource"
    return FHIRError(400, first, issues=issues or None)
