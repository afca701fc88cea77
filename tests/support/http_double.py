"""An HTTP server on a free port that records every request and answers what the test sets: the double of an
InfluxDB write endpoint or a webhook receiver."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import NamedTuple
from urllib.parse import parse_qs, urlsplit


class Request(NamedTuple):
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names in lower case
    body: bytes


class Answer(NamedTuple):
    status: int = 204
    headers: dict[str, str] = {}
    body: bytes = b""


class HttpDouble:
    """Records every POST in `requests` and answers with `answer` (204 by default); `url` has no path."""

    def __init__(self, name: str = "http-double") -> None:
        self.requests: list[Request] = []
        self.answer = Answer()
        double = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                url = urlsplit(self.path)
                headers = {k.lower(): v for k, v in self.headers.items()}
                double.requests.append(Request(url.path, parse_qs(url.query), headers, body))
                answer = double.answer
                self.send_response(answer.status)
                for header, value in answer.headers.items():
                    self.send_header(header, value)
                if answer.status != 204:  # a 204 has no body, not even a length
                    self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                if answer.status != 204:
                    self.wfile.write(answer.body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), name=name, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)
