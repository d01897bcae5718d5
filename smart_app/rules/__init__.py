"""Pure clinical logic from the ZOLGENSMA label: standard library only, no I/O, no clock."""
