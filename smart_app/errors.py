"""One exception hierarchy, each carrying a message a clinician or an operator can act on."""


class SmartAppError(Exception):
    """Base of every error the app raises on purpose."""


class InputError(SmartAppError):
    """Input the app cannot use: a file, an argument, a bundle."""


class BundleError(InputError):
    """A FHIR Bundle that cannot be read as one patient's record."""


class PolicyError(InputError):
    """An institution policy that is malformed or unsafe."""
