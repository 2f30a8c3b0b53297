"""The stream workers: the Faust app (``app``), the inline and frontier agents (thin: the logic is in
``judge_engine.online.inline``, ``judge_engine.online.frontier_stage`` and ``judge_engine.online.routing``) and ``worker`` (what
``judgeline worker inline|frontier`` runs)."""
