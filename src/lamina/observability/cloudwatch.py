"""CloudWatch's metric reads over Lamina's per-minute series: GetMetricStatistics,
GetMetricData (MetricStat queries) and ListMetrics, for the `AWS/Lambda` namespace.

Takes and returns the botocore model's members, whatever protocol carried them. The rules
are CloudWatch's: periods are multiples of 60 s for standard-resolution metrics; buckets
start at StartTime (rounded down to the minute, or to 5 minutes or an hour for old data);
only buckets with data are returned; at most 1,440 datapoints per GetMetricStatistics and
100,800 per GetMetricData; dimensions must match a published set exactly.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from lamina import metrics as m
from lamina.errors import InvalidNextToken, InvalidParameterCombination, InvalidParameterValue
from lamina.observability.aggregation import dims_key
from lamina.observability.statistics import STATISTICS, StatSet, percentile_of
from lamina.observability.telemetry import Telemetry

MAX_STATISTICS_DATAPOINTS = 1440
MAX_DATA_DATAPOINTS = 100_800
LIST_PAGE = 500
_METRIC_ID = re.compile(r"^[a-z][a-zA-Z0-9_]*$")
_DAY_S = 86400
# ListMetrics shows metrics that had data in the last two weeks; RecentlyActive=PT3H, 3 hours.
_LISTED_S = 14 * _DAY_S
_RECENT_S = 3 * 3600


def epoch(value: Any) -> float:
    """A timestamp member as epoch seconds, whichever protocol decoded it."""
    if isinstance(value, datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return moment.timestamp()
    return float(value)  # epoch seconds, as JSON carries timestamps


def timestamp(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class MetricReader:
    """Answers CloudWatch reads from the telemetry store."""

    def __init__(self, telemetry: Telemetry, clock: Callable[[], float] = time.time) -> None:
        self._telemetry = telemetry
        self._clock = clock

    # ---------------------------------------------------------- the operations

    def get_metric_statistics(self, params: dict[str, Any]) -> dict[str, Any]:
        statistics: list[str] = params.get("Statistics") or []
        extended: list[str] = params.get("ExtendedStatistics") or []
        if not statistics and not extended:
            raise InvalidParameterCombination(
                "At least one of the parameters Statistics and ExtendedStatistics must be "
                "specified."
            )
        for index, name in enumerate(extended, start=1):
            if percentile_of(name) is None:
                raise InvalidParameterValue(
                    f"The value {name} for parameter ExtendedStatistics.member.{index} is not "
                    "supported: use a percentile such as p99 or p99.9."
                )
        start, end = self._window(params["StartTime"], params["EndTime"])
        period = _period(params["Period"], "Period")
        requested = _datapoints(start, end, period)
        if requested > MAX_STATISTICS_DATAPOINTS:
            raise InvalidParameterCombination(
                f"You have requested up to {requested} datapoints, which exceeds the limit of "
                f"{MAX_STATISTICS_DATAPOINTS}. You may reduce the datapoints requested by "
                "increasing Period, or decreasing the time range."
            )
        name = params["MetricName"]
        self._telemetry.flush()
        buckets = self._buckets(params, start, end, period)
        unit = m.UNITS.get(name, m.NONE)
        datapoints = []
        for at, stats in sorted(buckets.items()):
            point: dict[str, Any] = {"Timestamp": timestamp(at), "Unit": unit}
            for statistic in statistics:
                point[statistic] = stats.statistic(statistic)
            values = {p: stats.statistic(p) for p in extended}
            if values:
                point["ExtendedStatistics"] = {p: v for p, v in values.items() if v is not None}
            datapoints.append(point)
        return {"Label": name, "Datapoints": datapoints}

    def get_metric_data(self, params: dict[str, Any]) -> dict[str, Any]:
        queries: list[dict[str, Any]] = params["MetricDataQueries"]
        start, end = self._window(params["StartTime"], params["EndTime"])
        seen: set[str] = set()
        total = 0
        for index, query in enumerate(queries, start=1):
            where = f"MetricDataQueries.member.{index}"
            query_id = query["Id"]
            if not _METRIC_ID.match(query_id):
                raise InvalidParameterValue(
                    f"The value {query_id} for parameter {where}.Id is invalid: it must start "
                    "with a lower-case letter and hold only letters, digits and underscores."
                )
            if query_id in seen:
                raise InvalidParameterValue(
                    f"The value {query_id} for parameter {where}.Id is used more than once."
                )
            seen.add(query_id)
            if query.get("Expression") is not None:
                raise InvalidParameterValue(
                    f"The parameter {where}.Expression is not supported by Lamina: query "
                    "metrics with MetricStat and compute expressions on the results."
                )
            stat = query.get("MetricStat")
            if stat is None:
                raise InvalidParameterCombination(
                    f"Exactly one of {where}.MetricStat and {where}.Expression must be given."
                )
            if stat["Stat"] not in STATISTICS and percentile_of(stat["Stat"]) is None:
                raise InvalidParameterValue(
                    f"The value {stat['Stat']} for parameter {where}.MetricStat.Stat is not "
                    f"supported: use one of {', '.join(STATISTICS)} or a percentile such as p99."
                )
            total += _datapoints(start, end, _period(stat["Period"], f"{where}.MetricStat.Period"))
        if total > MAX_DATA_DATAPOINTS:
            raise InvalidParameterCombination(
                f"You have requested up to {total} datapoints, which exceeds the limit of "
                f"{MAX_DATA_DATAPOINTS}. You may reduce the datapoints requested by increasing "
                "Period, or decreasing the time range."
            )
        self._telemetry.flush()
        descending = params.get("ScanBy", "TimestampDescending") == "TimestampDescending"
        results = []
        for query in queries:
            if query.get("ReturnData") is False:
                continue
            stat = query["MetricStat"]
            metric = stat["Metric"]
            buckets = self._buckets(
                {**metric, "Unit": stat.get("Unit")}, start, end, stat["Period"]
            )
            points = [
                (at, value)
                for at, stats in sorted(buckets.items(), reverse=descending)
                if (value := stats.statistic(stat["Stat"])) is not None
            ]
            results.append(
                {
                    "Id": query["Id"],
                    "Label": query.get("Label") or metric.get("MetricName", ""),
                    "Timestamps": [timestamp(at) for at, _ in points],
                    "Values": [value for _, value in points],
                    "StatusCode": "Complete",
                    "Messages": [],
                }
            )
        return {"MetricDataResults": results, "Messages": []}

    def list_metrics(self, params: dict[str, Any]) -> dict[str, Any]:
        namespace = params.get("Namespace")
        if namespace not in (None, m.NAMESPACE):
            return {"Metrics": []}
        now = self._clock()
        recent = params.get("RecentlyActive") == "PT3H"
        since = int((now - (_RECENT_S if recent else _LISTED_S)) // 60)
        self._telemetry.flush()
        wanted_name = params.get("MetricName")
        filters: list[dict[str, Any]] = params.get("Dimensions") or []
        found = []
        for metric, dims in self._telemetry.store.series_names(since):
            if wanted_name is not None and metric != wanted_name:
                continue
            pairs = dict(orjson.loads(dims))
            if all(
                f["Name"] in pairs and f.get("Value") in (None, pairs[f["Name"]]) for f in filters
            ):
                found.append(
                    {
                        "Namespace": m.NAMESPACE,
                        "MetricName": metric,
                        "Dimensions": [{"Name": k, "Value": v} for k, v in sorted(pairs.items())],
                    }
                )
        offset = 0
        token = params.get("NextToken")
        if token is not None:
            if not token.isdigit() or int(token) > len(found):
                raise InvalidNextToken("The NextToken is not valid: pass one ListMetrics returned.")
            offset = int(token)
        page = found[offset : offset + LIST_PAGE]
        result: dict[str, Any] = {"Metrics": page}
        if offset + LIST_PAGE < len(found):
            result["NextToken"] = str(offset + LIST_PAGE)
        return result

    # ---------------------------------------------------------------- helpers

    def _window(self, start_value: Any, end_value: Any) -> tuple[float, float]:
        start, end = epoch(start_value), epoch(end_value)
        if start == end:
            raise InvalidParameterValue("The parameter StartTime must not equal parameter EndTime.")
        if start > end:
            raise InvalidParameterValue(
                "The parameter StartTime must be less than the parameter EndTime."
            )
        return _aligned(start, self._clock()), end

    def _buckets(
        self, metric: dict[str, Any], start: float, end: float, period: int
    ) -> dict[float, StatSet]:
        """The series' minutes in [start, end), merged into period-long buckets from start."""
        name = metric.get("MetricName", "")
        unit = metric.get("Unit")
        if metric.get("Namespace") != m.NAMESPACE or name not in m.UNITS:
            return {}
        if unit is not None and unit != m.UNITS[name]:
            return {}
        dims = dims_key((d["Name"], d["Value"]) for d in metric.get("Dimensions") or [])
        first = math.ceil(start / 60)
        last = math.ceil(end / 60) - 1
        buckets: dict[float, StatSet] = {}
        for row in self._telemetry.store.series(name, dims, first, last):
            at = start + (row.minute * 60 - start) // period * period
            stats = buckets.get(at)
            if stats is None:
                stats = buckets[at] = StatSet()
            stats.merge(StatSet(row.samples, row.total, row.minimum, row.maximum, row.buckets))
        return buckets


def _aligned(start: float, now: float) -> float:
    """CloudWatch rounds StartTime down: to the minute within 15 days, to 5 minutes within
    63 days, to the hour beyond."""
    age = now - start
    step = 60 if age <= 15 * _DAY_S else 300 if age <= 63 * _DAY_S else 3600
    return math.floor(start / step) * step


def _period(period: int, where: str) -> int:
    # Lambda's metrics are standard resolution: one minute is the finest period.
    if period % 60:
        raise InvalidParameterValue(f"The parameter {where} must be a multiple of 60.")
    return period


def _datapoints(start: float, end: float, period: int) -> int:
    return math.ceil((end - start) / period)
