"""A pre-existing sitecustomize that ``loopprof run`` must chain to: it turns automatic GC off, so the only
collections in the test server are the ones it makes and counts itself (exact ground truth)."""

import gc
import os

if os.environ.get("LOOPPROF_TEST_GC_OFF") == "1":
    gc.disable()
