"""Container healthcheck: does the subscriber's /healthz answer 200? Standard library only.

Run as a plain script (``python -I /app/subscriber/healthcheck.py``); reads OTTO_API_PORT.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def main() -> int:
    url = f"http://127.0.0.1:{os.environ.get('OTTO_API_PORT', '8080')}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError):
        return 1


if __name__ == "__main__":
    sys.exit(main())
