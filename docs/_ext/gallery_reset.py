"""Between two gallery scripts: a fresh Pyro parameter store, as each script would have run
alone (Pyro's store is global to the process)."""
import pyro


def reset_pyro(gallery_conf, fname):
    pyro.clear_param_store()
