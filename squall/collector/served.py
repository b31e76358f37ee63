"""An HTTP server the collector runs on daemon threads while the run goes on (/metrics, the dashboard)."""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer


class Served:
    """Serves `server` from a daemon thread named `name` until close(); a thread per request."""

    def __init__(self, server: ThreadingHTTPServer, name: str) -> None:
        self.server = server
        server.daemon_threads = True
        self.thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        """The port bound (the one asked for, or the one given for 0)."""
        return int(self.server.server_address[1])

    def close(self) -> None:
        """Stop serving and let the port go."""
        self.server.shutdown()
        self.server.server_close()
