"""The app's FHIR conformance resources (StructureDefinitions, CodeSystem, ValueSet) as JSON."""
