"""`make bench`: measured speed of the app against the real local FHIR server (not tests).

Run from the repository's top level (it uses tests/fhirserver.py's counting proxy); see
docs/performance.md for what each figure means and the latest run.
"""
