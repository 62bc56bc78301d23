"""A proxy.py plugin for the tests' forward proxy (``testkit.receivers.forward_proxy``).

It writes the ``host:port`` of each upstream connection the proxy opens (a CONNECT tunnel, or a
plain http request) to the file named by ``AKSNTH_PROXY_RECORD``, one per line, so that a test sees
what went through the proxy. And it resolves every name under ``PROXY_ONLY_DOMAIN`` to 127.0.0.1:
such a name reaches the loopback API server only through the proxy, which proves a client used it.
"""

from __future__ import annotations

import os
from typing import Final

from proxy.http.parser import HttpParser
from proxy.http.proxy import HttpProxyBasePlugin

from testkit.pki import PROXY_ONLY_DOMAIN

RECORD_ENV: Final = "AKSNTH_PROXY_RECORD"


class RecordAndResolve(HttpProxyBasePlugin):
    def resolve_dns(self, host: str, port: int) -> tuple[str | None, None]:
        if host == PROXY_ONLY_DOMAIN or host.endswith(f".{PROXY_ONLY_DOMAIN}"):
            return "127.0.0.1", None
        return None, None

    def before_upstream_connection(self, request: HttpParser) -> HttpParser | None:
        record = os.environ.get(RECORD_ENV)
        if record and request.host is not None:
            with open(record, "a", encoding="utf-8") as file:
                file.write(f"{request.host.decode()}:{request.port}\n")
        return request
