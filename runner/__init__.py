"""Forgeyard's pipeline engine: spec loading, planning, execution and records; nothing here serves HTTP."""
