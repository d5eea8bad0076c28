"""web/js/tidings.js, the browser client as one ES module: what it exports and the seq rule,
checked under Node (the browser tests exercise the same modules in Chromium)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from testkit import require_tool

MODULE = Path(__file__).resolve().parents[3] / "web" / "js" / "tidings.js"

SCRIPT = """
const t = await import(process.argv[1]);
const store = new t.JobStore();
const moved = [];
const job = (seq, stage) => ({ type: "progress", jobId: "j", seq, stage, percent: seq });
moved.push(t.applyMessage(store, { type: "snapshot", topic: "user:u", jobs: [job(3, "transcoding")] }));
moved.push(t.applyMessage(store, job(2, "probing")));           // older: dropped
moved.push(t.applyMessage(store, job(4, "merging")));
moved.push(t.applyMessage(store, { type: "pong" }));
console.log(JSON.stringify({
  exports: Object.keys(t).sort(),
  moved,
  latest: store.jobs.get("j").message.seq,
  subprotocol: t.SUBPROTOCOL,
}));
"""


def test_the_module_exports_the_client_and_applies_the_seq_rule() -> None:
    node = require_tool("node", shutil.which("node"))
    done = subprocess.run(
        [node, "--input-type=module", "-e", SCRIPT, MODULE.as_uri()],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(done.stdout)
    assert {"watchJobs", "applyMessage", "TidingsConnection", "JobStore", "SUBPROTOCOL"} <= set(
        result["exports"]
    )
    assert result["moved"] == [["j"], [], ["j"], []]
    assert result["latest"] == 4
    assert result["subprotocol"] == "tidings.v1"
