"""CMO beside its peers (DBOS, LangGraph with its Postgres saver) on W1-W3, on one Postgres."""
