"""List the registered models, guides and estimators, and which combinations can work.

    python -m experiments.list            # the registries and the compatibility matrix
    python -m experiments.list --json     # [{"model", "guide", "elbo", "ok", "reason"}, …]
"""
import json
import sys
from typing import Dict, List, Optional

from experiments.common.command import command, command_parser, starting

with starting(__name__):            # Ctrl-C while importing: one line, exit 130
    from experiments.config.config import BY_MODEL, Config, flag_of, shown_value
    from experiments.data.datasets import DATASETS
    from experiments.estimators import ELBOS
    from experiments.parts.compatibility import matrix
    from guides import GUIDES
    from models import MODELS, LatentVariableModel


def _summary(obj, registry: dict, width: int = 96) -> str:
    """The first line of the docstring of ``obj``'s module where it holds no other part of
    ``registry``, else of ``obj``, cut to ``width`` characters."""
    alone = isinstance(obj, type) and sum(
        getattr(part, "__module__", None) == obj.__module__ for part in registry.values()) == 1
    module_doc = sys.modules[obj.__module__].__doc__ if alone else None
    doc = (module_doc or obj.__doc__ or "").strip().split("\n")[0].rstrip(".:")
    return doc if len(doc) <= width else doc[:width - 1] + "…"


def registries() -> str:
    lines = []
    for title, registry in (("models", MODELS), ("guides", GUIDES),
                            ("ELBO estimators", ELBOS),
                            ("data sets", DATASETS)):
        lines.append(f"{title}:")
        width = max(map(len, registry))
        lines += [f"  {name:<{width}}  {_summary(part, registry)}"
                  for name, part in registry.items()]
        lines.append("")
    return "\n".join(lines)


def model_defaults() -> str:
    """Each model's guide and estimator, and the other defaults where they differ from those
    most models share (``LatentVariableModel.defaults``), as the options that set them."""
    width, common = max(map(len, MODELS)), LatentVariableModel.defaults
    parts = ("guide", "elbo")
    lines = ["defaults by model (any option given overrides them; the others: " + " ".join(
        f"{flag_of(k)} {shown_value(common[k])}" for k in BY_MODEL if k not in parts) + "):"]
    for name, model in MODELS.items():
        own = [k for k in BY_MODEL if k in parts or model.defaults[k] != common[k]]
        flags = " ".join(f"{flag_of(k)} {shown_value(model.defaults[k])}" for k in own)
        lines.append(f"  {name:<{width}}  {flags}")
    return "\n".join(lines) + "\n"


def matrix_table(rows: List[Dict[str, object]]) -> str:
    """One block per model: guides down, estimators across, ✓ where the combination works;
    then the reasons, one line per refused combination that has a fitting guide."""
    elbos = list(ELBOS)
    width = max(map(len, GUIDES))
    lines = []
    for model in MODELS:
        ok = {(r["guide"], r["elbo"]): r["ok"] for r in rows if r["model"] == model}
        lines.append(f"{model}:")
        lines.append(" " * (width + 4) + "  ".join(elbos))
        for guide in GUIDES:
            cells = "  ".join(("✓" if ok[guide, e] else "·").center(len(e)) for e in elbos)
            lines.append(f"  {guide:<{width}}  {cells}")
        lines.append("")
    refused = [r for r in rows if not r["ok"] and "cannot serve" not in r["reason"]]
    lines.append("why the other combinations of fitting guides are refused:")
    lines += [f"  {r['model']} + {r['guide']} + {r['elbo']}: {r['reason']}" for r in refused]
    return "\n".join(lines)


def matrix_markdown(rows: List[Dict[str, object]]) -> str:
    """The matrix as a Markdown table: one row per model and guide that fit, ✓ per estimator."""
    elbos = list(ELBOS)
    ok = {(r["model"], r["guide"], r["elbo"]): r["ok"] for r in rows}
    lines = ["| model | guide | " + " | ".join(elbos) + " |", "|---|---|" + "---|" * len(elbos)]
    for model in MODELS:
        for guide in GUIDES:
            cells = ["✓" if ok[model, guide, e] else "" for e in elbos]
            if any(cells):
                lines.append(f"| {model} | {guide} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


@command
def main(argv: Optional[List[str]] = None) -> int:
    parser = command_parser("experiments.list", __doc__)
    parser.add_argument("--json", action="store_true",
                        help="print the matrix as JSON objects {model, guide, elbo, ok, reason}")
    parser.add_argument("--markdown", action="store_true",
                        help="print the matrix as a Markdown table (as docs/guide/parts.md "
                             "shows it)")
    args = parser.parse_args(argv)
    rows = matrix(**Config().part_options())
    if args.json:
        json.dump(rows, sys.stdout, indent=1, ensure_ascii=False)
        print()
    elif args.markdown:
        print(matrix_markdown(rows))
    else:
        print(registries())
        print(model_defaults())
        print(matrix_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
