"""`merge_exposition`: the scrape of `openmmp serve` adds its worker processes' counters to its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from openmmp.kit.metrics import merge_exposition


def _process(sends: int, seconds: list[float], created_offset: float) -> str:
    registry = CollectorRegistry()
    counter = Counter("demo_sends", "Sends", ["provider"], registry=registry)
    histogram = Histogram("demo_latency_seconds", "Latency", buckets=(0.1, 1.0), registry=registry)
    counter.labels("viber").inc(sends)
    counter.labels("viber-bot").inc(1)
    for value in seconds:
        histogram.observe(value)
    text = generate_latest(registry).decode()
    # Make the two processes' creation times differ visibly.
    lines = []
    for line in text.splitlines():
        if "_created" in line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            line = f"{name} {float(value) + created_offset}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_counters_and_histograms_of_several_processes_are_added_up() -> None:
    api = _process(3, [0.05], created_offset=0.0)
    worker = _process(4, [0.5, 5.0], created_offset=-100.0)
    merged = merge_exposition([api, worker]).decode()
    samples = _samples(merged)
    assert samples[("demo_sends_total", (("provider", "viber"),))] == 7
    assert samples[("demo_sends_total", (("provider", "viber-bot"),))] == 2
    assert samples[("demo_latency_seconds_bucket", (("le", "0.1"),))] == 1
    assert samples[("demo_latency_seconds_bucket", (("le", "1.0"),))] == 2
    assert samples[("demo_latency_seconds_bucket", (("le", "+Inf"),))] == 3
    assert samples[("demo_latency_seconds_count", ())] == 3
    assert samples[("demo_latency_seconds_sum", ())] == 5.55
    # The earliest creation time is kept, not a sum.
    created = samples[("demo_sends_created", (("provider", "viber"),))]
    assert created == _samples(worker)[("demo_sends_created", (("provider", "viber"),))]
    # Each family is described once.
    assert merged.count("# TYPE demo_sends_total counter") == 1


def test_one_process_comes_out_as_it_went_in() -> None:
    api = _process(3, [0.05], created_offset=0.0)
    assert _samples(merge_exposition([api]).decode()) == _samples(api)
