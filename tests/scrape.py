"""Scraping a /metrics endpoint over HTTP, as Prometheus does, into samples a test can look up."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families


class Samples:
    """Every sample of one scrape: `value(name, **labels)` sums the samples whose labels include `labels`."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples = [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text)
                        for s in family.samples]

    def names(self) -> set[str]:
        return {name for name, _, _ in self.samples}

    def matching(self, name: str, **labels: str) -> list[tuple[dict[str, str], float]]:
        return [(got, value) for n, got, value in self.samples
                if n == name and all(got.get(k) == v for k, v in labels.items())]

    def value(self, name: str, **labels: str) -> float:
        return sum(value for _, value in self.matching(name, **labels))

    def bucket(self, name: str, le: str, **labels: str) -> float:
        return self.value(f"{name}_bucket", le=le, **labels)


def scrape(url: str, timeout_s: float = 5.0) -> Samples:
    with urllib.request.urlopen(url, timeout=timeout_s) as reply:
        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith("text/plain")
        return Samples(reply.read().decode())
