"""Talking to models: one backend per wire, the adaptive endpoint pool, the call ledger
(every attempt a row) and `make_call`, which ties them together."""
