"""Local stand-ins for the LINE and Slack platforms, started on 127.0.0.1 by the tests."""
