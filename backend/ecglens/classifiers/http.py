"""`HttpClassifier`: a classifier behind an HTTP endpoint, and `ClassifierServer`, a small server for any one.

Protocol (JSON over HTTP, UTF-8):

- ``GET {url}/card`` -> 200, a model card object (`ModelCard` fields: name, classes, sampling_rate, leads,
  window_s, and optionally multilabel, thresholds, output, input_scale, ...). Not needed when the card is given.
- ``POST {url}`` with body ``{"inputs": [[[float, ...], ...], ...]}``: ``[n, leads, samples]`` in mV (times the
  card's ``input_scale``) -> 200 ``{"probabilities": [[float, ...], ...]}``: ``[n, classes]``, columns in the
  card's class order. With ``"output": "logits"`` in the card the numbers are logits and the client applies
  sigmoid (multilabel) or softmax.
- Errors: any non-2xx answer. 429, 502, 503 and 504 and transport failures (refused connection, timeout) are
  retried with exponential backoff; others fail at once with the status and the start of the body.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

from ecglens.classifiers.adapter import CardClassifier
from ecglens.classifiers.base import Classifier
from ecglens.classifiers.card import ModelCard
from ecglens.errors import ClassifierError

_RETRY_STATUS = frozenset({429, 502, 503, 504})


class HttpClassifier(CardClassifier):
    """A remote classifier spoken to with the protocol in this module's docstring.

    Parameters
    ----------
    url : str
        The endpoint, ``http(s)://host[:port]/path``; inputs are POSTed to it, the card read from ``{url}/card``.
    card : str or Path or ModelCard or None
        The model card (a JSON file or object). Default: None (fetched from ``{url}/card``).
    timeout_s : float
        Per-request timeout in seconds. Default: 30.
    retries : int
        Extra attempts after a transport failure or a 429/502/503/504 answer. Default: 3.
    backoff_s : float
        First wait between attempts in seconds, doubled after each. Default: 0.25.
    batch_size : int
        Rows per request. Default: 256.
    headers : dict or None
        Extra request headers (e.g. ``{"Authorization": "Bearer ..."}``). Default: None.
    """

    def __init__(
        self,
        url: str,
        card: str | Path | ModelCard | None = None,
        *,
        timeout_s: float = 30.0,
        retries: int = 3,
        backoff_s: float = 0.25,
        batch_size: int = 256,
        headers: dict[str, str] | None = None,
    ):
        import httpx

        self.url = url.rstrip("/")
        self.retries = int(retries)
        self.backoff_s = float(backoff_s)
        self._client = httpx.Client(timeout=timeout_s, headers=headers or {}, follow_redirects=True)
        if card is None:
            data = self._request("GET", f"{self.url}/card")
            if not isinstance(data, dict):
                raise ClassifierError(f"{self.url}/card: model card must be a JSON object")
            try:
                card = ModelCard.from_dict(data)
            except (ClassifierError, TypeError, ValueError) as exc:
                raise ClassifierError(f"{self.url}/card: {exc}") from None
        elif not isinstance(card, ModelCard):
            card = ModelCard.load(card)
        super().__init__(card, self.url, batch_size)
        self.device = "remote"

    def _request(self, method: str, url: str, body: Any = None) -> Any:
        import httpx

        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                answer = self._client.request(method, url, json=body)
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
                continue
            if answer.status_code in _RETRY_STATUS:
                last = f"HTTP {answer.status_code}"
                continue
            if answer.status_code >= 400:
                raise ClassifierError(f"{url}: HTTP {answer.status_code}: {answer.text[:200]}")
            try:
                return answer.json()
            except ValueError:
                raise ClassifierError(f"{url}: answer is not JSON ({answer.text[:80]!r})") from None
        raise ClassifierError(f"{url}: no answer after {self.retries + 1} attempts ({last})")

    def _forward(self, chunk: np.ndarray) -> np.ndarray:
        data = self._request("POST", self.url, {"inputs": chunk.tolist()})
        if not isinstance(data, dict) or "probabilities" not in data:
            raise ClassifierError(f"{self.url}: answer lacks 'probabilities'")
        try:
            return np.asarray(data["probabilities"], dtype=np.float64)
        except (TypeError, ValueError):
            raise ClassifierError(f"{self.url}: 'probabilities' is not a numeric [n, classes] array") from None

    def close(self) -> None:
        self._client.close()


def card_of(classifier: Classifier) -> dict[str, Any]:
    """The card a server publishes for ``classifier``: it answers probabilities of unscaled mV inputs."""
    card = getattr(classifier, "card", None)
    data = (
        card.to_dict()
        if isinstance(card, ModelCard)
        else {
            "name": type(classifier).__name__,
            "classes": list(classifier.class_names),
            "sampling_rate": classifier.sampling_rate,
            "leads": list(classifier.lead_names),
            "window_s": classifier.window_s,
            "multilabel": bool(getattr(classifier, "multilabel", False)),
            "thresholds": dict(getattr(classifier, "thresholds", {}) or {}),
        }
    )
    data.update(output="probabilities", input_scale=1.0)
    return data


class ClassifierServer:
    """Serve any `Classifier` with the protocol above on a background thread (tests, demos, remote GPUs).

    Parameters
    ----------
    classifier : Classifier
        What answers.
    host : str
        Bind address. Default: "127.0.0.1".
    port : int
        TCP port; 0 picks a free one. Default: 0.

    Examples
    --------
    >>> with ClassifierServer(load_classifier("builtin")) as server:   # doctest: +SKIP
    ...     remote = HttpClassifier(server.url)
    """

    def __init__(self, classifier: Classifier, host: str = "127.0.0.1", port: int = 0):
        card = json.dumps(card_of(classifier)).encode()
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, payload: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                if self.path.rstrip("/").endswith("/card"):
                    self._send(200, card)
                else:
                    self._send(404, b'{"detail": "not found"}')

            def do_POST(self) -> None:  # noqa: N802
                try:
                    body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                    batch = np.asarray(body["inputs"], dtype=np.float32)
                    with lock:  # one model, one call at a time
                        probs = classifier.predict_proba(batch)
                except (KeyError, TypeError, ValueError, ClassifierError) as exc:
                    self._send(400, json.dumps({"detail": str(exc)}).encode())
                    return
                self._send(200, json.dumps({"probabilities": np.asarray(probs).tolist()}).encode())

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> ClassifierServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> ClassifierServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()
