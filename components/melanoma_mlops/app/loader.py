"""The detection app's champion, loaded in the background while the page is already usable.

Loading the champion costs an MLflow import, a registry read, a TensorFlow import and the model's
weights: 45 s in issue 22, minutes on two loaded cores. The page must not be a spinner that long, so
the app starts a :class:`ChampionLoader` on its first page view: one thread per server process does
the work in phases and records which phase it is in; the page shows the phase, the registry's facts
about the model as soon as they are read (version, threshold, test metrics) and the uploader at
once. An upload that arrives before the weights waits for them (:meth:`ChampionLoader.wait`).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from melanoma_mlops.app import champion as app_champion
from melanoma_mlops.errors import ConfigError, MelanomaError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadState:
    """What the page shows while (and after) the champion loads."""

    #: What the loader is doing, in words ("importing TensorFlow and Keras"), or "ready".
    phase: str
    #: Seconds since the loader started.
    elapsed_s: float
    #: The registry's facts, once read (None before).
    entry: app_champion.RegistryEntry | None
    #: The loaded model, once ready (None before).
    champion: app_champion.Champion | None
    #: Why loading failed (None while it goes on or after it succeeded).
    error: MelanomaError | None

    @property
    def ready(self) -> bool:
        return self.champion is not None

    @property
    def done(self) -> bool:
        return self.champion is not None or self.error is not None


class ChampionLoader:
    """Load ``model_uri`` from ``tracking_uri`` in a daemon thread, phase by phase."""

    def __init__(self, model_uri: str, tracking_uri: str) -> None:
        self.model_uri = model_uri
        self.tracking_uri = tracking_uri
        self._started = time.monotonic()
        self._lock = threading.Lock()
        self._finished = threading.Event()
        self._phase = "starting"
        self._entry: app_champion.RegistryEntry | None = None
        self._champion: app_champion.Champion | None = None
        self._error: MelanomaError | None = None
        self._thread = threading.Thread(target=self._load, name="champion-loader", daemon=True)
        self._thread.start()

    def _set(self, phase: str) -> None:
        with self._lock:
            self._phase = phase
        logger.info("champion loader: %s (%.1f s)", phase, time.monotonic() - self._started)

    def _load(self) -> None:
        try:
            self._set(f"reading the registry at {self.tracking_uri}")
            entry = app_champion.read_registry(self.model_uri, self.tracking_uri)
            with self._lock:
                self._entry = entry
            label = f"version {entry.version}" if entry.version else entry.model_uri
            self._set(f"loading {label}: importing TensorFlow and Keras")
            app_champion.import_tensorflow()
            self._set(f"loading {label}: reading the model and its weights")
            champion = app_champion.load_entry(entry)
            with self._lock:
                self._champion = champion
            self._set("ready")
        except MelanomaError as exc:
            self._fail(exc)
        except Exception as exc:  # the page must say it, whatever it was; the log has it in full
            logger.exception("loading %s failed", self.model_uri)
            self._fail(ConfigError(f"{self.model_uri} could not be loaded: {type(exc).__name__}: {exc}"))
        finally:
            self._finished.set()

    def _fail(self, exc: MelanomaError) -> None:
        with self._lock:
            self._error = exc
            self._phase = "failed"
        logger.warning("champion loader: failed: %s", exc)

    def state(self) -> LoadState:
        with self._lock:
            return LoadState(
                phase=self._phase,
                elapsed_s=time.monotonic() - self._started,
                entry=self._entry,
                champion=self._champion,
                error=self._error,
            )

    def wait(self, timeout_s: float | None = None) -> LoadState:
        """The state once loading has finished (or ``timeout_s`` has passed)."""
        self._finished.wait(timeout_s)
        return self.state()
