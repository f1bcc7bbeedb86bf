import pytest

from harness.errors import WaitAborted, WaitTimeout
from harness.wait import Pending, wait_for


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_returns_the_first_result_that_is_not_pending():
    answers = iter([Pending("starting"), Pending("1/2 ready"), "done"])
    clock = FakeClock()
    assert wait_for(lambda: next(answers), what="x", clock=clock, sleep=clock.sleep) == "done"
    assert clock.now == 1.0


def test_timeout_carries_the_last_state_seen():
    clock = FakeClock()
    with pytest.raises(WaitTimeout) as caught:
        wait_for(
            lambda: Pending(f"seen at {clock.now:g}"),
            what="deployment demo",
            timeout=3,
            interval=1,
            clock=clock,
            sleep=clock.sleep,
        )
    message = str(caught.value)
    assert "deployment demo" in message
    assert "seen at 3" in message
    assert caught.value.last_state == "seen at 3"


def test_transient_errors_count_as_not_yet():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionRefusedError("apiserver starting")
        return len(calls)

    clock = FakeClock()
    assert (
        wait_for(flaky, what="api", transient=(ConnectionError,), clock=clock, sleep=clock.sleep)
        == 3
    )


def test_transient_error_is_the_last_state_on_timeout():
    def refuse():
        raise ConnectionRefusedError("connection refused")

    clock = FakeClock()
    with pytest.raises(WaitTimeout, match="ConnectionRefusedError: connection refused"):
        wait_for(
            refuse,
            what="api",
            timeout=1,
            transient=(ConnectionError,),
            clock=clock,
            sleep=clock.sleep,
        )


def test_abort_fails_at_once():
    clock = FakeClock()

    def broken():
        raise WaitAborted("pod demo-1: ImagePullBackOff")

    with pytest.raises(WaitAborted, match="ImagePullBackOff"):
        wait_for(broken, what="demo", clock=clock, sleep=clock.sleep)
    assert clock.now == 0
