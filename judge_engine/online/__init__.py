"""Online judging: the stages a worker runs per micro-batch (parse, judge, route, store, publish) and
their shared pieces. Independent of Kafka and Faust.
"""
