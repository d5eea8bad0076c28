def handler(event, context):
    return {"isAuthorized": event.get("headers", {}).get("authorization") == "let-me-in"}
