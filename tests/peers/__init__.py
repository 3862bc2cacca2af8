"""Real peers for the sync tests, started on 127.0.0.1 by the fixtures in ``peers.fixtures``."""
