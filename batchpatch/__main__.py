import sys

from batchpatch.cli import main

sys.exit(main())
