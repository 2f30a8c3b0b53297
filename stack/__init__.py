"""The local stack: the real services `judgeline up` runs on one machine (Tansu broker, chDB store server,
Triton), supervised by PID, and the one-shot set-up every deployment needs (topics, migrations).
"""
