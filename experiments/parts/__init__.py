"""The three parts of a run, model, guide and ELBO estimator, assembled from their registered
names or a run's config: ``build`` (with each set of parts in its own parameter namespace,
``namespaces``), ``registries`` (look-up and construction by name) and ``compatibility`` (which
combinations can work, and why the others cannot)."""
