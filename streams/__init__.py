"""The Faust app and agents: thin consumers and producers around judge_engine/ (arrives with the streaming issue)."""
