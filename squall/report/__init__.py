"""Reporters: each takes a result document (or live entries) and writes; none of them computes stats."""
