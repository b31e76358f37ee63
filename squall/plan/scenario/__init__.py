"""Scenario files: weighted multi-step user journeys."""
