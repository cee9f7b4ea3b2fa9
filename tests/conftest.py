"""Shared fixtures: tiny synthetic data, an isolated MLflow store per test, quiet TensorFlow.

Nothing here touches the network: Keras weights are always ``none`` and KERAS_HOME points at an
empty temporary folder so no cached ImageNet weights can make a test pass by accident.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The commands' prediction log (docs/monitoring.md) would fill ./prediction_log of whatever folder a
# test runs in: off, except in the tests that point it somewhere (tests/unit/test_prediction_log.py).
os.environ["MELANOMA_PREDICTION_LOG"] = "off"

# Helpers whose asserts are checks that tests of two tiers share: rewritten like a test module's, for
# the same failure messages.
pytest.register_assert_rewrite("readme_blocks", "registry_light")

#: The unit tier (tests/unit/conftest.py enforces what a unit test may not do); every other folder
#: here is a slower tier (docs/architecture.md "Tests").
UNIT_TIER = Path(__file__).resolve().parent / "unit"


TIERS = ("unit", "integration", "k8s", "containers", "browser")


def pytest_configure(config: pytest.Config) -> None:
    """A test file outside the tiers' folders would never run (pyproject's testpaths): refuse it."""
    here = Path(__file__).resolve().parent
    stray = sorted(
        str(path.relative_to(here.parent))
        for path in here.rglob("test_*.py")
        if path.relative_to(here).parts[0] not in TIERS
    )
    if stray:
        folders = ", ".join(f"tests/{tier}" for tier in TIERS)
        raise pytest.UsageError(
            f"{', '.join(stray)}: outside the test tiers, so never run; move it into one of {folders} "
            '(docs/architecture.md "Tests")'
        )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test outside tests/unit is marked ``integration``, so ``-m "not integration"`` still
    selects the unit tier (and ``-m integration`` the others) however the tests were invoked; a test
    in tests/unit that says it is one belongs in another folder."""
    for item in items:
        if UNIT_TIER not in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.integration)
        elif item.get_closest_marker("integration"):
            raise pytest.UsageError(
                f"{item.nodeid} is marked integration but is in tests/unit: move it to its tier's folder"
            )


@pytest.fixture(scope="session", autouse=True)
def _isolated_keras_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    os.environ["KERAS_HOME"] = str(tmp_path_factory.mktemp("keras_home"))
    os.environ.setdefault("MPLBACKEND", "Agg")


_MLFLOW_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_NAME")


@pytest.fixture(autouse=True)
def _mlflow_process_state_restored() -> None:
    """Undo what a test (or the product code it drives) left in MLflow's process-wide state.

    ``mlflow.set_tracking_uri`` sets a module global *and* writes MLFLOW_TRACKING_URI into
    os.environ behind monkeypatch's back, and the global wins over any later environment variable:
    without this, one test's store silently receives the next test's runs and models.
    """
    from melanoma_mlops import envvars

    saved = {key: os.environ.get(key) for key in _MLFLOW_ENV}
    yield
    if "mlflow" in sys.modules:
        import mlflow

        while mlflow.active_run() is not None:
            mlflow.end_run()
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
    envvars.restore(saved)


@pytest.fixture
def mlflow_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh SQLite tracking store + artifact folder for one test."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    (tmp_path / "mlruns").mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    mlflow.set_tracking_uri(uri)
    yield uri
    mlflow.set_tracking_uri(None)


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 synthetic 64-px images (8 malignant) with lesion masks in class folders (the folder layout,
    one image per lesion), shared read-only by tests."""
    from melanoma_mlops.data import demo as demo_data

    out = tmp_path_factory.mktemp("demo")
    demo_data.generate(out, n=40, size=64, seed=1, layout="folder")
    return out


@pytest.fixture(scope="session")
def tiny_classifier():
    """An untrained 32-px classifier (weights none): enough to test the mechanics."""
    import keras

    from melanoma_mlops.model import network as model

    keras.utils.set_random_seed(0)
    return model.build_classifier(32, "none", 0.5)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, demo_dir: Path):
    """One whole local run of the demo images (a manifest with subgroup columns) in a folder and
    SQLite store of its own (tests/tiny_run.py), for every tier that reads a run.

    Tests enter its store with ``local_store.in_local_store(run.work)`` and only read: a model
    registered or promoted there would change what the next test reads. Stage 2 has two epochs, so
    that its curves have two points (the MLflow UI's charts)."""
    from tiny_run import SLICES, TINY, run_tiny, with_subgroups

    work = tmp_path_factory.mktemp("tiny-run")
    data = with_subgroups(demo_dir, work / "data")
    return run_tiny(work, "tiny", ("--data", str(data), *TINY, *SLICES, "--stage2-epochs", "2"))


#: What the second run of ``two_pipeline_runs`` changes.
CHANGED_OPTION = ["--stage2-lr", "3e-05"]


@pytest.fixture(scope="session")
def two_pipeline_runs(tmp_path_factory: pytest.TempPathFactory, tiny_run) -> dict:
    """Two real local runs of the main pipeline in one embedded store, differing in one option
    (``--stage2-lr``): the session's ``tiny_run`` and the same command with that option changed,
    run into a copy of its store (the tiny run's own store stays as its readers expect). Shared by
    the MLflow UI browser tests and the ``compare`` tests. Returns the work folder, the store URI,
    the experiment and both parent runs (``base``, ``changed``) as MLflow read them back, and the
    option that differs."""
    import shutil

    from mlflow.tracking import MlflowClient
    from tiny_run import run_tiny

    from melanoma_mlops import EXPERIMENT_NAME

    assert tiny_run.code == 0
    work = tmp_path_factory.mktemp("two_runs")
    store = work / "mlruns"
    store.mkdir()
    shutil.copy2(tiny_run.work / "mlruns" / "mlflow.db", store / "mlflow.db")
    changed_run = run_tiny(work, None, (*tiny_run.argv, *CHANGED_OPTION))  # a generated name
    assert changed_run.code == 0
    client = MlflowClient(changed_run.uri)
    exp = client.get_experiment_by_name(EXPERIMENT_NAME)
    parents = client.search_runs([exp.experiment_id], filter_string="tags.pipeline = 'two-stage'")
    base = next(r for r in parents if r.info.run_name == tiny_run.name)
    (changed,) = [r for r in parents if r.info.run_id != base.info.run_id]
    return {
        "work": work,
        "store": store,
        "uri": changed_run.uri,
        "exp": exp,
        "base": base,
        "changed": changed,
        "changed_option": CHANGED_OPTION,
    }


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """ONE real tracking server with our basic-auth app, its users and a registered model made by the
    promotion identity (tests/auth_server.py), for the whole session: the registry-access tests of
    the integration and browser tiers share it (one server start, ~10-20 s, instead of one each).
    Tests may move aliases and grants; each reads the state it starts from rather than assuming it."""
    pytest.importorskip("flask_wtf", reason="MLflow's basic-auth app needs mlflow[auth] (Flask-WTF)")
    from auth_server import auth_server_with_model

    with auth_server_with_model(tmp_path_factory.mktemp("auth_registry")) as url:
        yield url
