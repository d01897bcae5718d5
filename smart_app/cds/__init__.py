"""CDS Hooks 2.0 services on the app's own reads and rules: discovery, patient-view, order-select
and order-sign, feedback, and the CDS client's signed JWT."""
