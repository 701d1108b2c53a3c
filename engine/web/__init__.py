"""The coordinator dashboard: worklist, patient pages, pathway catalogue and audited actions."""

from zorgpad.engine.web.routes import Access, AccessFactory, User, create_dashboard

__all__ = ["Access", "AccessFactory", "User", "create_dashboard"]
