"""What an ELBO estimator needs of a guide, declared on its class.

``experiments.parts.compatibility`` reads these attributes to refuse impossible combinations before
anything trains; the training loop reads ``has_loss``. An estimator registered in
``experiments.estimators.ELBOS`` lists ``EstimatorTraits`` first among its bases and sets the
attributes that differ from the defaults.
"""


class EstimatorTraits:
    """Class attributes, all False by default but ``has_loss``:

    - ``reparameterized``: every guide sample must be reparameterized.
    - ``closed_form_kl``: KL(q(z|x) ‖ p(z)) must have a closed form.
    - ``enumerates``: discrete sites must be left to enumeration (the ``enum`` guide); an
      estimator without it cannot sum anything out and refuses that guide.
    - ``vectorized``: needs ``--vectorize-particles`` and ``--num-particles`` ≥ 2.
    - ``has_loss``: reports a loss value.
    - ``detaches_samples``: draws the guide's samples without their path gradient, which leaves
      a straight-through guide's hard samples scored by the density of relaxed ones.
    - ``k_sample``: its bound depends on K (IWAE-like); others only average K estimates.
    - ``path_derivative``: rescores q at its own (detached) samples, which for a
      straight-through guide are hard one-hot values where the relaxed density degenerates.
    - ``bound`` ("ELBO" by default): the name of the bound its loss estimates (the negative
      of), with K > 1 for a ``k_sample`` one (``objective``).
    - ``recordable`` (True by default): its loss and gradient are one tensor computed without
      reading values into Python, so a training step can be recorded and replayed
      (``experiments.recording``); False sends every step through Pyro's ``SVI``.
    """

    reparameterized = False
    closed_form_kl = False
    enumerates = False
    vectorized = False
    has_loss = True
    detaches_samples = False
    k_sample = False
    path_derivative = False
    recordable = True
    bound = "ELBO"

    @classmethod
    def objective(cls, num_particles: int) -> str:
        """What a run's train value is, as its summary names it: the ``bound`` of a K-sample
        estimator at K > 1, else the ELBO (K = 1, or an average of K one-sample ELBOs)."""
        return cls.bound if cls.k_sample and num_particles > 1 else "ELBO"
