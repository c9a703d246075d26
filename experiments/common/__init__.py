"""What every room of ``experiments`` uses: the one user-facing exception, isolated random
streams, atomic file writes, the wrapper every command runs in, and the ranks of a torchrun job
(``ranks``: which process this is; ``distributed``: the process group and the work shared in
it)."""
