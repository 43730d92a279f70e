"""One module per backend, each defining the fixture ``<name>_settings``.

The fixture returns the flat settings (``depot.backend`` and its options) of a
fresh, empty storage of that backend, starting whatever server it needs.
``tests/conftest.py`` runs the contract and middleware suites once per module
listed in ``BACKENDS`` that exists.
"""

BACKENDS = ["memory", "local", "s3", "gridfs", "gcs"]
