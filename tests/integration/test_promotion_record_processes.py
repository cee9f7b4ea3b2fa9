"""The champion record with real processes (split from tests/unit/test_promotion_record.py: a unit
test starts no process): promoting never imports TensorFlow, and the probe of issue 11, two
concurrent `melanoma-mlops promote` processes on one store and through a tracking server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import registry_light as rl
from mlflow.tracking import MlflowClient
from registry_light import assert_consistent, champion_of

from melanoma_mlops.registry import champion as promotion


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, MlflowClient]:
    import mlflow

    uri = rl.store_uri(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    yield tmp_path, MlflowClient(tracking_uri=uri)
    mlflow.set_tracking_uri(None)


# ---------------------------------------------------------------------------------------------
# the commands
# ---------------------------------------------------------------------------------------------


def test_promote_and_history_never_import_tensorflow(store: tuple[Path, MlflowClient]) -> None:
    root, client = store
    rl.make_model(client, root, "m", 2)
    code = (
        "import sys\n"
        "from melanoma_pipelines.cli import main\n"
        "assert main(['promote', '--model-name', 'm', '--version', '2', '--reason', 'r']) == 0\n"
        "assert main(['history', '--model-name', 'm']) == 0\n"
        "assert main(['promote', '--model-name', 'm', '--version', '1', '--reason', 'r']) == 0\n"
        "assert main(['promote', '--model-name', 'm', '--rollback', '--reason', 'r']) == 0\n"
        "print('IMPORTED', sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=rl.cli_env(rl.store_uri(root)),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "IMPORTED []" in out.stdout
    assert "v1 -> v2" not in out.stdout and "(none) -> v2" in out.stdout


# ---------------------------------------------------------------------------------------------
# the probe of issue 11: 10 x two concurrent `melanoma-mlops promote` processes on one store
# ---------------------------------------------------------------------------------------------

ROUNDS = 10


@pytest.mark.slow
@pytest.mark.integration
def test_two_processes_promoting_at_once_ten_times(store: tuple[Path, MlflowClient]) -> None:
    root, client = store
    uri = rl.store_uri(root)
    rl.make_model(client, root, "m", 2 * ROUNDS + 1)
    promotion.promote("m", "1", reason="start")
    consistent = 0
    for r in range(ROUNDS):
        pair = (str(2 + 2 * r), str(3 + 2 * r))
        before = champion_of(client, "m")
        procs = {
            v: rl.cli(["promote", "--model-name", "m", "--version", v, "--reason", f"round {r}"], uri)
            for v in pair
        }
        outputs = {v: p.communicate(timeout=300) for v, p in procs.items()}
        assert all(p.returncode == 0 for p in procs.values()), outputs
        # Each process printed the predecessor it really replaced: one the old champion, the
        # other the first one's version.
        said = {v: out.split("(previous champion: ")[1].split(")")[0] for v, (out, _) in outputs.items()}
        first, second = sorted(pair, key=lambda v: said[v] != before)
        assert said[first] == before and said[second] == first, said
        moves = assert_consistent(client, "m")
        assert [(m["from"], m["to"]) for m in moves[-2:]] == [(before, first), (first, second)]
        consistent += 1
    assert consistent == ROUNDS
    print(f"two concurrent promote processes: history and audit consistent {consistent}/{ROUNDS}")


@pytest.mark.integration
def test_two_processes_promoting_through_a_tracking_server(tmp_path: Path) -> None:
    """The same race through a REST server: the lock's create is the server's SQL insert."""
    from servers import mlflow_server

    with mlflow_server(tmp_path, str(tmp_path / "artifacts")) as url:
        client = MlflowClient(tracking_uri=url)
        rl.make_model(client, tmp_path, "m", 7)
        for r in range(3):
            pair = (str(2 + 2 * r), str(3 + 2 * r))
            procs = [
                rl.cli(["promote", "--model-name", "m", "--version", v, "--reason", f"r{r}"], url)
                for v in pair
            ]
            outputs = [p.communicate(timeout=300) for p in procs]
            assert all(p.returncode == 0 for p in procs), outputs
        moves = assert_consistent(client, "m")
        assert len(moves) == 6
