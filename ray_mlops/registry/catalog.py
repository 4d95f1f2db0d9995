"""The model catalog: list models, show versions, search them by name, tag, metric or data.

A search query is a list of terms, all of which must hold:

- ``name:adult*``: model name (shell-style wildcards);
- ``tag:team=fraud`` (or ``tag:team`` for "has the tag"): version tags;
- ``fingerprint:3f9a``: dataset fingerprint (a prefix is enough);
- ``alias:champion``: versions an alias points at;
- ``roc_auc>=0.85`` (``>``, ``>=``, ``<``, ``<=``, ``=``): a test metric of the version.

Example:
    >>> [t.kind for t in parse_query("name:adult* roc_auc>=0.8 tag:team=risk")]
    ['name', 'metric', 'tag']
"""

from __future__ import annotations

import fnmatch
import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ray_mlops.mlflow_names import TAG_FINGERPRINT, TAG_METRIC_PREFIX, TAG_PRIMARY_PREFIX

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.tracking import MlflowClient

    from ray_mlops.registry.reader import RegistryReader, VersionRecord

_COMPARISON = re.compile(r"^([A-Za-z_][\w.]*)\s*(>=|<=|>|<|==|=)\s*([-+\d.eE]+)$")
_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "=": operator.eq,
    "==": operator.eq,
}


class Tagged(Protocol):
    """A model version as MLflow returns it or the catalog reads it: its tags are enough."""

    @property
    def tags(self) -> dict[str, str]: ...


@dataclass(frozen=True)
class Term:
    """One condition of a search query."""

    kind: str  # name | tag | fingerprint | alias | metric
    key: str
    value: str | None = None
    op: str | None = None

    def matches(self, name: str, version: Tagged, aliases: list[str]) -> bool:
        """Whether ``version`` of model ``name``, with ``aliases``, satisfies the term."""
        tags = version.tags or {}
        if self.kind == "name":
            return fnmatch.fnmatchcase(name, self.key)
        if self.kind == "tag":
            return self.key in tags and (self.value is None or tags[self.key] == self.value)
        if self.kind == "fingerprint":
            return tags.get(TAG_FINGERPRINT, "").startswith(self.key)
        if self.kind == "alias":
            return self.key in aliases
        measured = version_metrics(version).get(self.key)
        if measured is None or self.op is None or self.value is None:
            return False
        return _OPERATORS[self.op](measured, float(self.value))


def parse_query(query: str) -> list[Term]:
    """The terms of ``query``.

    Raises:
        ValueError: a term that is none of the forms above, naming it.
    """
    terms = []
    for word in query.split():
        prefix, _, rest = word.partition(":")
        if rest and prefix in ("name", "fingerprint", "alias"):
            terms.append(Term(prefix, rest))
        elif rest and prefix == "tag":
            key, eq, value = rest.partition("=")
            terms.append(Term("tag", key, value if eq else None))
        elif found := _COMPARISON.match(word):
            metric, op, number = found.groups()
            try:
                float(number)
            except ValueError:
                raise ValueError(f"search term {word!r}: {number!r} is not a number") from None
            terms.append(Term("metric", metric, number, op))
        else:
            raise ValueError(
                f"search term {word!r}: use name:GLOB, tag:KEY[=VALUE], fingerprint:PREFIX, "
                "alias:NAME or METRIC>=NUMBER (also >, <, <=, =)"
            )
    if not terms:
        raise ValueError("empty search query")
    return terms


def version_metrics(version: Tagged) -> dict[str, float]:
    """The test metrics recorded on a version (``ray_mlops.metric.<name>`` tags)."""
    metrics = {}
    for key, value in (version.tags or {}).items():
        if key.startswith(TAG_METRIC_PREFIX):
            try:
                number = float(value)
            except ValueError:
                continue
            if math.isfinite(number):
                metrics[key.removeprefix(TAG_METRIC_PREFIX)] = number
    return metrics


def primary_metric(version: Tagged) -> str | None:
    """The name of the metric the version was judged by (its ``test_<metric>`` tag)."""
    for key in version.tags or {}:
        if key.startswith(TAG_PRIMARY_PREFIX):
            return key.removeprefix(TAG_PRIMARY_PREFIX)
    return None


def search_versions(reader: RegistryReader, query: str) -> list[VersionRecord]:
    """The versions that satisfy every term of ``query``, by name, newest version first."""
    terms = parse_query(query)
    names = [t.key for t in terms if t.kind == "name" and not any(c in t.key for c in "*?[")]
    candidates = reader.versions(names[0] if len(names) == 1 else None)
    return [v for v in candidates if all(t.matches(v.name, v, v.aliases) for t in terms)]


def version_aliases(client: MlflowClient, version: ModelVersion) -> list[str]:
    """The aliases pointing at ``version`` (searches do not fill them in)."""
    if version.aliases:
        return list(version.aliases)
    aliases = client.get_registered_model(version.name).aliases or {}
    return sorted(a for a, v in aliases.items() if str(v) == str(version.version))
