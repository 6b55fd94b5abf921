"""What pages are drawn with: the dashboard chart's geometry, and the pager of lists."""

from __future__ import annotations

from openmmp.messages.tallies import HOUR_MS
from openmmp.models.message import MessageStatus
from openmmp.portal import charts


class TestChart:
    def test_hours_fall_in_their_bucket_and_statuses_stack_in_order(self):
        week = charts.RANGES["7d"]
        first, end = charts.window(week, 1_000 * HOUR_MS + 5)
        assert end - first == 28 * 6 * HOUR_MS
        counts = {
            (first, MessageStatus.READ): 3,
            (first + 5 * HOUR_MS, MessageStatus.FAIL): 1,  # the same 6-hour bucket
            (first + 6 * HOUR_MS, MessageStatus.SENT): 2,  # the next one
        }
        drawn = charts.chart("SMS", "id", counts, week, first)
        assert drawn.bars[0].counts["read"] == 3 and drawn.bars[0].counts["failed"] == 1
        assert drawn.bars[1].counts["sent"] == 2
        assert [series for _, _, _, series in drawn.bars[0].pieces] == ["read", "failed"]
        assert drawn.totals == {"read": 3, "delivered": 0, "sent": 2, "pending": 0, "failed": 1}

    def test_the_axis_has_distinct_whole_labels_and_the_tallest_bar_fits(self):
        for tallest in (0, 1, 3, 17, 1000):
            drawn = charts.chart("x", "y", {(0, MessageStatus.READ): tallest}, charts.RANGES["24h"], 0)
            labels = [value for _, value in drawn.ticks]
            assert labels == sorted(set(labels)) and labels[0] == 0
            assert labels[-1] >= tallest and all(isinstance(v, int) for v in labels)
            height = sum(h for _, h, _, _ in drawn.bars[0].pieces)
            assert height <= charts.HEIGHT - charts.BOTTOM - charts.TOP + 0.01


class TestPager:
    def test_middle_pages_link_both_ways_and_one_page_shows_none(self):
        from openmmp.portal.web import templates

        pager = templates.get_template("_macros.html").module.pager  # type: ignore[attr-defined]
        middle = str(pager(2, 3, 45, "keys", "/portal/keys", "&name=a%20b"))
        assert 'href="/portal/keys?page=1&amp;name=a%20b" rel="prev"' in middle
        assert 'href="/portal/keys?page=3&amp;name=a%20b" rel="next"' in middle
        assert "Page 2 of 3 (45 keys)" in middle
        assert str(pager(1, 1, 3, "keys", "/portal/keys")).strip() == ""
