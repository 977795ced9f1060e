"""The wire's units: ``*_mb`` fields are MiB and ``*_gb`` fields GiB (binary, as ``docker stats`` and ``free``)."""

MIB = 2**20
GIB = 2**30
