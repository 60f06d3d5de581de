"""Use cases on the runtime (numpy-only, any artifact): sync-quality scores, active speakers, desync flags, fixing
offsets, scoring corpora. Each works on an :class:`edge_sync.runtimes.FileSync`, so one analysis of a video
serves all of them."""
