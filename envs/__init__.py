"""Environments built on the maxent layer, registered under ``maxent/...`` ids on import."""
