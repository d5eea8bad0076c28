import sys


def handler(event, context):
    # what the function can import beyond the standard library: its runtime's packages only
    import boto3

    return {"version": list(sys.version_info[:2]), "boto3": boto3.__version__, "path": sys.path}
