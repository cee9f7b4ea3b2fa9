"""The app's background loader: the page can say which phase the champion's loading is in, shows the
registry's facts before the weights, and an upload waits for the model instead of failing."""

from __future__ import annotations

import threading

import pytest

from melanoma_mlops.app import champion as app_champion
from melanoma_mlops.app import loader as app_loader
from melanoma_mlops.errors import ConfigError

ENTRY = app_champion.RegistryEntry("models:/m@champion", "models:/m/3", "3", {"test_specificity": "0.5"})


class Gates:
    """Each phase of the fake load waits for the test to open its gate."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fail_load: bool = False) -> None:
        self.registry, self.tensorflow, self.weights = threading.Event(), threading.Event(), threading.Event()
        self.champion = object()

        def read_registry(model_uri: str, tracking_uri: str) -> app_champion.RegistryEntry:
            assert (model_uri, tracking_uri) == ("models:/m@champion", "sqlite:///x.db")
            self.registry.wait(10)
            return ENTRY

        def load_entry(entry: app_champion.RegistryEntry) -> object:
            assert entry is ENTRY
            self.weights.wait(10)
            if fail_load:
                raise OSError("disk gone")
            return self.champion

        monkeypatch.setattr(app_champion, "read_registry", read_registry)
        monkeypatch.setattr(app_champion, "import_tensorflow", lambda: self.tensorflow.wait(10))
        monkeypatch.setattr(app_champion, "load_entry", load_entry)


def wait_for_phase(loader: app_loader.ChampionLoader, words: str) -> app_loader.LoadState:
    for _ in range(200):
        state = loader.state()
        if words in state.phase:
            return state
        threading.Event().wait(0.05)
    raise AssertionError(f"phase never reached '{words}': {loader.state().phase}")


def test_the_loader_reports_each_phase_and_the_registry_facts_before_the_weights(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gates = Gates(monkeypatch)
    loader = app_loader.ChampionLoader("models:/m@champion", "sqlite:///x.db")

    state = wait_for_phase(loader, "reading the registry at sqlite:///x.db")
    assert state.entry is None and not state.ready and not state.done
    gates.registry.set()
    state = wait_for_phase(loader, "loading version 3: importing TensorFlow")
    assert state.entry is ENTRY and not state.ready  # the sidebar can show the version already
    gates.tensorflow.set()
    wait_for_phase(loader, "loading version 3: reading the model and its weights")
    gates.weights.set()
    state = loader.wait(10)
    assert state.ready and state.done and state.champion is gates.champion and state.phase == "ready"
    assert state.error is None and state.elapsed_s >= 0


def test_an_upload_waits_for_the_model_and_a_failure_is_said_in_words(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gates = Gates(monkeypatch, fail_load=True)
    loader = app_loader.ChampionLoader("models:/m@champion", "sqlite:///x.db")
    assert not loader.wait(0.2).done  # still loading: the upload keeps waiting
    gates.registry.set()
    gates.tensorflow.set()
    gates.weights.set()
    state = loader.wait(10)
    assert state.done and not state.ready and state.phase == "failed"
    assert isinstance(state.error, ConfigError)
    assert "models:/m@champion could not be loaded: OSError: disk gone" in str(state.error)
