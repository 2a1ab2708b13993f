"""`guard rehearse` replay through the real Admission on a fake clock, against known answers.

constant.log: 100 GETs of /event/item, one every 100 ms, each taking 450 ms. In flight at
any moment: the requests started in the last 450 ms, so the peak is exactly 5. Under a
ceiling of 3 the pattern repeats every 500 ms: three admitted (0, 100, 200 ms), two refused
(300, 400 ms: three still inside), then the first has left at 450 ms. So 60 admitted, 40
refused. The rule is at its ceiling from 200 to 450 ms in the first cycle (0.25 s); in each
of the 19 later ones from 0 to 50, 100 to 150 and 200 to 450 ms (0.35 s): 6.9 s in all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from guard.config import load_config
from guard.tools.rehearse import rehearse, sweep
from guard.tools.rehearse_inputs import Sweep, parse_sweep, synthetic_events, with_ceiling
from guard.tools.rehearse_logs import Event, read_log
from guard.tools.rehearse_replay import replay
from guard.tools.rehearse_report import to_text
from tests.support.servers import write_config

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "rehearse"
CONFIG = """
waiting_page: waiting.html
backends:
  - {name: was-1, url: 'http://127.0.0.1:9', max_active: 100}
rules:
  - {name: event, path: /event/**, max_active: 3}
  - {name: checkout, path: /order/**, max_active: 1, action: reject}
  - {name: coupon, path: /coupon/**, rate: 2/s, burst: 2}
  - {name: admin, path: /admin/**, block: true}
"""


@pytest.fixture
def config(tmp_path: Path) -> Any:
    return load_config(write_config(tmp_path, CONFIG)).config


def events() -> list[Event]:
    return read_log(FIXTURES / "constant.log").events


def test_a_ceiling_below_the_peak_refuses_exactly_the_hand_computed_number(config: Any) -> None:
    result = replay(config, events())
    event = next(r for r in result.rules if r.name == "event")
    assert (event.admitted, event.refused["waiting_page"], event.refused_total) == (60, 40, 40)
    assert event.peak == 3 and result.backends[0].peak == 3
    assert event.at_ceiling == pytest.approx(0.25 + 19 * 0.35, abs=1e-4)
    assert result.span == pytest.approx(9.7 + 0.45, abs=1e-4)  # the last two were refused


def test_without_a_ceiling_the_peak_is_the_logs_own_concurrency(config: Any) -> None:
    result = replay(with_ceiling(config, "event", 1000), events())
    assert result.site.peak == 5 and result.refused == 0 and result.admitted == 100
    assert result.backends[0].near_ceiling == 0  # 5 of 100 never nears 90 %


def test_refusals_are_counted_by_what_the_shopper_sees(config: Any) -> None:
    def burst(path: str, client: str = "192.0.2.1") -> list[Event]:
        return [Event(i * 0.01, 10.0, "POST", path, client, 200) for i in range(4)]

    stream = sorted(
        burst("/order/pay") + burst("/coupon/x") + burst("/admin/x"), key=lambda e: e.start
    )
    result = replay(config, stream)
    by_name = {r.name: r for r in result.rules}
    assert by_name["checkout"].refused["json"] == 3  # reject rule: JSON, never the page
    assert by_name["coupon"].refused["over_rate"] == 2  # burst 2 at 2/s within 40 ms
    assert by_name["admin"].refused["blocked"] == 4
    assert by_name["checkout"].admitted == 1 and by_name["coupon"].admitted == 2


def test_requests_refused_in_the_log_get_their_rules_median_duration(config: Any) -> None:
    logged = [
        Event(0.0, 1.0, "GET", "/event/a", "c", 200),
        Event(0.0, 3.0, "GET", "/event/b", "c", 200),
        Event(0.5, 0.5, "GET", "/event/c", "c", 503, forwarded=False),
    ]
    result = replay(with_ceiling(config, "event", 10), sorted(logged, key=lambda e: e.start))
    assert result.substituted == 1
    assert result.span == pytest.approx(3.0)  # the substitute ran 0.5 + 2.0 (median) < 3.0
    longer = [*logged[:2], Event(2.5, 2.5, "GET", "/event/c", "c", 503, forwarded=False)]
    assert replay(with_ceiling(config, "event", 10), longer).span == pytest.approx(4.5)


def test_sweep_admits_more_and_refuses_less_as_the_ceiling_rises(config: Any) -> None:
    rows = sweep(config, events(), parse_sweep("event.max_active=1..6"))
    admitted = [row.replay.admitted for row in rows]
    refused = [row.replay.refused for row in rows]
    assert admitted == sorted(admitted) and refused == sorted(refused, reverse=True)
    assert [row.scope.peak for row in rows] == [1, 2, 3, 4, 5, 5]  # never above the log's 5
    assert refused[2] == 40 and refused[4] == refused[5] == 0
    assert all(a + r == 100 for a, r in zip(admitted, refused, strict=True))


def test_sweep_values_and_targets_are_validated(config: Any) -> None:
    assert parse_sweep("event.max_active=8..16/4").values == (8, 12, 16)
    assert parse_sweep("was-1.max_active=2,5").values == (2, 5)
    assert with_ceiling(config, "was-1", 7).backends[0].max_active == 7
    assert with_ceiling(config, "site", 9).max_active == 9
    for bad in ("event=3", "event.max_active=0..2", "event.max_active=a..b"):
        with pytest.raises(Exception, match=r"expected NAME\.max_active"):
            parse_sweep(bad)
    with pytest.raises(ValueError, match="no rule or backend named 'nope'"):
        sweep(config, events(), Sweep("nope", (1,)))


def test_a_synthetic_surge_replays_with_the_shape_and_service_time(config: Any) -> None:
    surge = synthetic_events(
        {"rate": "50/s", "duration": "2s", "service": "100ms", "path": "/event/x"}
    )
    assert len(surge) == 100
    doc = rehearse(with_ceiling(config, "event", 4), surge, {"source": "synthetic"})
    event = next(r for r in doc["rules"] if r["name"] == "event")
    assert event["peak_active"] == 4 and event["admitted"] + event["refused_total"] == 100
    assert event["refused"]["waiting_page"] > 0  # 50/s for 0.1 s each: 5 in flight, above 4
    text = to_text(doc)
    assert "conservative" in text and "No waiting rooms" in text and "no saturation" in text
