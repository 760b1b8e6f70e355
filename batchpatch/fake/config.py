"""How the fake behaves beyond the service's rules: the seam for latency and, later, faults."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FakeConfig:
    """Knobs for one fake server.

    ``latency``: seconds every PATCH handler waits, counted as in flight, before answering.
    ``token``: the only X-Auth-Token accepted; None accepts any non-empty token.  It is kept
    out of ``repr`` so it never reaches a log.
    """

    latency: float = 0.0
    token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.latency < 0:
            raise ValueError(f"latency must be >= 0 seconds, not {self.latency}")
