"""URL id → URL config and the resource policy it is judged by, cached between writes.

Every request needs both, so they are read once per change of the function store (its change
stamp) rather than once per request; a request never waits on a storage scan when nothing
has changed.
"""

from __future__ import annotations

from dataclasses import dataclass

from lamina.control.policies import PolicyService
from lamina.control.urls import KIND, FunctionUrlConfig
from lamina.function_urls.access import public_refusal
from lamina.function_urls.cors import CorsRules
from lamina.store.protocols import FunctionStore
from lamina.store.stamped import StampedCache


@dataclass(frozen=True)
class UrlTarget:
    """A served URL: its config, its CORS rules, whether its policy lets anyone invoke it."""

    config: FunctionUrlConfig
    cors: CorsRules | None
    public: bool
    # Why `public` is False, for the log line a refused request leaves.
    refusal: str | None


class UrlDirectory:
    """Finds the URL a request names; re-reads only after the store has changed."""

    def __init__(self, store: FunctionStore, policies: PolicyService) -> None:
        self._store = store
        self._policies = policies
        self._snapshot = StampedCache(store.change_stamp, self._read)

    def find(self, url_id: str) -> UrlTarget | None:
        configs, targets = self._snapshot.get()
        target = targets.get(url_id)
        if target is None:
            config = configs.get(url_id)
            if config is None:
                return None
            target = self._target(config)
            targets[url_id] = target
        return target

    def _read(self) -> tuple[dict[str, FunctionUrlConfig], dict[str, UrlTarget]]:
        """Every URL config by URL id, and (filled as requests come) their targets."""
        docs = self._store.list_children_of_kind(KIND)
        configs = (FunctionUrlConfig.from_doc(doc) for _, _, doc in docs)
        return {config.url_id: config for config in configs}, {}

    def _target(self, config: FunctionUrlConfig) -> UrlTarget:
        # The policy of exactly what the URL names: the function for $LATEST, else the alias.
        statements = self._policies.statements_for(config.function_name, config.qualifier)
        refusal = public_refusal(statements)
        cors = CorsRules(config.cors) if config.cors is not None else None
        return UrlTarget(config, cors, public=refusal is None, refusal=refusal)
