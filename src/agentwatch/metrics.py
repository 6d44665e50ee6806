"""Prometheus metrics of one daemon: counters, gauges and histograms in a :class:`Registry`, rendered in the
text exposition format 0.0.4 (https://prometheus.io/docs/instrumenting/exposition_formats/).

Each daemon owns its registry (tests run many daemons in one process). Keep the series a hot path updates:
``child = counter.labels("claude-hook")`` once, then ``child.inc(n)`` is one attribute add. Updates belong on
the event loop: they are not thread-safe. A metric may instead be read from a callback when scraped.
"""

from __future__ import annotations

import bisect
import functools
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Generic, TypeVar

from agentwatch.logs import get_logger

log = get_logger(__name__)

LabelValues = tuple[str, ...]
Read = Callable[[], float | Mapping[LabelValues, float]]
"""A scrape-time reading: one number for an unlabelled metric, else a number per tuple of label values."""

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


class CounterChild:
    """One counter series: one tuple of label values."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount``; a counter never goes down."""
        if amount < 0:
            raise ValueError(f"a counter only goes up; inc({amount}) is negative")
        self.value += amount


class GaugeChild:
    """One gauge series."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def set(self, value: float) -> None:
        self.value = value

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount

    def dec(self, amount: float = 1.0) -> None:
        self.value -= amount


class HistogramChild:
    """One histogram series: a count per bucket (not cumulative; rendering adds them up), the sum."""

    __slots__ = ("_bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is the +Inf bucket
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self._bounds, value)] += 1  # the first bucket with value <= le
        self.sum += value


Child = TypeVar("Child", CounterChild, GaugeChild, HistogramChild)


class _Family(Generic[Child]):
    """A metric: its name, help, label names, and a series per tuple of label values (or a scrape-time reading)."""

    kind: str

    def __init__(self, name: str, help: str, labels: Sequence[str], read: Read | None = None) -> None:
        self.name = name
        self.help = help
        self.label_names = tuple(labels)
        self._read = read
        self._children: dict[LabelValues, Child] = {}
        if not self.label_names and read is None:
            self.labels()  # an unlabelled metric shows 0 from the start

    def labels(self, *values: str) -> Child:
        """The series for these label values (one per label name, in order); keep it to update it cheaply."""
        child = self._children.get(values)
        if child is None:
            child = self._add_child(values)
        return child

    def _add_child(self, values: LabelValues) -> Child:
        if self._read is not None:
            raise ValueError(f"{self.name} is read when scraped; it has no series to update")
        _check_label_values(self, values)
        child = self._children[values] = self._new_child()
        return child

    def _new_child(self) -> Child:
        raise NotImplementedError

    def _values(self) -> list[tuple[LabelValues, float]]:
        """Each series' label values and value: the callback's reading, else the series updated in place."""
        if self._read is None:
            return [(values, child.value) for values, child in self._children.items()]  # type: ignore[union-attr]
        reading = self._read()
        if not self.label_names:
            return [((), float(reading))]  # type: ignore[arg-type]
        if not isinstance(reading, Mapping):
            raise TypeError(f"{self.name} has labels, so its reading must map label values to numbers; got {reading!r}")
        values = [(key, float(value)) for key, value in reading.items()]
        for key, _ in values:
            _check_label_values(self, key)
        return values

    def samples(self) -> list[str]:
        """The sample lines of this metric, read now."""
        return [f"{self.name}{_label_text(self.label_names, values)} {_number(value)}" for values, value in self._values()]


class Counter(_Family[CounterChild]):
    """A number that only goes up (restarts from 0 with the daemon); its name ends in ``_total``."""

    kind = "counter"

    def _new_child(self) -> CounterChild:
        return CounterChild()

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount`` to an unlabelled counter."""
        self.labels().inc(amount)


class Gauge(_Family[GaugeChild]):
    """A number that goes up and down."""

    kind = "gauge"

    def _new_child(self) -> GaugeChild:
        return GaugeChild()

    def set(self, value: float) -> None:
        """Set an unlabelled gauge."""
        self.labels().set(value)

    def inc(self, amount: float = 1.0) -> None:
        self.labels().inc(amount)

    def dec(self, amount: float = 1.0) -> None:
        self.labels().dec(amount)


class Histogram(_Family[HistogramChild]):
    """Observations counted into buckets by upper bound (``le``), with their sum and count."""

    kind = "histogram"

    def __init__(self, name: str, help: str, buckets: Iterable[float], labels: Sequence[str]) -> None:
        bounds = [float(b) for b in buckets]
        if bounds and bounds[-1] == math.inf:
            bounds.pop()
        if any(math.isnan(b) for b in bounds) or any(a >= b for a, b in zip(bounds, bounds[1:])):
            raise ValueError(f"{name}: buckets must be increasing numbers; got {bounds}")
        if "le" in labels:
            raise ValueError(f"{name}: 'le' is the bucket label of a histogram; choose another label name")
        self.bounds = tuple(bounds)
        super().__init__(name, help, labels)

    def _new_child(self) -> HistogramChild:
        return HistogramChild(self.bounds)

    def observe(self, value: float) -> None:
        """Observe ``value`` in an unlabelled histogram."""
        self.labels().observe(value)

    def samples(self) -> list[str]:
        uppers = [*(_number(b) for b in self.bounds), "+Inf"]
        lines = []
        for values, child in self._children.items():
            labels = _label_text(self.label_names, values)
            cumulative = 0
            for upper, count in zip(uppers, child.counts):
                cumulative += count
                lines.append(f"{self.name}_bucket{_label_text((*self.label_names, 'le'), (*values, upper))} {cumulative}")
            lines.append(f"{self.name}_sum{labels} {_number(child.sum)}")
            lines.append(f"{self.name}_count{labels} {cumulative}")
        return lines


_F = TypeVar("_F", bound=_Family)


class Registry:
    """The metrics of one daemon, rendered together for a scrape."""

    def __init__(self) -> None:
        self._families: list[_Family] = []
        self._names: set[str] = set()
        # Kept out of _families and rendered last, so that it counts the failures of its own scrape.
        self.collect_errors = self._claim(
            Counter(
                "agentwatch_metrics_collect_errors_total",
                "Metrics left out of a scrape because reading them failed (the log says which and why).",
                (),
            ),
            "agentwatch_metrics_collect_errors",
        )

    def counter(self, name: str, help: str, labels: Sequence[str] = (), *, read: Read | None = None) -> Counter:
        """Register a counter; ``read`` makes it read when scraped (e.g. a total kept elsewhere)."""
        if not name.endswith("_total"):
            raise ValueError(f"counter {name!r}: a counter's name ends in _total")
        return self._register(Counter(name, help, labels, read), name.removesuffix("_total"))

    def gauge(self, name: str, help: str, labels: Sequence[str] = (), *, read: Read | None = None) -> Gauge:
        """Register a gauge; ``read`` makes it read when scraped instead of set."""
        return self._register(Gauge(name, help, labels, read))

    def histogram(self, name: str, help: str, buckets: Iterable[float], labels: Sequence[str] = ()) -> Histogram:
        """Register a histogram with these bucket upper bounds (``+Inf`` is always added)."""
        return self._register(Histogram(name, help, buckets, labels), *(f"{name}_{s}" for s in ("bucket", "sum", "count")))

    def _register(self, family: _F, *also: str) -> _F:
        self._families.append(self._claim(family, *also))
        return family

    def _claim(self, family: _F, *also: str) -> _F:
        """Check ``family``'s names; it takes its name and those in ``also`` (sample names, or a counter's base name)."""
        if not _METRIC_NAME.fullmatch(family.name):
            raise ValueError(f"{family.name!r} is not a metric name (letters, digits, _ and :, not starting with a digit)")
        for label in family.label_names:
            if not _LABEL_NAME.fullmatch(label) or label.startswith("__"):
                raise ValueError(f"{family.name}: {label!r} is not a label name (letters, digits and _, not starting with __)")
        if len(set(family.label_names)) != len(family.label_names):
            raise ValueError(f"{family.name}: label names repeat in {family.label_names}")
        names = {family.name, *also}
        if taken := names & self._names:
            raise ValueError(f"{family.name}: {', '.join(sorted(taken))} already registered in this registry")
        self._names |= names
        return family

    def render(self) -> str:
        """Every metric in the text exposition format 0.0.4; a metric whose reading fails is left out and logged."""
        lines: list[str] = []
        for family in [*self._families, self.collect_errors]:
            try:
                samples = family.samples()
            except Exception:
                self.collect_errors.inc()
                log.exception("metric_read_failed", metric=family.name)
                continue
            lines += [f"# HELP {family.name} {_escape_help(family.help)}", f"# TYPE {family.name} {family.kind}", *samples]
        return "\n".join(lines) + "\n"


def add_process_metrics(registry: Registry) -> None:
    """The standard ``process_*`` metrics of this process, read from /proc when scraped (Linux; elsewhere none)."""
    proc = Path("/proc/self")
    if not (proc / "stat").exists():
        return
    page_size = os.sysconf("SC_PAGE_SIZE")
    registry.gauge(
        "process_resident_memory_bytes",
        "Resident memory size in bytes.",
        read=lambda: int((proc / "statm").read_text().split()[1]) * page_size,
    )
    registry.gauge("process_open_fds", "Number of open file descriptors.", read=lambda: len(os.listdir(proc / "fd")))
    registry.gauge(
        "process_start_time_seconds", "Start time of the process since unix epoch in seconds.", read=functools.cache(_start_time)
    )
    registry.counter(
        "process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", read=lambda: sum(os.times()[:2])
    )


def _start_time() -> float:
    """When this process started: now, less the time since boot, plus field 22 of /proc/self/stat (clock ticks
    from boot to the start). To 10 ms; btime in /proc/stat would be to the second. (CLOCK_BOOTTIME, not
    /proc/uptime, which the systemd unit's ProcSubset=pid hides.)"""
    fields = Path("/proc/self/stat").read_text().rpartition(")")[2].split()  # the name in (...) may hold spaces
    return time.time() - time.clock_gettime(time.CLOCK_BOOTTIME) + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def _check_label_values(family: _Family, values: object) -> None:
    if (
        not isinstance(values, tuple)
        or len(values) != len(family.label_names)
        or not all(isinstance(value, str) for value in values)
    ):
        raise ValueError(f"{family.name} takes one str per label {family.label_names}; got {values!r}")


def _label_text(names: Sequence[str], values: Sequence[str]) -> str:
    if not names:
        return ""
    return "{" + ",".join(f'{name}="{_escape_label(value)}"' for name, value in zip(names, values)) + "}"


def _escape_label(value: str) -> str:
    return value.replace("\\", r"\\").replace('"', r"\"").replace("\n", r"\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def _number(value: float) -> str:
    """A sample value as Prometheus spells it: ``+Inf``, ``-Inf``, ``NaN``, integers without ``.0``."""
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)
