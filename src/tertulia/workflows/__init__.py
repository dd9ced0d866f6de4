"""Workflows: triggers, steps and durable runs (docs/workflows.md)."""
