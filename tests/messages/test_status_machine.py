"""The one status machine: status only moves forward, FAIL only after PENDING or SENT, READ implies DELIVERED."""

from hypothesis import given
from hypothesis import strategies as st

from openmmp.messages.status import steps
from openmmp.models.message import MessageStatus as S

ORDER = {S.PENDING: 0, S.SENT: 1, S.DELIVERED: 2, S.READ: 3}
statuses = st.sampled_from(list(S))


class TestSteps:
    def test_the_documented_transitions(self):
        assert steps(S.PENDING, S.SENT) == [S.SENT]
        assert steps(S.SENT, S.DELIVERED) == [S.DELIVERED]
        assert steps(S.SENT, S.READ) == [S.DELIVERED, S.READ]
        assert steps(S.DELIVERED, S.READ) == [S.READ]
        assert steps(S.PENDING, S.FAIL) == [S.FAIL]
        assert steps(S.SENT, S.FAIL) == [S.FAIL]

    def test_late_or_repeated_reports_change_nothing(self):
        assert steps(S.READ, S.DELIVERED) == []
        assert steps(S.DELIVERED, S.DELIVERED) == []
        assert steps(S.DELIVERED, S.FAIL) == []
        assert steps(S.READ, S.FAIL) == []
        assert steps(S.FAIL, S.READ) == []

    @given(st.lists(statuses, max_size=12))
    def test_any_sequence_of_reports_only_moves_forward(self, reports: list[S]):
        current = S.PENDING
        history = [current]
        for report in reports:
            for step in steps(current, report):
                history.append(step)
                current = step
        progress = [ORDER[s] for s in history if s != S.FAIL]
        assert progress == sorted(progress)
        assert len(set(history)) == len(history)  # no status recorded twice
        if S.FAIL in history:
            assert history[-1] == S.FAIL
            assert S.DELIVERED not in history
        if S.READ in history:
            assert S.DELIVERED in history
