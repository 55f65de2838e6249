"""Stand-ins for what cannot run here: the Lambda service's context object, and a clock."""

from dataclasses import dataclass, field


class FakeClock:
    """Time that moves only when the waiter sleeps: no test waits for real."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@dataclass
class FakeContext:
    """A LambdaContext whose remaining time follows a script: one value per call, then the last."""

    remaining_ms: list[int] = field(default_factory=lambda: [900_000])
    function_name: str = "covid-daily-reports-backfill"
    aws_request_id: str = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"
    calls: int = 0

    def get_remaining_time_in_millis(self) -> int:
        value = self.remaining_ms[min(self.calls, len(self.remaining_ms) - 1)]
        self.calls += 1
        return value
