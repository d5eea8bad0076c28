"""The lines `tidings dev` prints once it is ready (tools and people parse them)."""

from __future__ import annotations

from tidings.local.stack import StackUrls, parse_args


def urls(**overrides: object) -> StackUrls:
    values: dict[str, object] = {
        "websocket_url": "ws://127.0.0.1:3001/dev",
        "callback_url": "http://127.0.0.1:3000/dev",
        "aws_endpoint": "http://127.0.0.1:4566",
        "http_url": "http://127.0.0.1:3000",
        "progress_view_url": "http://127.0.0.1:3000/",
        "jobs_api_url": "http://127.0.0.1:3000",
        "links": (("Console", "http://127.0.0.1:3000/console"),),
        **overrides,
    }
    return StackUrls(**values)  # type: ignore[arg-type]


def test_every_url_line_in_order() -> None:
    assert urls().lines() == [
        "WebSocket URL: ws://127.0.0.1:3001/dev",
        "Callback URL: http://127.0.0.1:3000/dev",
        "AWS endpoint: http://127.0.0.1:4566",
        "Progress view: http://127.0.0.1:3000/",
        "Console: http://127.0.0.1:3000/console",
    ]


def test_progress_view_and_console_only_when_served() -> None:
    lines = urls(progress_view_url=None, links=()).lines()
    assert [line.split(":")[0] for line in lines] == ["WebSocket URL", "Callback URL", "AWS endpoint"]


def test_dev_options_parse_ports_overrides_and_switches() -> None:
    options = parse_args(
        [
            "--ws-port",
            "0",
            "--http-port",
            "0",
            "--aws-port",
            "0",
            "--no-demo",
            "--drop-disconnect",
            "--log-format",
            "json",
            "--parameter-overrides",
            "StageName=test",
            "AllowedOrigins=https://a.example",
        ]
    )
    assert (options.ws_port, options.http_port, options.aws_port) == (0, 0, 0)
    assert options.demo is False and options.drop_disconnect is True and options.log_format == "json"
    assert options.parameter_overrides == {"StageName": "test", "AllowedOrigins": "https://a.example"}
