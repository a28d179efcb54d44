"""The ``sandbox`` command line (click): :mod:`common` holds the group, the context and the
output helpers; one module per group of commands; :mod:`app` gathers them.
"""
