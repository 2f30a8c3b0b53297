"""Measuring judges: metrics, the eval command's logic, the calibration report, plots.
"""
