"""The clinician web app: SMART launch, plan page, confirmed write-back."""
