"""Faults: killed processes, concurrent writers, dead servers, load."""
