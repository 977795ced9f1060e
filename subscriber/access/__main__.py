"""otto-access: API tokens and the admin's password, on the subscriber's database (OTTO_DB_PATH).

    python -m subscriber.access create-token NAME   a read-only token, printed once (replaces NAME's)
    python -m subscriber.access list-tokens         names, when made, when last used
    python -m subscriber.access revoke-token NAME
    python -m subscriber.access reset-password      a new admin password, printed once; ends every login

In Compose: docker compose exec subscriber python -m subscriber.access <command>. The running
subscriber sees the change at once (it reads the database on every request).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from subscriber.access.passwords import hash_password, new_password
from subscriber.access.store import NAME_PATTERN, SqliteAccessStore

PROGRAM = "otto-access"


def _when(stamp: float | None) -> str:
    return datetime.fromtimestamp(stamp, UTC).isoformat(timespec="seconds") if stamp else "never"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROGRAM, description="API tokens and the admin's password.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("create-token").add_argument("name")
    commands.add_parser("revoke-token").add_argument("name")
    commands.add_parser("list-tokens")
    commands.add_parser("reset-password")
    args = parser.parse_args(argv)
    store = SqliteAccessStore(Path(os.environ.get("OTTO_DB_PATH", "otto-history.db")))
    try:
        if args.command == "create-token":
            if not re.match(NAME_PATTERN, args.name):
                print(f"{PROGRAM}: a token's name is 1 to 64 letters, digits, . _ -", file=sys.stderr)
                return 2
            print(store.create_token(args.name))
            print(
                f"{PROGRAM}: token {args.name!r} (read-only); shown once: Authorization: Bearer <it>", file=sys.stderr
            )
        elif args.command == "revoke-token":
            if not store.revoke_token(args.name):
                print(f"{PROGRAM}: no token {args.name!r}", file=sys.stderr)
                return 2
        elif args.command == "list-tokens":
            for token in store.tokens():
                print(f"{token.name}\tcreated {_when(token.created)}\tlast used {_when(token.last_used)}")
        elif args.command == "reset-password":
            password = new_password()
            store.set_admin_hash(hash_password(password))
            print(password)
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
