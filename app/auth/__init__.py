"""Operators (console users): login, password, roles, session rules."""
