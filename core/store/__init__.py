"""The SQLite store and what reads it back: schema and migrations (sqlite-utils), the one
writer thread, read queries, snapshots for the monitor, cost from the ledger, full-text search
over pairs, and the live-writer guard. Imports nothing from models, text or the run."""
