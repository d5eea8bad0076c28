"""Mapping-template cost: parse (once, at start) and render (per message) of API Gateway-style
templates through tidings/local/vtl.py, on the captured message event's requestContext.

Run: `.venv/bin/python -m bench.vtl` (not part of `make bench`: a per-message cost, printed).
"""

from __future__ import annotations

import json
import timeit
from functools import partial
from pathlib import Path

from tidings.local.vtl import MappingTemplate, RenderInput

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = {
    "dynamodb PutItem": (
        '{"TableName":"t","Item":{"connectionId":{"S":"$context.connectionId"},'
        '"user":{"S":"$context.authorizer.userId"}}}'
    ),
    "lambda mapping": (
        '{"text":"$util.escapeJavaScript($input.path(\'$.text\'))",'
        '"who":"$context.connectionId","route":"$context.routeKey"}'
    ),
    "foreach 20": "#set($d=$input.path('$'))[#foreach($i in $d.items)$i#if($foreach.hasNext),#end#end]",
}


def measure(parses: int = 200, renders: int = 2000) -> dict[str, dict[str, float]]:
    event = json.loads((ROOT / "tests" / "events" / "websocket_message.json").read_text())
    values = RenderInput(json.dumps({"text": "hi", "items": list(range(20))}), event["requestContext"])
    results: dict[str, dict[str, float]] = {}
    for name, source in TEMPLATES.items():
        parse_s = timeit.timeit(partial(MappingTemplate, source, "T"), number=parses) / parses
        template = MappingTemplate(source, "T")
        render_s = timeit.timeit(partial(template.render, values), number=renders) / renders
        results[name] = {"parse_us": round(parse_s * 1e6), "render_us": round(render_s * 1e6)}
    return results


if __name__ == "__main__":
    for name, figures in measure().items():
        print(f"{name:18} parse {figures['parse_us']:6.0f} us   render {figures['render_us']:5.0f} us")
