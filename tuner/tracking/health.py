"""Whether an MLflow tracking server answers: its ``/health``, asked with the URI's credentials.

Asked by the checks before a study (``tuner/preflight.py``) and by the tracker
(``tuner/tracking/tracker.py``) while it writes.
"""

from __future__ import annotations

import base64
import urllib.error
import urllib.request
from urllib.parse import unquote, urlsplit, urlunsplit

from tuner.secrets import mask_secrets

#: Seconds a service gets to answer a reachability check (a tracking server, a database).
PROBE_TIMEOUT = 5.0


def probe_server(uri: str, *, timeout: float = PROBE_TIMEOUT) -> str | None:
    """None when an MLflow server answers at ``uri``; else why not, in a few words."""
    try:
        with urllib.request.urlopen(_health_request(uri), timeout=timeout) as response:
            return None if response.status == 200 else f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return mask_secrets(f"{type(reason).__name__}: {reason}")


def _health_request(uri: str) -> urllib.request.Request:
    """The ``/health`` request of a server URI, its credentials sent as basic auth.

    urllib takes ``user:pw@host`` as the host name (a DNS failure); MLflow's client sends
    them as basic auth, so the probe does the same.
    """
    parts = urlsplit(uri)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    url = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/") + "/health", "", ""))
    request = urllib.request.Request(url)
    if parts.username is not None:
        user, password = unquote(parts.username), unquote(parts.password or "")
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    return request
