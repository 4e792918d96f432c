"""One module per CLI verb (see ``twostage_i2v.cli``)."""
