# PyYAML is in the local stack's own virtualenv, but this function does not ship it (no
# requirements.txt, no layer): on AWS the import fails, so it must fail locally too.
import yaml  # noqa: F401


def handler(event, context):
    return "imported"
