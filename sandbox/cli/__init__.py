"""The ``sandbox`` command line (click): :mod:`common` holds the group, the context and the
output helpers; :mod:`backend` the calls a command makes, answered in-process by
:mod:`local` or over HTTP by :mod:`remote`; one module per group of commands; :mod:`app`
gathers them.
"""
