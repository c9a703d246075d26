"""The lessons' numbers and figures (``python -m experiments.lessons``, ``make lessons``): the
runs the lessons quote (``runs``), the measurements of each lesson (``measures``), and the
numbers written into their Markdown in docs/lessons/ (``markers``)."""
