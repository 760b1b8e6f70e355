"""A fake Huawei Cloud IMS API (UpdateImage, ListImages, the tag API) for tests and demos.

It follows the real service's documented rules and error bodies, and counts what it sees
(concurrency, overlapping updates of one image, what was applied) so tests can check a
client's behaviour.  Its gateway checks AK/SK signatures (SDK-HMAC-SHA256) and tokens, locks
out an AK after repeated failures, and its IAM route issues tokens; a movable clock dates
its answers.  FakeConfig injects faults: errors, throttling, dropped connections and hangs,
at random or scripted per image.  It imports nothing from the rest of batchpatch.
"""

from batchpatch.fake.app import make_app
from batchpatch.fake.auth import FakeAuth
from batchpatch.fake.cli import main
from batchpatch.fake.clock import FakeClock
from batchpatch.fake.config import FakeConfig
from batchpatch.fake.errors import FakeApiError
from batchpatch.fake.harness import FakeServer, running_fake, serving_fake
from batchpatch.fake.stats import FakeStats, LogEntry, StatsSnapshot
from batchpatch.fake.store import ImageFileError, ImageStore, load_images

__all__ = [
    "FakeApiError",
    "FakeAuth",
    "FakeClock",
    "FakeConfig",
    "FakeServer",
    "FakeStats",
    "ImageFileError",
    "ImageStore",
    "LogEntry",
    "StatsSnapshot",
    "load_images",
    "main",
    "make_app",
    "running_fake",
    "serving_fake",
]
