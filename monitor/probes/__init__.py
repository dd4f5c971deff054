"""One module per protocol, all with the signature of `base.Prober`."""
