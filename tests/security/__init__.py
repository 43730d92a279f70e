"""Hostile input: what a client or a stored value can send must never break or expose a file."""
