"""User operations over a running deployment: demo, produce, replay, gold import, calibrate, report,
analytics, consumer lag. Each is a plain function the CLI (and the demo) calls.
"""
