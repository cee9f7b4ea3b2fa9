"""Pipeline parameters generated from the configuration dataclasses: declared once, in config.py.

KFP builds a pipeline's inputs from its function signature. Rather than restating every field as
a parameter of each ``@dsl.pipeline`` function, :func:`pipeline_function` gives the DAG body a
signature made from the configuration groups the DAG reads (with each field's help text as the
parameter's description in the KFP UI). Which groups each DAG reads is declared here.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import linecache
import textwrap
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

from melanoma_mlops import config
from melanoma_mlops.config import GROUPS, SEED_HELP, RunConfig

#: The configuration groups each DAG reads (tests/unit/test_pipeline_params.py walks the compiled IR).
MAIN_GROUPS = ("data", "training", "evaluation", "explain", "gate")
ABLATION_GROUPS = ("data", "training", "single_stage", "evaluation")
EXTERNAL_GROUPS = ("data", "explain", "external")
#: Fields of EXTERNAL_GROUPS that only a training run reads (evaluate neither splits nor picks the task:
#: the model's own task labels the images): not inputs of the external-validation pipeline, refused by
#: ``melanoma-mlops evaluate``, so no one sets a value that would be ignored.
EXTERNAL_TRAINING_ONLY = ("task", "val_fraction", "test_fraction")


def config_parameters(
    groups: Sequence[str], seed: bool, exclude: Sequence[str] = ()
) -> list[tuple[inspect.Parameter, str]]:
    """(parameter, help) for ``seed`` (if asked) and every field of ``groups`` but ``exclude``,
    defaults from RunConfig."""
    defaults = RunConfig().as_params()
    out = []
    if seed:
        out.append(
            (
                inspect.Parameter(
                    "seed", inspect.Parameter.KEYWORD_ONLY, default=defaults["seed"], annotation=int
                ),
                SEED_HELP,
            )
        )
    for name in groups:
        for f in dataclasses.fields(GROUPS[name]):
            if f.name in exclude:
                continue
            kind = config.kind_of(f)
            param = inspect.Parameter(
                f.name, inspect.Parameter.KEYWORD_ONLY, default=defaults[f.name], annotation=kind
            )
            out.append((param, f.metadata["help"]))
    return out


def pipeline_function(
    name: str,
    description: str,
    body: Callable[[SimpleNamespace], Any],
    *,
    leading: Sequence[tuple[inspect.Parameter, str]],
    groups: Sequence[str],
    seed: bool,
    returns: Any,
    exclude: Sequence[str] = (),
) -> Callable[..., Any]:
    """A function KFP's ``dsl.pipeline`` accepts, whose parameters are ``leading`` + the config's.

    KFP calls it with one pipeline channel per parameter (positionally, in signature order); the
    body receives them as attributes of one namespace (``p.image_size``).
    """
    described = [*leading, *config_parameters(groups, seed, exclude)]
    params = [p.replace(kind=inspect.Parameter.POSITIONAL_OR_KEYWORD) for p, _ in described]
    signature = inspect.Signature(params, return_annotation=returns)

    def pipeline(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return body(SimpleNamespace(**bound.arguments))

    pipeline.__name__ = pipeline.__qualname__ = name.replace("-", "_")
    pipeline.__signature__ = signature  # type: ignore[attr-defined]
    pipeline.__annotations__ = {p.name: p.annotation for p in params} | {"return": returns}
    args_doc = "\n".join(f"    {p.name}: {help_text}" for p, help_text in described)
    pipeline.__doc__ = f"{description}\n\nArgs:\n{args_doc}\n"
    return pipeline


# --------------------------------------------------------------------------------------------
# Component signatures generated from the configuration groups
# --------------------------------------------------------------------------------------------


def group_parameters(fn: Callable[..., Any]) -> dict[str, type]:
    """The parameters of ``fn`` annotated with a configuration group (``training: TrainingConfig``),
    each with the group class of :data:`~melanoma_mlops.config.GROUPS` of that name."""
    by_name = {group.__name__: group for group in GROUPS.values()}
    return {
        name: by_name[kind.__name__]
        for name, kind in inspect.get_annotations(fn).items()
        if isinstance(kind, type) and kind.__name__ in by_name
    }


def config_component(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with each configuration-group parameter replaced by that group's fields.

    A component declares ``training: TrainingConfig``; KFP sees (and the KFP UI shows) one input per
    field of the group, with its default and help, and the body starts by rebuilding the group in
    one call (``training = TrainingConfig(image_size=image_size, ...)``). So a field added to a group
    in ``config.py`` reaches every component that reads the group with no other edit.

    Lightweight components ship their *source* to the pod, so the signature is generated as source:
    the function is re-created from its rewritten syntax tree, and the text is registered with
    ``linecache`` so that ``inspect.getsource`` (which KFP calls) returns it.
    """
    groups = group_parameters(fn)
    if not groups:
        return fn
    source = textwrap.dedent(inspect.getsource(fn))
    node = ast.parse(source).body[0]
    if not isinstance(node, ast.FunctionDef) or node.args.defaults or node.args.kwonlyargs:
        raise TypeError(f"{fn.__name__}: a component is a plain function without defaults")
    own = [a for a in node.args.args if a.arg not in groups]
    docstring = ast.get_docstring(node) or fn.__name__
    first = node.body[1 if ast.get_docstring(node) is not None else 0]
    body = source.splitlines()[first.lineno - 1 : node.end_lineno]
    defaults = RunConfig().as_params()
    signature = [f"    {ast.unparse(a)}," for a in own] + ["    *,"]
    doc = [*docstring.splitlines(), "", "Args:"]
    rebuild = []
    for param, group in groups.items():
        fields = dataclasses.fields(group)
        clash = {a.arg for a in own} & {f.name for f in fields}
        if clash:
            raise TypeError(f"{fn.__name__}: {sorted(clash)} are also fields of {group.__name__}")
        for f in fields:
            signature.append(f"    {f.name}: {config.kind_of(f).__name__} = {defaults[f.name]!r},")
            doc.append(f"    {f.name}: {f.metadata['help']}")
        rebuild += [
            f"    from {config.__name__} import {group.__name__}",
            f"    {param} = {group.__name__}(",
            *(f"        {f.name}={f.name}," for f in fields),
            "    )",
        ]
    returns = f" -> {ast.unparse(node.returns)}" if node.returns else ""
    quoted = "\n".join(f"    {line}".rstrip() for line in doc).replace("\\", "\\\\").replace('"""', r'\"""')
    text = "\n".join(
        [
            f"def {fn.__name__}(",
            *signature,
            f"){returns}:",
            f'    """{quoted.strip()}\n    """',
            *rebuild,
            *body,
        ]
    )
    filename = f"<generated component {fn.__module__}.{fn.__name__}>"
    linecache.cache[filename] = (len(text), None, text.splitlines(keepends=True), filename)
    namespace = dict(fn.__globals__)
    # dont_inherit: this module's `from __future__ import annotations` would turn KFP's types into text
    code = compile(text + "\n", filename, "exec", dont_inherit=True)
    exec(code, namespace)  # nosec B102 - our own component function, re-created from its rewritten source
    generated = namespace[fn.__name__]
    generated.__module__ = fn.__module__
    return generated


def group_arguments(p: SimpleNamespace, *groups: str, exclude: Sequence[str] = ()) -> dict[str, Any]:
    """The pipeline's channels of every field of ``groups``: what a component reading them is passed
    (the fields in ``exclude`` are no pipeline inputs: the component keeps their defaults)."""
    return {
        f.name: getattr(p, f.name)
        for name in groups
        for f in dataclasses.fields(GROUPS[name])
        if f.name not in exclude
    }
