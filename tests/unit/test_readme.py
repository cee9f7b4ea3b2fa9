"""The README's command blocks are read as a user reads them, and what they name is what it says
(running them is tests/integration/test_readme_runs.py; both use tests/readme_blocks.py)."""

from __future__ import annotations

import re
from pathlib import Path

from readme_blocks import README, ROOT, SECTIONS, blocks, commands, script, section


def test_the_command_blocks_are_parsed_as_a_user_reads_them() -> None:
    code = (
        "make ui     # = mlflow ui --port 5000\n"
        "mlflow models serve -m m -h 127.0.0.1 -p 5001 &\n# c\ncurl -s x \\\n  -d y\n"
    )
    assert commands(code) == [
        "make ui     # = mlflow ui --port 5000",
        "mlflow models serve -m m -h 127.0.0.1 -p 5001 &",
        "curl -s x -d y",
    ]
    text = script(code)
    assert "setsid make ui > server-" in text and 'ready http://127.0.0.1:5000/health "$!"' in text
    assert "setsid mlflow models serve -m m -h 127.0.0.1 -p 5001 > server-" in text
    assert 'ready http://127.0.0.1:5001/ping "$!"' in text
    assert "setsid env A=1 streamlit run app.py > server-" in script("A=1 streamlit run app.py\n")
    assert "\ncurl -s x -d y\n" in text
    readme = README.read_text()
    for heading in SECTIONS:
        assert blocks(section(readme, heading)), heading


def test_the_predict_example_names_a_malignant_then_a_benign_demo_image(tmp_path: Path) -> None:
    """The README's files are what it says they are in a fresh demo set (the same generator)."""
    import pandas as pd

    from melanoma_mlops.config import DEMO_IMAGES
    from melanoma_mlops.data import demo

    body = section(README.read_text(), "Promote, serve, predict, and the detection app")
    line = next(c for _, code in blocks(body) for c in commands(code) if "melanoma-mlops predict" in c)
    named = re.findall(r"demo_data/(ISIC_\d+)\.jpg", line)
    assert len(named) == 2 and "malignant, benign" in line
    demo.generate(tmp_path, n=DEMO_IMAGES)
    labels = pd.read_csv(tmp_path / "metadata.csv").set_index("isic_id")["diagnosis_1"]
    assert [labels[i] for i in named] == ["Malignant", "Benign"]


def test_the_compile_example_names_the_image_docs_cluster_builds() -> None:
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    registry = re.search(r"^REGISTRY=(\S+)", (ROOT / "docs" / "cluster.md").read_text(), flags=re.M)
    body = section(README.read_text(), "Compile for a cluster")
    image = re.search(r"--image (\S+)", body)
    assert registry and image
    assert image.group(1) == f"{registry.group(1)}/pipeline:{version}"
