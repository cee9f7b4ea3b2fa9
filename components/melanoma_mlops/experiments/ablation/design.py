"""The ablation's design: variants, protocols, arms and trials, and the parsing of their names.

A *variant* is a training schedule (``two_stage`` | ``single_stage``); a *protocol* is the data
preparation (``honest`` | ``leaky``); an *arm* is one (protocol, variant) pair; a *trial* is one arm
at one seed, written ``protocol:variant:seed``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from melanoma_mlops.artifacts import EXPERIMENT_ENV, LEAKY_LABEL
from melanoma_mlops.errors import ConfigError

ABLATION_EXPERIMENT = "melanoma-ablation"
VARIANTS = ("two_stage", "single_stage")
PROTOCOLS = ("honest", "leaky")
PIPELINE_TAG = "ablation"


# --------------------------------------------------------------------------------------------
# arms and trials
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Arm:
    """One (protocol, variant) pair: a row of the comparison table."""

    protocol: str
    variant: str

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ConfigError(f"protocol {self.protocol!r} is not one of {', '.join(PROTOCOLS)}")
        if self.variant not in VARIANTS:
            raise ConfigError(f"variant {self.variant!r} is not one of {', '.join(VARIANTS)}")

    @property
    def key(self) -> str:
        """``protocol:variant``: what the pipeline branches on."""
        return f"{self.protocol}:{self.variant}"

    @property
    def leaky(self) -> bool:
        return self.protocol == "leaky"

    @property
    def label(self) -> str:
        """Human label; the leaky control can never be mistaken for a result."""
        return f"{LEAKY_LABEL} {self.variant}" if self.leaky else self.variant

    @property
    def metric_prefix(self) -> str:
        """MLflow metric-name-safe prefix (no colons): ``honest.two_stage``."""
        return f"{self.protocol}.{self.variant}"

    @classmethod
    def parse(cls, key: str) -> Arm:
        protocol, _, variant = key.partition(":")
        return cls(protocol, variant)


ARMS = tuple(Arm(p, v) for p in PROTOCOLS for v in VARIANTS)
ARM_KEYS = tuple(a.key for a in ARMS)


def parse_list(
    text: str | Sequence[str], allowed: Sequence[str] | None = None, what: str = "value"
) -> list[str]:
    """Split ``a,b`` (or take a sequence), strip, drop empties and duplicates, check membership."""
    items = [s.strip() for s in (text.split(",") if isinstance(text, str) else text)]
    out = list(dict.fromkeys(s for s in items if s))
    if not out:
        raise ConfigError(f"no {what} given")
    if allowed is not None:
        bad = [s for s in out if s not in allowed]
        if bad:
            raise ConfigError(f"unknown {what} {bad}: choose from {', '.join(allowed)}")
    return out


def parse_seeds(text: str | Sequence[int | str]) -> list[int]:
    """``0,1,2`` -> [0, 1, 2]; seeds must be distinct non-negative integers (pairing is by seed)."""
    try:
        seeds = [int(s) for s in parse_list([str(s) for s in text] if not isinstance(text, str) else text)]
    except ValueError as exc:
        raise ConfigError(f"--seeds {text!r}: seeds are comma-separated integers, e.g. 0,1,2") from exc
    if any(s < 0 or s > 2**31 - 1 for s in seeds):
        raise ConfigError(f"--seeds {text!r}: seeds must lie in [0, 2**31 - 1]")
    return seeds


def protocols_for(option: str) -> list[str]:
    """``--protocol honest|leaky|both`` -> the protocols to run."""
    if option == "both":
        return list(PROTOCOLS)
    return parse_list([option], PROTOCOLS, "protocol")


def trial_keys(variants: Iterable[str], protocols: Iterable[str], seeds: Iterable[int]) -> list[str]:
    """Every (protocol, variant, seed) as ``protocol:variant:seed``, honest arms first."""
    return [
        f"{Arm(p, v).key}:{int(s)}"
        for p in (p for p in PROTOCOLS if p in set(protocols))
        for v in (v for v in VARIANTS if v in set(variants))
        for s in seeds
    ]


def parse_trial(key: str) -> tuple[Arm, int]:
    """``honest:two_stage:0`` -> (Arm, 0); raises :class:`ConfigError` naming the bad part."""
    arm_key, sep, seed = key.rpartition(":")
    if not sep:
        raise ConfigError(f"trial {key!r} is not protocol:variant:seed (e.g. honest:two_stage:0)")
    try:
        return Arm.parse(arm_key), int(seed)
    except ValueError as exc:
        raise ConfigError(f"trial {key!r}: the seed {seed!r} is not an integer") from exc


def check_trials(trials: Sequence[str]) -> list[tuple[Arm, int]]:
    """Parse every trial; refuse duplicates (a repeated trial would count twice in the means)."""
    parsed = [parse_trial(t) for t in trials]
    if not parsed:
        raise ConfigError("the ablation has no trials: give at least one variant, protocol and seed")
    seen: set[tuple[str, int]] = set()
    for arm, seed in parsed:
        if (arm.key, seed) in seen:
            raise ConfigError(f"trial {arm.key}:{seed} is listed twice")
        seen.add((arm.key, seed))
    return parsed


def experiment_env() -> dict[str, str]:
    """Environment every ablation task runs with (see :data:`EXPERIMENT_ENV`)."""
    return {EXPERIMENT_ENV: ABLATION_EXPERIMENT}
