"""`python -m smart_app.sandbox`: run the local SMART EHR, the FHIR server and the app."""

import sys

from smart_app.sandbox.run import main

sys.exit(main())
