"""components/README.md maps every KFP component to its step function: kept in step with the code."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from melanoma_pipelines import components

README = Path(__file__).resolve().parents[2] / "components" / "README.md"


def test_every_component_and_its_step_are_in_the_map() -> None:
    text = README.read_text()
    for fn in components._FUNCTIONS:
        assert f"`{fn.__name__}`" in text, f"components/README.md does not list {fn.__name__}"
        step = re.search(r"from melanoma_mlops\.steps\.(\w+) import (\w+)", inspect.getsource(fn))
        assert step, fn.__name__
        module = f"melanoma_mlops/steps/{step.group(1)}.py"
        assert module in text, f"components/README.md does not name {module} for {fn.__name__}"
        assert (README.parent / module).is_file()


def test_the_python_example_runs(demo_dir: Path, mlflow_store: str, tmp_path: Path) -> None:
    """The README's example, as written, on the demo folder (the store is the test's own)."""
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    (tmp_path / "demo_data").symlink_to(demo_dir, target_is_directory=True)
    scope: dict = {}
    exec(compile(code, str(README), "exec"), scope)  # nosec B102 - the documented example itself
    assert (tmp_path / "out" / "manifest.csv").is_file()
    assert scope["parent_run_id"]
