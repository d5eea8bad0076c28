"""Run inside a fresh Lambda-like process by bench/coldstart.py (passed with `python -c`).

Imports the handler module from the working directory (the function's folder, as the Lambda
runtime's task root), then calls its handler once with the event in argv[1]; prints one JSON
line of timings. Standard library only: the process has the function's packages and nothing else.
"""

import json
import sys
import time

started = time.perf_counter()
cpu_started = time.process_time()
import app  # noqa: E402

imported = time.perf_counter()
cpu_imported = time.process_time()


class Context:
    function_name = "probe"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:probe"
    memory_limit_in_mb = 512
    aws_request_id = "00000000-0000-0000-0000-000000000001"
    log_group_name = "/aws/lambda/probe"
    log_stream_name = "probe"

    def get_remaining_time_in_millis(self) -> int:
        return 10_000


result = app.handler(json.loads(sys.argv[1]), Context())
done = time.perf_counter()
cpu_done = time.process_time()
print(
    json.dumps(
        {
            "import_ms": (imported - started) * 1000,
            "invoke_ms": (done - imported) * 1000,
            "total_ms": (done - started) * 1000,
            "cpu_ms": (cpu_done - cpu_started) * 1000,
            "result": result,
        }
    ),
    file=sys.__stdout__,
)
