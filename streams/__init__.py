"""The stream workers: the Faust app (``app``), the inline and frontier agents (thin: the logic is in
``judge_engine.inline``, ``judge_engine.frontier_stage`` and ``judge_engine.routing``) and ``worker`` (what
``judgeline worker inline|frontier`` runs)."""
