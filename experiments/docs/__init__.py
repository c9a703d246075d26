"""The build of the repository's docs/: the runs the lessons quote (``runs``), the measurements
of each lesson (``lessons``), and the numbers written into the Markdown (``markers``)."""
