"""Tests of the CDS Hooks services: discovery, hooks, feedback and the client JWT."""
