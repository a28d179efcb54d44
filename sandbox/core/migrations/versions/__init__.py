"""One module per schema version of the store, in order (``down_revision``)."""
