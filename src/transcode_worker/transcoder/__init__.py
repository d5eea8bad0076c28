"""The transcoding pipeline behind the Step Functions handlers in `app.py`."""
