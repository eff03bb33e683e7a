"""The client classes ``hub.client()`` and ``hub.async_client()`` return: httpx2's, minus one hot-path cost.

httpx2 parses and re-joins the URL against ``base_url`` on every request, which measured as about 40% of the
client's own CPU time per request (docs/benchmarks.md). An integration calls the same few paths over and over,
so the joined URL is remembered per path string. ``httpx2.URL`` is immutable, so sharing one between requests
is safe. Everything else is httpx2's behaviour unchanged.
"""

from __future__ import annotations

from typing import Any

import httpx2

__all__ = ["TetherAsyncClient", "TetherClient"]

# Bounded so a caller that puts ids or query strings in every path cannot grow it without limit.
_CACHE_SIZE = 1024


class _MergedURLs:
    """Joined URLs per path string, for one ``base_url`` (a changed ``base_url`` starts afresh)."""

    __slots__ = ("base", "urls")

    def __init__(self) -> None:
        self.base: httpx2.URL | None = None
        self.urls: dict[str, httpx2.URL] = {}

    def get(self, client: Any, url: str) -> httpx2.URL | None:
        if client.base_url is not self.base:
            self.base, self.urls = client.base_url, {}
            return None
        return self.urls.get(url)

    def put(self, url: str, merged: httpx2.URL) -> None:
        if len(self.urls) >= _CACHE_SIZE:
            self.urls.clear()
        self.urls[url] = merged


class _RemembersMergedURLs:
    """Mixed into an httpx2 client class: its ``_merge_url`` is the one hot-path change tether makes."""

    _merged: _MergedURLs

    def _merge_url(self, url: httpx2.URL | str) -> httpx2.URL:
        if not isinstance(url, str):
            return super()._merge_url(url)  # type: ignore[misc, no-any-return]
        merged = self._merged.get(self, url)
        if merged is None:
            merged = super()._merge_url(url)  # type: ignore[misc]
            self._merged.put(url, merged)
        return merged


class TetherClient(_RemembersMergedURLs, httpx2.Client):
    """``httpx2.Client`` that remembers URLs joined with ``base_url``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._merged = _MergedURLs()


class TetherAsyncClient(_RemembersMergedURLs, httpx2.AsyncClient):
    """``httpx2.AsyncClient`` that remembers URLs joined with ``base_url``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._merged = _MergedURLs()
