"""The public surface of ``zorgpad.engine`` is frozen here: changing it must be a deliberate edit."""

from __future__ import annotations

import zorgpad.engine

#: ``zorgpad.engine.__all__`` as released. Adding a name is a feature, removing one breaks users.
PUBLIC_NAMES = [
    "AMBULANCE",
    "COORDINATOR",
    "GP",
    "HOME_CARE",
    "HOSPITAL",
    "OUT_OF_HOURS",
    "ROLE_SYSTEM",
    "STANDARD_ROLES",
    "ActionContext",
    "AllOf",
    "AnyOf",
    "Before",
    "Clock",
    "Coding",
    "Command",
    "ConfigurationError",
    "Criterion",
    "Database",
    "Duration",
    "Engine",
    "Enrol",
    "EnrolmentState",
    "EnrolmentStatus",
    "Escalation",
    "Event",
    "FrozenClock",
    "Handover",
    "IllegalTransitionError",
    "InvalidPathwayError",
    "MigrationError",
    "NotEnrolledError",
    "NoticeKind",
    "Outcome",
    "Pathway",
    "PathwayError",
    "Registry",
    "Reminder",
    "ResourceChanged",
    "Role",
    "Step",
    "StepOverride",
    "StepRun",
    "StepState",
    "SystemClock",
    "TaskStatusChanged",
    "TimerFired",
    "TimerKind",
    "UnknownPathwayError",
    "Withdraw",
    "before",
    "days",
    "defn",
    "evaluate",
    "hours",
    "minutes",
    "months",
    "new_enrolment",
    "validate",
    "weeks",
    "years",
]


class TestEngineExports:
    """``zorgpad.engine.__all__`` is exactly the frozen list, and every name in it is real."""

    def test_all_is_the_frozen_list(self) -> None:
        """The exported names are exactly the frozen ones (compared as sorted lists)."""
        actual = sorted(zorgpad.engine.__all__)

        assert sorted(PUBLIC_NAMES) == actual

    def test_all_has_no_duplicates(self) -> None:
        """No name is exported twice."""
        actual = len(set(zorgpad.engine.__all__))

        assert len(zorgpad.engine.__all__) == actual

    def test_every_exported_name_is_importable(self) -> None:
        """``from zorgpad.engine import NAME`` works for every frozen name."""
        missing = []
        for name in PUBLIC_NAMES:
            try:
                exec(f"from zorgpad.engine import {name}", {})  # noqa: S102 - a fixed import of a listed name
            except ImportError:
                missing.append(name)

        assert [] == missing

    def test_star_import_gives_exactly_the_exported_names(self) -> None:
        """``from zorgpad.engine import *`` binds every exported name and no private one."""
        namespace: dict[str, object] = {}
        exec("from zorgpad.engine import *", namespace)  # noqa: S102 - a fixed import statement

        actual = sorted(k for k in namespace if k != "__builtins__")

        assert sorted(PUBLIC_NAMES) == actual
