"""The SQLite store: schema and migrations, the one writer, the ledger, read queries and snapshots."""
