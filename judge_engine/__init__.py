"""Judging, calibration and training: the distilled inline judge, its Triton client and the frontier judge.

No Kafka here: streams/ feeds this package batches of traces and stores what it returns.
(The judge engine arrives with the judge issue; this package is its home.)
"""
