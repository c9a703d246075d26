"""What every room of ``experiments`` uses: the one user-facing exception, isolated random
streams, atomic file writes, and the wrapper every command runs in."""
