"""A steady, bounded load of pod creates through the real API server.

Each create is a server-side dry run (`?dryRun=All`, what `kubectl apply --dry-run=server`
sends): the API server runs the whole admission chain, the webhook included, and stores
nothing. A create the API server refuses (the webhook unreachable with `failurePolicy: Fail`,
a timeout, a TLS error) is counted with its message; an admitted one records what the webhook
decided, so a test can see when a policy change took effect.

    with CreateLoad(plane, "ml-team", pod, rate=20, max_seconds=300) as load:
        ...                      # restart the webhook, edit its policy, ...
    assert load.refused == []
"""

from __future__ import annotations

import copy
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import requests

ASSIGNED = "gpu-rightsizer.io/assigned-profile"


@dataclass(frozen=True)
class Outcome:
    at: float  # time.monotonic() when the answer arrived
    status: int  # HTTP status from the API server (201: admitted)
    profile: str | None  # the webhook's assigned-profile annotation, when admitted
    message: str  # the refusal's message, when refused


@dataclass
class CreateLoad:
    server: str
    token: str
    ca_file: str
    namespace: str
    pod: dict
    rate: float = 20.0  # creates per second
    max_seconds: float = 300.0  # the loop stops by itself after this, whatever happens
    workers: int = 8
    outcomes: list[Outcome] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._local = threading.local()
        self._thread: threading.Thread | None = None
        self.url = f"{self.server}/api/v1/namespaces/{self.namespace}/pods?dryRun=All"

    @classmethod
    def against(cls, plane, namespace: str, pod: dict, **kwargs) -> CreateLoad:
        return cls(plane.server, plane.token, str(plane.ca_file), namespace, pod, **kwargs)

    def __enter__(self) -> CreateLoad:
        self._thread = threading.Thread(target=self._run, name="create-load", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)

    # ---- results

    @property
    def refused(self) -> list[Outcome]:
        with self._lock:
            return [o for o in self.outcomes if o.status != 201]

    @property
    def admitted(self) -> list[Outcome]:
        with self._lock:
            return [o for o in self.outcomes if o.status == 201]

    def count(self) -> int:
        with self._lock:
            return len(self.outcomes)

    def achieved_rate(self) -> float:
        with self._lock:
            if len(self.outcomes) < 2:
                return 0.0
            span = self.outcomes[-1].at - self.outcomes[0].at
        return (len(self.outcomes) - 1) / span if span > 0 else 0.0

    # ---- the loop

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            # No proxies and no REQUESTS_CA_BUNDLE from the environment (it would replace
            # `verify` below): the API server is on the bridge, with its own CA.
            session.trust_env = False
            session.headers["Authorization"] = f"Bearer {self.token}"
            session.verify = self.ca_file
            self._local.session = session
        return session

    def _create(self) -> None:
        pod = copy.deepcopy(self.pod)
        pod["metadata"]["name"] = f"load-{uuid.uuid4().hex[:10]}"
        try:
            response = self._session().post(self.url, json=pod, timeout=30)
            status = response.status_code
            body = response.json() if response.content else {}
        except (requests.RequestException, ValueError) as e:
            status, body = 0, {"message": f"{type(e).__name__}: {e}"}
        annotations = (body.get("metadata") or {}).get("annotations") or {}
        outcome = Outcome(
            time.monotonic(),
            status,
            annotations.get(ASSIGNED),
            "" if status == 201 else str(body.get("message", body))[:500],
        )
        with self._lock:
            self.outcomes.append(outcome)

    def _run(self) -> None:
        interval = 1.0 / self.rate
        deadline = time.monotonic() + self.max_seconds
        next_at = time.monotonic()
        with ThreadPoolExecutor(self.workers, thread_name_prefix="create") as pool:
            while not self._stop.is_set() and time.monotonic() < deadline:
                pool.submit(self._create)
                next_at += interval
                self._stop.wait(max(0.0, next_at - time.monotonic()))
