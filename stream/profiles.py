"""Model profiles: a one-word choice between a commercially usable setup and the most accurate one.

``models.profile`` (``--profile`` on the command line; the names are :data:`stream.config.PROFILES`):

* ``commercial`` (the default): every model that runs must allow commercial use (``ModelSpec.commercial_use``
  in :mod:`models.registry`). Naming any other model, as detector or classifier, is an error that names the
  model and its licence. Strict on purpose: a shop's setup must never run a research-only model by accident,
  not even one chosen explicitly.
* ``accurate``: the most accurate classifier whatever its licence: ``utk_multihead`` (this project's network,
  trained on UTKFace, which is for non-commercial research only), alone for age and gender. ``--set
  classifier.*`` on the command line still picks other classifiers. Any model may run.
* ``research``: any model may run; nothing is changed.

Only the product's entry points apply a profile (``python -m stream``); evaluations and benchmarks, which
compare models by design, name their models themselves.
"""

from __future__ import annotations

from collections.abc import Sequence

from stream.config import Config, replace

#: The classifier the ``accurate`` profile picks (``classifier:`` keys).
ACCURATE_CLASSIFIER = {"age_model": "utk_multihead", "gender_model": "none"}


class ProfileError(ValueError):
    """A model is not allowed by the active profile (one-line message naming the model and its licence)."""


def apply_profile(config: Config, overrides: Sequence[str] = ()) -> Config:
    """``config`` with its profile's model choices made; ``classifier.*`` keys given in ``overrides``
    (``--set section.key=value`` strings) win over the profile's."""
    if config.models.profile != "accurate":
        return config
    explicit = {item.partition("=")[0].strip() for item in overrides}
    changes = {key: value for key, value in ACCURATE_CLASSIFIER.items() if f"classifier.{key}" not in explicit}
    return replace(config, "classifier", **changes) if changes else config


def named_models(config: Config) -> list[str]:
    """Registry names of the models a config names (``detector.name: auto`` picks only commercially usable
    detectors, ``stream.detectors.AUTO_ORDER``, so it names none)."""
    from stream.classify import classifier_model_names

    detector = [] if config.detector.name == "auto" else [config.detector.name]
    return [*detector, *classifier_model_names(config.classifier)]


def check_profile(config: Config) -> None:
    """Refuse models the profile does not allow.

    Raises:
        ProfileError: Under ``commercial``, a model whose licence forbids commercial use.
    """
    from models.registry import get_spec

    if config.models.profile != "commercial":
        return
    for name in named_models(config):
        spec = get_spec(name)
        if not spec.commercial_use:
            raise ProfileError(f"model {name!r} is not licensed for commercial use ({spec.licence}); the commercial "
                               f"profile refuses it: choose another model or run with --profile research (or "
                               f"accurate)")
