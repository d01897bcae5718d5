"""ZOLGENSMA SMART-on-FHIR planner: eligibility, kit dosing, steroid course and monitoring."""

__version__ = "0.1.0"
