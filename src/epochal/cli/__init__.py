"""The ``epochal`` command line (see :mod:`epochal.cli.main`)."""
