"""Stand-ins for what Faust's ``take_events`` yields (events whose ack releases one reference of a real
``ConsumerMessage``), and a consumer that records which offsets became committable."""

from faust.types.tuples import ConsumerMessage


class Consumer:
    def __init__(self):
        self.acked = []

    def ack(self, message):
        self.acked.append(message.offset)
        return True


class Event:
    """What Faust's take_events yields: an event whose ack releases one reference of its message."""

    def __init__(self, message, consumer):
        self.message, self.consumer = message, consumer

    def ack(self):
        return self.message.ack(self.consumer)


def delivered(offset: int, consumer: Consumer) -> Event:
    m = ConsumerMessage("judgeline.traces", 2, offset, 1_790_000_000.25, 0, [], b"key", b"value", None)
    m.incref()  # the one stream it was delivered to
    return Event(m, consumer)


def take_events_finally(events):
    """take_events acknowledges a batch's events when the consumer moves on, after success or failure alike."""
    for e in events:
        e.ack()
