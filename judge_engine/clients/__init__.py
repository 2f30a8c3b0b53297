"""Clients of the two judges (Triton, an OpenAI-compatible frontier), the frontier prompt and redaction.
"""
