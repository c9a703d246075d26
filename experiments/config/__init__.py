"""The configuration of a run, on a floor below the parts: ``config`` (``Config``, one flat
dataclass whose fields declare every option once) and the command-line ``options`` generated
from it. It knows the registries of parts and data by name, and nothing that builds or trains."""
