"""Pipeline parameters generated from the configuration dataclasses: declared once, in config.py.

KFP builds a pipeline's inputs from its function signature. Rather than restating every field as
a parameter of each ``@dsl.pipeline`` function, :func:`pipeline_function` gives the DAG body a
signature made from the configuration groups the DAG reads (with each field's help text as the
parameter's description in the KFP UI). Which groups each DAG reads is declared here.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

from melanoma_mlops.config import GROUPS, SEED_HELP, RunConfig

_TYPES = {"int": int, "float": float, "str": str, "bool": bool}

#: The configuration groups each DAG reads (tests/test_pipeline_params.py walks the compiled IR).
MAIN_GROUPS = ("data", "training", "evaluation", "explain", "gate")
ABLATION_GROUPS = ("data", "training", "single_stage", "evaluation")


def config_parameters(groups: Sequence[str], seed: bool) -> list[tuple[inspect.Parameter, str]]:
    """(parameter, help) for ``seed`` (if asked) and every field of ``groups``, defaults from RunConfig."""
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
            kind = _TYPES[f.type if isinstance(f.type, str) else f.type.__name__]
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
) -> Callable[..., Any]:
    """A function KFP's ``dsl.pipeline`` accepts, whose parameters are ``leading`` + the config's.

    KFP calls it with one pipeline channel per parameter (positionally, in signature order); the
    body receives them as attributes of one namespace (``p.image_size``).
    """
    described = [*leading, *config_parameters(groups, seed)]
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
