"""The student model's code as Triton serves it: these files are copied into every exported version, so
they import nothing from the project but each other.
"""
