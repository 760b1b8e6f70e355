"""``python -m batchpatch.fake``: the same as ``batchpatch fake-ims``."""

from batchpatch.fake.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
