"""Rendering: notices and letters (Jinja2) and pathway diagrams (Mermaid)."""
