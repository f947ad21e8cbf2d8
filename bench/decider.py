"""A decider for figures 3 and 4: human decisions through services.escalation_decide, on a
schedule, with the commit time stamped.

Started by bench/app.py (DeciderPool) with the app's environment (production settings, bench database).
Protocol on stdin/stdout, one JSON object per line:
  -> prints {"ready": true} once Django is set up
  <- {"t0": unix seconds, "interval": s, "items": [[slot, escalation_id], ...]}
  -> {"stamps": {escalation_id: [called, committed, returned]}, "late_ms": [...]}  (per job)
  <- {"quit": true}

`committed` is time.time() taken right after COMMIT returns on this process's connection
(the connection's commit() is wrapped here, in the bench only), before Django runs the
on-commit hooks (Celery publish, channel-layer group_send, wake-up publish); `returned` is
time.time() after the service returns.
"""

import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import connections

    from escalations import services

    stamps: list[float] = []
    conn = connections["default"]
    original = conn.commit

    def commit() -> None:
        original()
        stamps.append(time.time())

    conn.commit = commit  # type: ignore[method-assign]  # the bench's stamp, in this process only
    user = get_user_model().objects.get(username=os.environ.get("BENCH_REVIEWER", "bench-reviewer"))
    request = services.DecisionRequest(kind="option", option="update-callers")
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        job = json.loads(line)
        if job.get("quit"):
            break
        out, late = {}, []
        t0, interval = job["t0"], job["interval"]
        for slot, esc_id in job["items"]:
            target = t0 + slot * interval
            while (left := target - time.time()) > 0:
                time.sleep(min(left, 0.05) if left > 0.002 else 0)
            stamps.clear()
            called = time.time()
            late.append((called - target) * 1000)
            services.escalation_decide(escalation_id=esc_id, request=request, user=user)
            returned = time.time()
            if len(stamps) != 1:
                raise RuntimeError(f"expected one commit in escalation_decide, saw {len(stamps)}")
            out[esc_id] = [called, stamps[0], returned]
        print(json.dumps({"stamps": out, "late_ms": late}), flush=True)


if __name__ == "__main__":
    main()
