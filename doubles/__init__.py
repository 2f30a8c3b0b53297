"""Test and demo doubles that speak a real protocol: the OpenAI-compatible frontier replay server.
"""
