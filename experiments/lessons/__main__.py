"""Regenerate the lessons' figures and numbers (``make lessons``):

    python -m experiments.lessons [--out runs/lessons] [--jobs 2] [--quick]

Trains the small runs that the six lessons in docs/lessons/ describe (in ``--jobs``
processes), measures what the lessons quote, writes the figures to docs/lessons/figures/, the
numbers to docs/lessons/lessons.json, and rewrites every number quoted in
docs/lessons/lesson*.md from that JSON. In the Markdown a quoted number is its value followed by
an invisible marker that names it and its format,

    the exact log-likelihood is -2.080<!--lesson1.exact_log_likelihood:.3f-->

and ``fill`` replaces the value before each marker, so no number in the text is typed by hand;
tests/test_lessons.py checks that the committed Markdown is what ``fill`` makes of the committed
JSON. ``--quick`` runs every step on a sliver of the budget (a check of the pipeline, not
numbers to quote) and writes nothing into docs/ unless ``--docs`` names a folder.
"""
import json
import sys
from pathlib import Path
from typing import List, Optional

from experiments.common.command import command, command_parser, starting

with starting(__name__):            # Ctrl-C while importing: one line, exit 130
    from experiments.common.errors import UserError
    from experiments.common.files import make_folder
    from experiments.lessons.markers import fill_lessons
    from experiments.lessons.measures import regenerate
    from experiments.lessons.runs import Budget

DOCS = Path("docs/lessons")


@command
def main(argv: Optional[List[str]] = None) -> int:
    p = command_parser("experiments.lessons", __doc__)
    p.add_argument("--out", type=Path, default=Path("runs/lessons"),
                   help="folder of the runs (default: %(default)s)")
    p.add_argument("--docs", type=Path, default=None,
                   help="where the lessons live (default: docs/lessons/, or nothing with --quick)")
    p.add_argument("--jobs", type=int, default=2, help="runs in parallel (default: 2)")
    p.add_argument("--quick", action="store_true",
                   help="every step on a sliver of the budget: checks the pipeline")
    p.add_argument("--fill-only", action="store_true",
                   help="train nothing: rewrite the numbers quoted in docs/lessons/lesson*.md "
                        "from docs/lessons/lessons.json (after editing a lesson's text)")
    args = p.parse_args(argv)
    if args.jobs < 1:
        raise UserError("--jobs must be at least 1")
    docs = args.docs or (None if args.quick else DOCS)
    if docs is not None and not docs.is_dir():
        raise UserError(f"--docs {docs} is not a folder; run from the repository root or "
                        "name the folder that holds lesson*.md")
    if args.fill_only:
        if docs is None or not (docs / "lessons.json").is_file():
            raise UserError("--fill-only needs a docs folder holding lessons.json: run "
                            "`make lessons` first")
        fill_lessons(docs, json.loads((docs / "lessons.json").read_text()))
    else:
        regenerate(make_folder(args.out, "--out"), docs, Budget(args.quick), args.jobs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
