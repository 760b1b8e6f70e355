"""How the fake behaves beyond the service's rules: credentials, clock, latency and faults."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, get_args

#: What a request can be made to suffer; ``"ok"`` (in a script only) means "no fault".
FaultKind = Literal[
    "ok", "500", "503", "429", "IMG.0060", "reset_before", "reset_after", "hang",
    "502_after", "504_after",
]  # fmt: skip
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)

#: Answers that do not tell the truth or cannot be read (see ``batchpatch.fake.answers``):
#: script items for a PATCH, and (but ``revoke`` and the PATCH-only ones) ``list_answer``.
AnswerFault = Literal[
    "wrong_id", "error_200", "empty_204", "not_json", "huge_body", "gzip_huge", "deep_body",
    "bad_encoding", "revoke",
]  # fmt: skip
ANSWER_FAULTS: tuple[str, ...] = get_args(AnswerFault)
#: The misbehaviours a ListImages answer can be given with ``list_answer``.
LIST_ANSWER_FAULTS = ("not_json", "huge_body", "gzip_huge", "deep_body", "bad_encoding")
#: Every item a script may hold.
SCRIPT_KINDS: tuple[str, ...] = (*FAULT_KINDS, *ANSWER_FAULTS)
#: Every item a tag script or a kind script may hold: the faults, a 200 with an IMS error
#: body and nothing applied (``error_200``), and the unreadable answers.
TAG_SCRIPT_KINDS: tuple[str, ...] = (*FAULT_KINDS, "error_200", *LIST_ANSWER_FAULTS)
#: The request kinds ``kind_script`` can aim at (IAM's token and project routes suffer none).
SCRIPTED_KINDS = ("patch", "list", "tag_write", "tag_read", "tag_list", "tag_query")
#: The size of a ``huge_body`` (and, decompressed, of a ``gzip_huge``) answer.
HUGE_BODY_BYTES = 20 * 1024 * 1024
#: How deep a ``deep_body`` answer nests its JSON arrays.
DEEP_BODY_LEVELS = 200_000

#: The random faults a PATCH can draw, in the order their probabilities partition [0, 1).
#: A GET draws only from the first two.
PATCH_FAULT_FIELDS = ("error_500", "error_503", "flow_control", "reset_before", "reset_after",
                      "hang", "bad_gateway_after", "gateway_timeout_after")  # fmt: skip

Script = Mapping[str, Sequence[str]]

#: The account's project when ``project_id`` is not set (32 hex digits, like Huawei's ids).
DEFAULT_PROJECT_ID = "0f5e1b2a3c4d4e5f8a9b0c1d2e3f4a5b"


def _no_script() -> Script:
    return MappingProxyType({})


@dataclass(frozen=True)
class FakeConfig:
    """Knobs for one fake server.

    ``latency``: seconds every PATCH handler waits, counted as in flight, before answering.

    Authentication (see ``batchpatch.fake.auth`` for the answers).  Secrets (``token``,
    ``secret_key``, ``iam_password``) are kept out of ``repr`` so they never reach a log.
    ``token``: an X-Auth-Token the gateway accepts, besides the tokens the fake's IAM issued.
    ``access_key``, ``secret_key``: the one AK/SK pair whose ``SDK-HMAC-SHA256`` signatures
    are verified; set both or neither.  ``max_skew``: how many seconds an ``X-Sdk-Date`` may
    be away from the fake's clock (Huawei: 15 minutes).  ``clock_offset``: seconds added to
    the real UTC time to make the fake's clock, which dates responses (``Date``), checks
    ``X-Sdk-Date`` and times tokens and lockouts; a nonzero offset plays a client whose clock
    is off by minus that much.  ``project_id``: when set, a signed ``X-Project-Id`` must equal
    it (else 403 APIGW.0310), and IAM tokens are scoped to it.
    ``iam_user``, ``iam_password``, ``iam_domain``: the one IAM user ``POST /v3/auth/tokens``
    issues tokens to (set user and password together; ``iam_domain`` None accepts any
    domain); ``token_lifetime``: seconds an issued token lives (Huawei: 24 hours).
    With none of ``token``, ``access_key`` and ``iam_user`` set, the fake checks nothing:
    any non-empty X-Auth-Token and any well-formed SDK-HMAC-SHA256 Authorization pass (only
    a signed X-Project-Id is still held to ``project_id``), and IAM issues a token to anyone.

    Faults.  A request is decided in this order: routing (404) and authentication (401) are
    never faulted; then the rate limit; then the image's script; then the random faults.

    ``jitter``: a further delay drawn uniformly from [0, jitter] seconds for every PATCH.
    ``error_500``, ``error_503``: the probability that a PATCH or a GET answers 500 IMG.0061
    "Unknown system error." (IMS body) or 503 APIGW.0201 "Backend unavailable." (gateway
    body).  ``flow_control``: the probability that a PATCH answers 400 IMG.0060.
    ``reset_before``: the probability that a PATCH's connection is closed with no response
    and nothing applied; ``reset_after``: the probability that the PATCH is applied (if the
    service's rules allow it) and the connection is then closed with no response.
    ``hang``: the probability that a PATCH never answers; it is held until the client
    disconnects or the server stops, then its connection is closed.
    ``bad_gateway_after``, ``gateway_timeout_after``: the probability that a PATCH is applied
    (if the service's rules allow it) and the gateway then answers 502 or 504 APIGW.0201, as
    when the backend's answer is lost between IMS and the gateway.  Each request draws one
    number and these outcomes are disjoint, so the PATCH probabilities must sum to at most 1;
    a GET uses only ``error_500`` and ``error_503``.  Faulted requests apply nothing (except
    ``reset_after`` and the gateway errors after applying).  A 429 is the gateway's and
    answers at once; every other PATCH fault comes after the handler has waited ``latency``
    plus the jitter, counted in flight, and before the body is checked (the gateway errors
    after applying: after it), so it answers the same whatever the body.
    ``seed``: seeds the ``random.Random`` behind the jitter and the random faults; with the
    same requests in the same order, a seeded server answers the same way.

    ``rate_limit``: at most this many requests (PATCH and GET together) are admitted in any
    sliding 1-second window; a request beyond that answers 429 APIGW.0308 "... policy user
    over ratelimit,limit:N,time:1 second" and is not counted in the window, so a client that
    keeps retrying too fast is not locked out.  A whole number >= 1, or None for no limit.
    ``retry_after``: when set, every 429 (throttled or scripted) carries ``Retry-After`` with
    this many seconds, rounded up to a whole number.

    ``script``: per image id, the faults of its successive PATCHes, each one of
    ``FAULT_KINDS`` (``"429"`` there is the gateway's 429, as from the rate limit, its
    message showing ``rate_limit`` or else the gateway's default of 200).  A PATCH
    with a script item pending takes that item, ``"ok"`` included, and draws no random
    fault; once the list is used up, the image's PATCHes behave as configured.  Requests
    refused before the script (401, or 429 by the rate limit) do not use up an item.  Stored
    as a read-only mapping of tuples.  A script may also hold the answer faults of
    ``ANSWER_FAULTS`` (see ``batchpatch.fake.answers``): a 200 with another image's body
    (``wrong_id``), a 200 with an IMS error body and nothing applied (``error_200``), an
    empty 204 (``empty_204``), a 200 that is not JSON (``not_json``), ``huge_bytes`` of
    body, plain or gzip-compressed (``huge_body``, ``gzip_huge``), ``deep_levels`` of
    nested JSON (``deep_body``), a body that is not UTF-8 (``bad_encoding``): each after the
    patch was applied; and ``revoke``: every IAM token issued so far is revoked, and every
    PATCH in flight with one (this one included) answers 401 APIGW.0307 after its latency,
    nothing applied.

    Misbehaving service, beyond the script.  ``retry_after_header``: when set, every 429
    carries exactly this ``Retry-After`` (``"99999"``, ``"inf"``, an HTTP date), overriding
    ``retry_after``.  ``ignore_marker``: ListImages ignores ``marker``, so every page is the
    first (endless paging).  ``list_answer``: every ListImages 200 is answered with this
    fault of ``LIST_ANSWER_FAULTS`` instead of the images.

    Tags.  ``tag_script``: per image id, the faults of its successive tag writes
    (``tags/action``, AddImageTag, DeleteImageTag), each one of ``TAG_SCRIPT_KINDS``; they
    mean what they mean for a PATCH (``reset_after``, ``502_after`` and ``504_after`` apply
    the write first; ``error_200`` and the unreadable answers replace the 204, the former
    applying nothing).  ``kind_script``: per request kind of ``SCRIPTED_KINDS``, the faults
    of its successive requests, whatever the image (e.g. ``{"tag_query": ["429"]}``); an
    image's own script (``script`` for a PATCH, ``tag_script`` for a tag write) goes first.
    A tag write draws the random faults a PATCH draws; a tag read those of a GET.
    ``extra_projects``: project ids IAM's ``GET /v3/projects?name=REGION`` answers besides
    the account's (``account_project_id``), as for a region with sub-projects; the tag
    paths accept them too.
    """

    latency: float = 0.0
    token: str | None = field(default=None, repr=False)
    jitter: float = 0.0
    error_500: float = 0.0
    error_503: float = 0.0
    flow_control: float = 0.0
    rate_limit: float | None = None
    retry_after: float | None = None
    reset_before: float = 0.0
    reset_after: float = 0.0
    hang: float = 0.0
    bad_gateway_after: float = 0.0
    gateway_timeout_after: float = 0.0
    seed: int | None = None
    script: Script = field(default_factory=_no_script, hash=False)
    access_key: str | None = None
    secret_key: str | None = field(default=None, repr=False)
    max_skew: float = 900.0
    clock_offset: float = 0.0
    project_id: str | None = None
    iam_user: str | None = None
    iam_password: str | None = field(default=None, repr=False)
    iam_domain: str | None = None
    token_lifetime: float = 86400.0
    retry_after_header: str | None = None
    ignore_marker: bool = False
    list_answer: str | None = None
    huge_bytes: int = HUGE_BODY_BYTES
    deep_levels: int = DEEP_BODY_LEVELS
    tag_script: Script = field(default_factory=_no_script, hash=False)
    kind_script: Script = field(default_factory=_no_script, hash=False)
    extra_projects: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self._check_auth()
        self._check_answers()
        for name in ("latency", "jitter"):
            _check_seconds(name, getattr(self, name))
        if self.retry_after is not None:
            _check_seconds("retry_after", self.retry_after)
        for name in PATCH_FAULT_FIELDS:
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be a probability in [0, 1], not {value}")
        total = math.fsum(getattr(self, name) for name in PATCH_FAULT_FIELDS)
        if total > 1 + 1e-9:
            raise ValueError(
                f"the fault probabilities ({', '.join(PATCH_FAULT_FIELDS)}) sum to {total:g}; "
                "they are exclusive outcomes of one draw, so their sum must be at most 1"
            )
        if self.rate_limit is not None and not (
            math.isfinite(self.rate_limit)
            and self.rate_limit >= 1
            and self.rate_limit == int(self.rate_limit)
        ):
            raise ValueError(
                f"rate_limit must be a whole number of requests per second >= 1, "
                f"not {self.rate_limit}"
            )
        object.__setattr__(self, "script", _checked_script(self.script))
        object.__setattr__(
            self, "tag_script", _checked_script(self.tag_script, TAG_SCRIPT_KINDS, "tag_script")
        )
        unknown_kinds = sorted(set(self.kind_script) - set(SCRIPTED_KINDS))
        if unknown_kinds:
            raise ValueError(
                f"kind_script has the unknown request kind {unknown_kinds[0]!r}; "
                f"use one of {', '.join(SCRIPTED_KINDS)}"
            )
        object.__setattr__(
            self,
            "kind_script",
            _checked_script(self.kind_script, TAG_SCRIPT_KINDS, "kind_script"),
        )
        object.__setattr__(self, "extra_projects", tuple(self.extra_projects))

    def _check_auth(self) -> None:
        for first, second in (("access_key", "secret_key"), ("iam_user", "iam_password")):
            if (getattr(self, first) is None) != (getattr(self, second) is None):
                raise ValueError(f"set {first} and {second} together, or neither")
        names = ("token", "access_key", "secret_key", "project_id", "iam_user", "iam_password")
        for name in (*names, "iam_domain"):
            if getattr(self, name) == "":
                raise ValueError(f"{name} must not be empty; leave it None to unset it")
        for name in ("max_skew", "token_lifetime"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0 seconds, not {value}")
        if not math.isfinite(self.clock_offset):
            raise ValueError(f"clock_offset must be finite seconds, not {self.clock_offset}")

    def _check_answers(self) -> None:
        if self.list_answer is not None and self.list_answer not in LIST_ANSWER_FAULTS:
            raise ValueError(
                f"list_answer must be one of {', '.join(LIST_ANSWER_FAULTS)}, "
                f"not {self.list_answer!r}"
            )
        if self.retry_after_header is not None and any(
            char in self.retry_after_header for char in "\r\n"
        ):
            raise ValueError("retry_after_header must be one line")
        for name in ("huge_bytes", "deep_levels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a whole number >= 1")

    @property
    def checks_credentials(self) -> bool:
        """Whether any credential is configured; if not, the gateway lets every caller in."""
        return self.token is not None or self.access_key is not None or self.iam_user is not None

    @property
    def account_project_id(self) -> str:
        """The project the account's images live in: ``project_id``, or a fixed default."""
        return self.project_id or DEFAULT_PROJECT_ID

    @property
    def throttle_limit(self) -> int | None:
        """``rate_limit`` as the whole number the gateway's message shows, or None."""
        return None if self.rate_limit is None else int(self.rate_limit)


def _check_seconds(name: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0 seconds, not {value}")


def _checked_script(
    script: Script, kinds: tuple[str, ...] = SCRIPT_KINDS, name: str = "script"
) -> Script:
    checked: dict[str, tuple[str, ...]] = {}
    for image_id, faults in script.items():
        if not isinstance(image_id, str):
            raise ValueError(f"{name} keys must be strings, not {image_id!r}")
        if isinstance(faults, str):
            raise ValueError(
                f"{name}[{image_id!r}] must be a sequence of faults, not the string {faults!r}"
            )
        unknown = [fault for fault in faults if fault not in kinds]
        if unknown:
            raise ValueError(
                f"{name}[{image_id!r}] has the unknown fault {unknown[0]!r}; "
                f"use one of {', '.join(kinds)}"
            )
        checked[image_id] = tuple(faults)
    return MappingProxyType(checked)
