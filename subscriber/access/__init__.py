"""Who may read the control plane: the admin's login (a session cookie) and read-only API tokens.

``passwords`` (scrypt), ``store`` (SQLite: the admin's hash, tokens, sessions; only hashes of
secrets), ``throttle`` (login attempts), ``gate`` (the ASGI middleware and the login pages),
``__main__`` (the ``otto-access`` commands: tokens, a new admin password).
"""
